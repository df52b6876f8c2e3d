//! Reading an `AdmissionReview` body and writing the answer (controller-runtime's
//! `admission/http.go`, `webhook.go` and `response.go`).
//!
//! The request's `object` and `oldObject` are kept as raw JSON: a typed webhook decodes them into
//! its type itself, so that an object that does not fit the type is answered with a denial that
//! carries the request's `uid` (controller-runtime's `Errored(http.StatusBadRequest, err)`), and
//! a defaulter's patch is computed against the object exactly as the API server sent it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use http::StatusCode;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, Resource, TypeMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Denied, Error};
use crate::webhook::Reply;

tokio::task_local! {
    /// The request being answered, for [`current_request`].
    static REQUEST: Arc<AdmissionRequest<DynamicObject>>;
}

/// The admission request being answered, when called (directly or not) from a [`Defaulter`],
/// [`Validator`] or [`Admit`] run by this module's webhooks (controller-runtime's
/// `admission.RequestFromContext`): its operation, `userInfo`, `dryRun`, namespace, name,
/// subresource… Its `object` and `old_object` are `None`: they are the arguments.
///
/// `None` elsewhere, including in tasks spawned from a defaulter or validator.
///
/// [`Defaulter`]: super::Defaulter
/// [`Validator`]: super::Validator
/// [`Admit`]: super::Admit
#[must_use]
pub fn current_request() -> Option<Arc<AdmissionRequest<DynamicObject>>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// The `kind` of an admission review.
const KIND: &str = "AdmissionReview";
/// The review versions answered (the API server sends the first one the webhook configuration
/// lists; `v1beta1` has the same shape).
const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// A decoded review: the request (without its objects) and the raw objects.
pub(crate) struct Incoming {
    /// The review's `apiVersion`, echoed in the answer.
    pub(crate) api_version: String,
    /// The request; its `object` and `old_object` are `None` (they are in the fields below).
    pub(crate) request: AdmissionRequest<DynamicObject>,
    /// `request.object` as sent (`None` when absent or `null`).
    pub(crate) object: Option<Value>,
    /// `request.oldObject` as sent (`None` when absent or `null`).
    pub(crate) old_object: Option<Value>,
}

/// The top level of a review, before its request is looked at.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<Map<String, Value>>,
}

/// Decodes a review body. `Err` is the reply to send: a `400` when the body is not a review
/// (no `uid` to answer to), a denial with the request's `uid` when only the request is malformed.
pub(crate) fn decode(body: &[u8]) -> Result<Incoming, Reply> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| Reply::bad_request(Error::Json(e)))?;
    let kind = envelope.kind.unwrap_or_default();
    if kind != KIND {
        return Err(Reply::bad_request(Error::Kind(kind)));
    }
    let api_version = envelope.api_version.unwrap_or_default();
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(Reply::bad_request(Error::ApiVersion(api_version)));
    }
    let mut request = envelope
        .request
        .ok_or_else(|| Reply::bad_request(Error::MissingRequest))?;
    let uid = match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
        _ => return Err(Reply::bad_request(Error::MissingUid)),
    };
    let object = request.remove("object").filter(|o| !o.is_null());
    let old_object = request.remove("oldObject").filter(|o| !o.is_null());
    match serde_json::from_value::<AdmissionRequest<DynamicObject>>(Value::Object(request)) {
        Ok(mut request) => {
            request.types = type_meta(&api_version);
            Ok(Incoming {
                api_version,
                request,
                object,
                old_object,
            })
        }
        Err(e) => {
            let mut response = AdmissionResponse::invalid(Error::Request(e));
            response.uid = uid;
            response.result.code = StatusCode::BAD_REQUEST.as_u16();
            Err(respond(&api_version, response))
        }
    }
}

/// The request's `object`, decoded into `K` (see [`decode`]).
pub(crate) fn object<K: Resource + DeserializeOwned>(
    incoming: &Incoming,
    dt: &K::DynamicType,
) -> Result<K, Error> {
    decode_object(incoming, incoming.object.as_ref(), "object", dt)
}

