//! Registering a type's defaulter and validator at controller-runtime's paths
//! (controller-runtime's `pkg/builder/webhook.go`).

use std::sync::Arc;

use bytes::Bytes;
use kube::core::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Defaulter, DefaultingWebhook, ValidatingWebhook, Validator};
use crate::webhook::server::{self, WebhookServer};
use crate::webhook::{Handler, ReplyFuture};

/// The path of `K`'s mutating webhook: `/mutate-<group, dots as dashes>-<version>-<kind,
/// lowercase>`, e.g. `/mutate-apps-v1-deployment`, `/mutate-example-com-v1-foo`, or
/// `/mutate--v1-pod` for the core group (controller-runtime's `generateMutatePath`).
pub fn mutate_path<K: Resource>(dt: &K::DynamicType) -> String {
    path::<K>("mutate", dt)
}

/// The path of `K`'s validating webhook: `/validate-<group, dots as dashes>-<version>-<kind,
/// lowercase>` (controller-runtime's `generateValidatePath`).
pub fn validate_path<K: Resource>(dt: &K::DynamicType) -> String {
    path::<K>("validate", dt)
}

fn path<K: Resource>(prefix: &str, dt: &K::DynamicType) -> String {
    format!(
        "/{prefix}-{}-{}-{}",
        K::group(dt).replace('.', "-"),
        K::version(dt),
        K::kind(dt).to_lowercase()
    )
}

/// Where [`WebhookBuilder::complete`] registered a type's webhooks: the paths to put in the
/// `MutatingWebhookConfiguration` and `ValidatingWebhookConfiguration`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct WebhookPaths {
    /// The defaulter's path, if the builder had one.
    pub mutate: Option<String>,
    /// The validator's path, if the builder had one.
    pub validate: Option<String>,
}

/// Registers a type's [`Defaulter`] and [`Validator`] on the webhook server, at
/// controller-runtime's paths or your own (controller-runtime's `NewWebhookManagedBy(mgr).For(…)`).
///
/// ```no_run
/// # use ferrokube_runtime::webhook::admission::{Defaulter, Denied, WebhookBuilder};
/// # use ferrokube_runtime::webhook::server::WebhookServer;
/// # use k8s_openapi::api::apps::v1::Deployment;
/// # struct Replicas;
/// # impl Defaulter<Deployment> for Replicas {
/// #     async fn apply_defaults(&self, _: &mut Deployment) -> Result<(), Denied> { Ok(()) }
/// # }
/// # fn run(server: &WebhookServer) -> Result<(), Box<dyn std::error::Error>> {
/// let paths = WebhookBuilder::<Deployment>::new().with_defaulter(Replicas).complete(server)?;
/// assert_eq!(paths.mutate.as_deref(), Some("/mutate-apps-v1-deployment"));
/// assert_eq!(paths.validate, None);
/// # Ok(()) }
/// ```
#[must_use]
pub struct WebhookBuilder<K: Resource> {
    dt: K::DynamicType,
    defaulter: Option<(Option<String>, SharedHandler)>,
    validator: Option<(Option<String>, SharedHandler)>,
}

// === impl WebhookBuilder ===

impl<K> WebhookBuilder<K>
where
    K: Resource + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a typed `K` (`k8s_openapi` and `#[derive(CustomResource)]` types).
    pub fn new() -> Self
    where
        K::DynamicType: Default,
    {
        Self::with_dynamic_type(K::DynamicType::default())
    }

    /// A builder for a `K` known at run time, e.g. a
    /// [`DynamicObject`](kube::core::DynamicObject) with its
    /// [`ApiResource`](kube::core::ApiResource).
    pub fn with_dynamic_type(dt: K::DynamicType) -> Self {
        Self {
            dt,
            defaulter: None,
            validator: None,
        }
    }

    /// Serves `defaulter` at [`mutate_path`].
    pub fn with_defaulter<D: Defaulter<K>>(mut self, defaulter: D) -> Self
    where
        K::DynamicType: Clone,
    {
        let webhook = DefaultingWebhook::<K, D>::with_dynamic_type(defaulter, self.dt.clone());
        self.defaulter = Some((None, SharedHandler(Arc::new(webhook))));
        self
    }

    /// Serves `validator` at [`validate_path`].
    pub fn with_validator<V: Validator<K>>(mut self, validator: V) -> Self
    where
        K::DynamicType: Clone,
    {
        let webhook = ValidatingWebhook::<K, V>::with_dynamic_type(validator, self.dt.clone());
        self.validator = Some((None, SharedHandler(Arc::new(webhook))));
        self
    }

    /// Serves the defaulter at `path` instead (controller-runtime's
    /// `WithDefaulterCustomPath`); no effect without [`with_defaulter`](Self::with_defaulter)
    /// first.
    pub fn with_mutate_path(mut self, path: impl Into<String>) -> Self {
        if let Some((custom, _)) = &mut self.defaulter {
            *custom = Some(path.into());
        }
        self
    }

    /// Serves the validator at `path` instead (controller-runtime's
    /// `WithValidatorCustomPath`); no effect without [`with_validator`](Self::with_validator)
    /// first.
    pub fn with_validate_path(mut self, path: impl Into<String>) -> Self {
        if let Some((custom, _)) = &mut self.validator {
            *custom = Some(path.into());
        }
        self
    }

    /// The paths [`complete`](Self::complete) registers.
    pub fn paths(&self) -> WebhookPaths {
        WebhookPaths {
            mutate: self
                .defaulter
                .as_ref()
                .map(|(custom, _)| custom.clone().unwrap_or_else(|| mutate_path::<K>(&self.dt))),
            validate: self.validator.as_ref().map(|(custom, _)| {
                custom
                    .clone()
                    .unwrap_or_else(|| validate_path::<K>(&self.dt))
            }),
        }
    }

    /// Registers the webhooks on `server` and returns their paths. Fails if a path is taken
    /// or invalid; the defaulter may then be registered without the validator.
    pub fn complete(self, server: &WebhookServer) -> Result<WebhookPaths, server::Error> {
        let paths = self.paths();
        if let (Some(path), Some((_, handler))) = (&paths.mutate, self.defaulter) {
            server.register(path.clone(), handler)?;
        }
        if let (Some(path), Some((_, handler))) = (&paths.validate, self.validator) {
            server.register(path.clone(), handler)?;
        }
        Ok(paths)
    }
}

impl<K> Default for WebhookBuilder<K>
where
    K: Resource + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
{
    fn default() -> Self {
        Self::new()
    }
}

/// A type-erased handler, so a builder's type does not depend on its defaulter and validator.
#[derive(Clone)]
struct SharedHandler(Arc<dyn Handler>);

impl Handler for SharedHandler {
    fn handle(&self, body: Bytes) -> ReplyFuture<'_> {
        self.0.handle(body)
    }
}
