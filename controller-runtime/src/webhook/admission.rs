//! Admission webhooks: defaulting, validation and plain handlers (controller-runtime's
//! `pkg/webhook/admission`).
//!
//! - A [`Defaulter`] fills in an object; [`DefaultingWebhook`] answers the API server with the
//!   JSON patch from the object it sent to the defaulted one (no patch when nothing changed).
//! - A [`Validator`] checks creates, updates (with the old object) and deletes;
//!   [`ValidatingWebhook`] answers allowed (with [`Warnings`]) or [`Denied`] (a reason, an HTTP
//!   code — `403 Forbidden` unless told otherwise — and warnings).
//! - [`AdmissionWebhook`] runs any function of an [`AdmissionRequest`] (an [`Admit`]).
//! - [`current_request`] tells a defaulter or validator who asks (`userInfo`), whether it is a
//!   dry run, the subresource… (controller-runtime's `RequestFromContext`).
//! - [`WebhookBuilder`] registers a type's defaulter and validator at controller-runtime's paths
//!   (`/mutate-<group>-<version>-<kind>`, `/validate-…`, see [`mutate_path`] and
//!   [`validate_path`]).
//!
//! Typed objects (`K: Resource<DynamicType = ()>`, e.g. `k8s_openapi` types and
//! `#[derive(CustomResource)]` types) use `new`; [`DynamicObject`](kube::core::DynamicObject)s
//! use `with_dynamic_type` and an [`ApiResource`](kube::core::ApiResource).
//!
//! Every webhook answers an `AdmissionReview` with the request's `uid`; a body that is not an
//! `AdmissionReview` gets a `400` naming what is wrong ([`Error`]); an object that does not
//! decode into the type is denied with code `400` and the decode error; a panicking defaulter or
//! validator is denied with code `500`, and the server goes on.
//!
//! ```no_run
//! use ferrokube_runtime::webhook::admission::{Defaulter, Denied, Validator, Warnings, WebhookBuilder};
//! use ferrokube_runtime::manager::Manager;
//! use k8s_openapi::api::core::v1::ConfigMap;
//!
//! struct Labels;
//!
//! impl Defaulter<ConfigMap> for Labels {
//!     async fn apply_defaults(&self, cm: &mut ConfigMap) -> Result<(), Denied> {
//!         let labels = cm.metadata.labels.get_or_insert_with(Default::default);
//!         labels.entry("team".into()).or_insert_with(|| "platform".into());
//!         Ok(())
//!     }
//! }
//!
//! impl Validator<ConfigMap> for Labels {
//!     async fn validate_create(&self, cm: &ConfigMap) -> Result<Warnings, Denied> {
//!         match &cm.data {
//!             Some(data) if data.contains_key("password") => {
//!                 Err(Denied::invalid("passwords belong in a Secret"))
//!             }
//!             None => Ok(vec!["an empty ConfigMap".into()]),
//!             Some(_) => Ok(Warnings::new()),
//!         }
//!     }
//! }
//!
//! # fn run(mgr: &Manager) -> Result<(), Box<dyn std::error::Error>> {
//! let paths = WebhookBuilder::<ConfigMap>::new()
//!     .with_defaulter(Labels)
//!     .with_validator(Labels)
//!     .complete(mgr.webhook_server())?;
//! assert_eq!(paths.mutate.as_deref(), Some("/mutate--v1-configmap"));
//! assert_eq!(paths.validate.as_deref(), Some("/validate--v1-configmap"));
//! # Ok(()) }
//! ```

use std::fmt;

use http::StatusCode;

mod builder;
mod defaulter;
mod handler;
mod review;
#[cfg(test)]
mod tests;
mod validator;

pub use builder::{WebhookBuilder, WebhookPaths, mutate_path, validate_path};
pub use defaulter::{Defaulter, DefaultingWebhook};
pub use handler::{AdmissionWebhook, Admit};
pub use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
pub use review::current_request;
pub use validator::{ValidatingWebhook, Validator};