/// The request's `oldObject`, decoded into `K` (see [`decode`]).
pub(crate) fn old_object<K: Resource + DeserializeOwned>(
    incoming: &Incoming,
    dt: &K::DynamicType,
) -> Result<K, Error> {
    decode_object(incoming, incoming.old_object.as_ref(), "oldObject", dt)
}

/// Decodes `raw` (the request's `field`) into `K`, after checking that its `apiVersion` and
/// `kind`, when present, are `K`'s.
fn decode_object<K: Resource + DeserializeOwned>(
    incoming: &Incoming,
    raw: Option<&Value>,
    field: &'static str,
    dt: &K::DynamicType,
) -> Result<K, Error> {
    let raw = raw.ok_or_else(|| Error::MissingObject {
        operation: incoming.request.operation.clone(),
        field,
    })?;
    let api_version = raw.get("apiVersion").and_then(Value::as_str);
    let kind = raw.get("kind").and_then(Value::as_str);
    if let (Some(api_version), Some(kind)) = (api_version, kind)
        && (api_version != K::api_version(dt) || kind != K::kind(dt))
    {
        return Err(Error::WrongType {
            field,
            found: format!("{api_version} {kind}"),
            expected: format!("{} {}", K::api_version(dt), K::kind(dt)),
        });
    }
    K::deserialize(raw).map_err(|source| Error::Decode {
        field,
        kind: K::kind(dt).into_owned(),
        source,
    })
}

/// The `TypeMeta` of a review of this version.
fn type_meta(api_version: &str) -> TypeMeta {
    TypeMeta {
        api_version: api_version.to_owned(),
        kind: KIND.to_owned(),
    }
}

/// Serialises the answer to a review: the request's `uid` is the caller's business, a missing
/// `status.code` becomes `200` (controller-runtime's `Response.Complete`).
pub(crate) fn respond(api_version: &str, mut response: AdmissionResponse) -> Reply {
    if response.result.code == 0 {
        response.result.code = StatusCode::OK.as_u16();
    }
    let review = AdmissionReview::<DynamicObject> {
        types: type_meta(api_version),
        request: None,
        response: Some(response),
    };
    match serde_json::to_vec(&review) {
        Ok(body) => Reply::ok(body),
        Err(e) => {
            tracing::error!(error = %e, "unable to encode an admission response");
            let body =
                serde_json::json!({ "error": format!("unable to encode the response: {e}") });
            Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: body.to_string().into(),
            }
        }
    }
}

/// An allowed response with `status.code` 200 and the given warnings.
pub(crate) fn allowed(incoming: &Incoming, warnings: Vec<String>) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(&incoming.request);
    response.result.code = StatusCode::OK.as_u16();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// A denial carrying the [`Denied`]'s message, code, reason and warnings.
pub(crate) fn denied(incoming: &Incoming, denied: Denied) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(&incoming.request).deny(denied.message());
    response.result.code = denied.code().as_u16();
    response.result.reason = denied.reason().to_owned();
    let warnings = denied.into_warnings();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// A denial for an error of the webhook or of the request (controller-runtime's `Errored`):
/// only a code and a message, no reason.
pub(crate) fn errored(
    incoming: &Incoming,
    code: StatusCode,
    message: impl std::fmt::Display,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(&incoming.request).deny(message);
    response.result.code = code.as_u16();
    response
}

/// Writes the answer to `incoming`: the request's `uid` whatever the handler put there
/// (controller-runtime's `Response.Complete`).
pub(crate) fn finish(incoming: &Incoming, mut response: AdmissionResponse) -> Reply {
    response.uid.clone_from(&incoming.request.uid);
    respond(&incoming.api_version, response)
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Awaits `fut` with the request as [`current_request`], turning a panic into a `500` denial
/// for this request.
pub(crate) async fn catch_panic<Fut>(incoming: &Incoming, fut: Fut) -> AdmissionResponse
where
    Fut: Future<Output = AdmissionResponse>,
{
    let fut = REQUEST.scope(Arc::new(incoming.request.clone()), fut);
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let message = panic_message(&*payload);
            tracing::error!(
                uid = %incoming.request.uid,
                panic = %message,
                "admission webhook panicked"
            );
            errored(
                incoming,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("panic: {message} [recovered]"),
            )
        }
    }
}
