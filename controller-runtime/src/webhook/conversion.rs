//! CRD conversion webhooks through a hub version (controller-runtime's `pkg/conversion` and
//! `pkg/webhook/conversion`).
//!
//! One version of a custom resource is the [`Hub`]; every other version is [`Convertible`] to
//! and from it. [`ConversionWebhook`] answers the API server's `ConversionReview`s at
//! [`CONVERT_PATH`] for every pair of registered versions: hub ↔ spoke directly, spoke ↔ spoke
//! through the hub, an object already at the desired version as it is. Each converted object
//! gets the desired `apiVersion`, its `kind`, and its `metadata` exactly as received. If one
//! object fails (unknown version, does not decode, conversion error, panic), the whole review
//! fails with a message naming the object and the versions, as the API server requires.
//!
//! ```no_run
//! use ferrokube_runtime::kube::{CustomResource, Resource};
//! use ferrokube_runtime::webhook::conversion::{BoxError, ConversionWebhook, Convertible, Hub};
//! use ferrokube_runtime::webhook::server::WebhookServer;
//! use serde::{Deserialize, Serialize};
//!
//! mod v1 {
//! #   use super::*;
//!     #[derive(CustomResource, Clone, Debug, Deserialize, Serialize)]
//!     #[kube(group = "example.com", version = "v1", kind = "Foo", namespaced, schema = "disabled")]
//!     pub struct FooSpec { pub size: String }
//! }
//! mod v2 {
//! #   use super::*;
//!     #[derive(CustomResource, Clone, Debug, Deserialize, Serialize)]
//!     #[kube(group = "example.com", version = "v2", kind = "Foo", namespaced, schema = "disabled")]
//!     pub struct FooSpec { pub size_bytes: u64 }
//! }
//!
//! impl Hub for v2::Foo {}
//!
//! impl Convertible for v1::Foo {
//!     type Hub = v2::Foo;
//!
//!     fn convert_to(&self) -> Result<v2::Foo, BoxError> {
//!         let size_bytes = self.spec.size.trim_end_matches("Ki").parse::<u64>()? * 1024;
//!         Ok(v2::Foo::new(&self.meta().name.clone().unwrap_or_default(), v2::FooSpec { size_bytes }))
//!     }
//!
//!     fn convert_from(hub: &v2::Foo) -> Result<Self, BoxError> {
//!         let size = format!("{}Ki", hub.spec.size_bytes / 1024);
//!         Ok(v1::Foo::new(&hub.meta().name.clone().unwrap_or_default(), v1::FooSpec { size }))
//!     }
//! }
//!
//! # fn run(server: &WebhookServer) -> Result<(), Box<dyn std::error::Error>> {
//! ConversionWebhook::new().spoke::<v1::Foo>().register(server)?;
//! # Ok(()) }
//! # fn main() {}
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use kube::core::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod review;
#[cfg(test)]
mod tests;

/// Where controller-runtime serves conversions (`/convert`), for the CRD's
/// `spec.conversion.webhook.clientConfig`.
pub const CONVERT_PATH: &str = "/convert";

/// The error a conversion function returns: any error (`?` works), or a message
/// (`Err("…".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The version of a custom resource every other version converts through (controller-runtime's
/// `conversion.Hub`). Usually the storage version.
pub trait Hub:
    Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// A version of a custom resource that converts to and from its [`Hub`] (controller-runtime's
/// `conversion.Convertible`, a "spoke"). Both functions may leave `metadata` empty: the webhook
/// puts back the metadata it received.
pub trait Convertible:
    Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The hub this version converts through.
    type Hub: Hub;

    /// This object at the hub version.
    fn convert_to(&self) -> Result<Self::Hub, BoxError>;

    /// `hub` at this version.
    fn convert_from(hub: &Self::Hub) -> Result<Self, BoxError>;
}

/// Why a `ConversionReview` failed. The first five (the body is not a review this webhook
/// answers) are answered with `400`; the others with a review whose `result` is a `Failure`
/// with this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is not JSON, or not the shape of a `ConversionReview`.
    #[error("request body is not a ConversionReview: {0}")]
    Json(serde_json::Error),
    /// The body's `kind` is not `ConversionReview`.
    #[error("request body has kind {0:?}, expected ConversionReview")]
    Kind(String),
    /// The body's `apiVersion` is not `apiextensions.k8s.io/v1` (or `v1beta1`).
    #[error("request body has apiVersion {0:?}, expected apiextensions.k8s.io/v1")]
    ApiVersion(String),
    /// The review has no `request`.
    #[error("ConversionReview has no request")]
    MissingRequest,
    /// The review's request does not decode (no `uid`, no `desiredAPIVersion`…).
    #[error("malformed ConversionReview request: {0}")]
    Request(serde_json::Error),
    /// The desired `apiVersion` is not a registered version.
    #[error("desired apiVersion {0:?} is not a version this webhook converts")]
    UnknownDesiredVersion(String),
    /// An object is not a JSON object with an `apiVersion` and a `kind`.
    #[error("object {index} of the request has no apiVersion and kind")]
    NotAnObject {
        /// The object's position in the request.
        index: usize,
    },
    /// An object's version, or the desired version of its kind, is not registered.
    #[error("{object}: no conversion from {from} to {to}")]
    Unconvertible {
        /// `kind namespace/name` of the object.
        object: String,
        /// The object's `apiVersion`.
        from: String,
        /// The desired `apiVersion`.
        to: String,
    },
    /// Converting one object failed: its decoding, a conversion function (error or panic), or
    /// its encoding.
    #[error("converting {object} from {from} to {to}: {message}")]
    Convert {
        /// `kind namespace/name` of the object.
        object: String,
        /// The object's `apiVersion`.
        from: String,
        /// The desired `apiVersion`.
        to: String,
        /// What failed.
        message: String,
    },
}