/// Why a request body is not an admission review this webhook can answer, or why its object
/// cannot be read. The first five are answered with `400`; the others with a denial that
/// carries the request's `uid` and code `400`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is not JSON, or not the shape of an `AdmissionReview`.
    #[error("request body is not an AdmissionReview: {0}")]
    Json(serde_json::Error),
    /// The body's `kind` is not `AdmissionReview`.
    #[error("request body has kind {0:?}, expected AdmissionReview")]
    Kind(String),
    /// The body's `apiVersion` is not `admission.k8s.io/v1` (or `v1beta1`).
    #[error("request body has apiVersion {0:?}, expected admission.k8s.io/v1")]
    ApiVersion(String),
    /// The review has no `request`.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// The review's request has no `uid` to answer to.
    #[error("AdmissionReview request has no uid")]
    MissingUid,
    /// The request's fields (other than its objects) do not decode.
    #[error("malformed AdmissionReview request: {0}")]
    Request(serde_json::Error),
    /// The request has no `object` (create, update) or `oldObject` (update, delete).
    #[error("{operation:?} request has no {field}")]
    MissingObject {
        /// The request's operation.
        operation: Operation,
        /// `object` or `oldObject`.
        field: &'static str,
    },
    /// The object's `apiVersion`/`kind` are not the webhook's type.
    #[error("{field} is {found}, this webhook handles {expected}")]
    WrongType {
        /// `object` or `oldObject`.
        field: &'static str,
        /// The object's `apiVersion` and `kind`.
        found: String,
        /// The webhook type's `apiVersion` and `kind`.
        expected: String,
    },
    /// The object does not decode into the webhook's type.
    #[error("unable to decode {field} into {kind}: {source}")]
    Decode {
        /// `object` or `oldObject`.
        field: &'static str,
        /// The webhook type's kind.
        kind: String,
        /// The decode error.
        source: serde_json::Error,
    },
}

/// Warnings returned to the API client with an admission answer (`kubectl` prints them).
/// Keep each under 120 characters.
pub type Warnings = Vec<String>;

/// A refused admission request (controller-runtime's `admission.Denied`): a message for the
/// client, an HTTP code and reason (`403 Forbidden` by default) and warnings.
///
/// Any error converts into a `Denied` with its message, so `?` works in defaulters and
/// validators.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Denied {
    message: String,
    code: StatusCode,
    reason: String,
    warnings: Warnings,
}

// === impl Denied ===

impl Denied {
    /// Refused with `403 Forbidden` (controller-runtime's `Denied`).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden".to_owned(),
            warnings: Warnings::new(),
        }
    }

    /// Refused with `422 Unprocessable Entity`, reason `Invalid` (what the API server answers
    /// for an object that fails validation).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(message).with_code(StatusCode::UNPROCESSABLE_ENTITY)
    }

    /// Another HTTP code; the reason becomes the API server's reason for that code
    /// (`400 BadRequest`, `404 NotFound`, `409 Conflict`, `422 Invalid`, `429 TooManyRequests`,
    /// `500 InternalError`…; none for other codes).
    pub fn with_code(mut self, code: StatusCode) -> Self {
        self.code = code;
        self.reason = reason_for(code).to_owned();
        self
    }

    /// Another machine-readable reason (a Kubernetes `StatusReason`, e.g. `Forbidden`).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Warnings returned with the denial.
    pub fn with_warnings<I, S>(mut self, warnings: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.warnings.extend(warnings.into_iter().map(Into::into));
        self
    }

    /// The message shown to the client.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP code.
    #[must_use]
    pub fn code(&self) -> StatusCode {
        self.code
    }

    /// The machine-readable reason (empty for none).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The warnings.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn into_warnings(self) -> Warnings {
        self.warnings
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied ({}): {}", self.code.as_u16(), self.message)
    }
}

impl<E: std::error::Error> From<E> for Denied {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}

/// The Kubernetes `StatusReason` the API server uses with an HTTP code.
fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}