/// The webhook answering `ConversionReview`s for the registered hubs and spokes, for one or
/// several kinds (controller-runtime serves every kind at [`CONVERT_PATH`]).
#[derive(Clone, Default)]
#[must_use]
pub struct ConversionWebhook {
    /// The registered versions by `(apiVersion, kind)`.
    versions: HashMap<(String, String), Arc<dyn Version>>,
}

// === impl ConversionWebhook ===

impl ConversionWebhook {
    /// A webhook that converts nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the hub version `H`.
    pub fn hub<H: Hub>(mut self) -> Self {
        self.insert::<H>(Arc::new(HubVersion::<H>(std::marker::PhantomData)));
        self
    }

    /// Registers the spoke version `S`, and its hub.
    pub fn spoke<S: Convertible>(mut self) -> Self {
        if (S::group(&()), S::kind(&())) != (S::Hub::group(&()), S::Hub::kind(&())) {
            tracing::warn!(
                spoke = %format!("{} {}", S::api_version(&()), S::kind(&())),
                hub = %format!("{} {}", S::Hub::api_version(&()), S::Hub::kind(&())),
                "a conversion spoke and its hub should have the same group and kind"
            );
        }
        self = self.hub::<S::Hub>();
        self.insert::<S>(Arc::new(SpokeVersion::<S>(std::marker::PhantomData)));
        self
    }

    fn insert<K: Resource<DynamicType = ()>>(&mut self, version: Arc<dyn Version>) {
        let key = (K::api_version(&()).into_owned(), K::kind(&()).into_owned());
        self.versions.insert(key, version);
    }

    /// The registered versions, as `(apiVersion, kind)`, sorted.
    #[must_use]
    pub fn versions(&self) -> Vec<(String, String)> {
        let mut versions: Vec<_> = self.versions.keys().cloned().collect();
        versions.sort();
        versions
    }

    /// Registers the webhook at [`CONVERT_PATH`].
    pub fn register(
        self,
        server: &crate::webhook::server::WebhookServer,
    ) -> Result<(), crate::webhook::server::Error> {
        server.register(CONVERT_PATH, self)
    }
}

/// A hub value, type-erased.
type AnyHub = Box<dyn Any + Send>;

/// One registered version: to and from its hub, type-erased.
trait Version: Send + Sync + 'static {
    /// The hub's type.
    fn hub(&self) -> TypeId;
    /// Decodes `object` at this version and converts it to the hub.
    fn to_hub(&self, object: &Value) -> Result<AnyHub, String>;
    /// Converts `hub` (of type [`hub`](Self::hub)) to this version and encodes it.
    fn encode_from_hub(&self, hub: &(dyn Any + Send)) -> Result<Value, String>;
}

struct HubVersion<H>(std::marker::PhantomData<fn() -> H>);

impl<H: Hub> Version for HubVersion<H> {
    fn hub(&self) -> TypeId {
        TypeId::of::<H>()
    }

    fn to_hub(&self, object: &Value) -> Result<AnyHub, String> {
        let hub = H::deserialize(object).map_err(|e| format!("decoding: {e}"))?;
        Ok(Box::new(hub))
    }

    fn encode_from_hub(&self, hub: &(dyn Any + Send)) -> Result<Value, String> {
        let hub = hub
            .downcast_ref::<H>()
            .ok_or("not converted through this hub")?;
        serde_json::to_value(hub).map_err(|e| format!("encoding: {e}"))
    }
}

struct SpokeVersion<S>(std::marker::PhantomData<fn() -> S>);

impl<S: Convertible> Version for SpokeVersion<S> {
    fn hub(&self) -> TypeId {
        TypeId::of::<S::Hub>()
    }

    fn to_hub(&self, object: &Value) -> Result<AnyHub, String> {
        let spoke = S::deserialize(object).map_err(|e| format!("decoding: {e}"))?;
        let hub = spoke.convert_to().map_err(|e| format!("convert_to: {e}"))?;
        Ok(Box::new(hub))
    }

    fn encode_from_hub(&self, hub: &(dyn Any + Send)) -> Result<Value, String> {
        let hub = hub
            .downcast_ref::<S::Hub>()
            .ok_or("not converted through this hub")?;
        let spoke = S::convert_from(hub).map_err(|e| format!("convert_from: {e}"))?;
        serde_json::to_value(&spoke).map_err(|e| format!("encoding: {e}"))
    }
}
