//! Reading a `ConversionReview`, converting its objects and writing the answer
//! (controller-runtime's `webhook/conversion/conversion.go`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use http::StatusCode;
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use kube::core::{Status, TypeMeta};
use serde::Deserialize;
use serde_json::Value;

use super::{ConversionWebhook, Error};
use crate::webhook::{Handler, Reply, ReplyFuture};

/// The `kind` of a conversion review.
const KIND: &str = "ConversionReview";
/// The review versions answered (the API server sends the first one the CRD's
/// `conversionReviewVersions` lists; `v1beta1` has the same shape).
const API_VERSIONS: [&str; 2] = ["apiextensions.k8s.io/v1", "apiextensions.k8s.io/v1beta1"];

/// The top level of a review, before its request is looked at.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<Value>,
}

/// Decodes a review body into its request, with the review's `TypeMeta` in `types`.
fn decode(body: &[u8]) -> Result<ConversionRequest, Error> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(Error::Json)?;
    let kind = envelope.kind.unwrap_or_default();
    if kind != KIND {
        return Err(Error::Kind(kind));
    }
    let api_version = envelope.api_version.unwrap_or_default();
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(Error::ApiVersion(api_version));
    }
    let request = envelope.request.ok_or(Error::MissingRequest)?;
    let mut request: ConversionRequest = serde_json::from_value(request).map_err(Error::Request)?;
    request.types = Some(TypeMeta { api_version, kind });
    Ok(request)
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// `Kind namespace/name` (or `Kind name`) of an object, for messages.
fn describe(object: &Value, kind: &str) -> String {
    let meta = &object["metadata"];
    match (meta["namespace"].as_str(), meta["name"].as_str()) {
        (Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} (no name)"),
    }
}

// === impl ConversionWebhook ===

impl ConversionWebhook {
    /// Answers a review body: `400` if it is not a review, else the converted objects or a
    /// failure.
    pub(super) fn answer(&self, body: &[u8]) -> Reply {
        let mut request = match decode(body) {
            Ok(request) => request,
            Err(e) => return Reply::bad_request(e),
        };
        let objects = std::mem::take(&mut request.objects);
        let desired = request.desired_api_version.clone();
        let uid = request.uid.clone();
        let response = ConversionResponse::for_request(request);
        let response = match self.convert(&desired, objects) {
            Ok(converted) => response.success(converted),
            Err(e) => {
                tracing::warn!(%uid, error = %e, "conversion failed");
                response.failure(Status::failure(&e.to_string(), ""))
            }
        };
        match serde_json::to_vec(&ConversionReview::from(response)) {
            Ok(body) => Reply::ok(body),
            Err(e) => {
                let body =
                    serde_json::json!({ "error": format!("unable to encode the response: {e}") });
                Reply {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: body.to_string().into(),
                }
            }
        }
    }

    /// Converts every object to `desired`, or fails on the first that cannot be.
    fn convert(&self, desired: &str, objects: Vec<Value>) -> Result<Vec<Value>, Error> {
        if !self
            .versions
            .keys()
            .any(|(api_version, _)| api_version == desired)
        {
            return Err(Error::UnknownDesiredVersion(desired.to_owned()));
        }
        objects
            .into_iter()
            .enumerate()
            .map(|(index, object)| self.convert_one(index, object, desired))
            .collect()
    }

    fn convert_one(&self, index: usize, object: Value, desired: &str) -> Result<Value, Error> {
        let (Some(from), Some(kind)) = (
            object.get("apiVersion").and_then(Value::as_str),
            object.get("kind").and_then(Value::as_str),
        ) else {
            return Err(Error::NotAnObject { index });
        };
        if from == desired {
            return Ok(object);
        }
        let fail = |message: String| Error::Convert {
            object: describe(&object, kind),
            from: from.to_owned(),
            to: desired.to_owned(),
            message,
        };
        let source = self.versions.get(&(from.to_owned(), kind.to_owned()));
        let target = self.versions.get(&(desired.to_owned(), kind.to_owned()));
        let (Some(source), Some(target)) = (source, target) else {
            return Err(Error::Unconvertible {
                object: describe(&object, kind),
                from: from.to_owned(),
                to: desired.to_owned(),
            });
        };
        if source.hub() != target.hub() {
            return Err(fail("the two versions have different hubs".to_owned()));
        }
        let converted = catch_unwind(AssertUnwindSafe(|| {
            let hub = source.to_hub(&object)?;
            target.encode_from_hub(&*hub)
        }));
        let mut converted = match converted {
            Ok(Ok(Value::Object(converted))) => converted,
            Ok(Ok(_)) => return Err(fail("the converted object is not a JSON object".into())),
            Ok(Err(message)) => return Err(fail(message)),
            Err(payload) => {
                let message = panic_message(&*payload);
                return Err(fail(format!("panic: {message} [recovered]")));
            }
        };
        converted.insert("apiVersion".to_owned(), desired.into());
        converted.insert("kind".to_owned(), kind.into());
        if let Some(metadata) = object.get("metadata") {
            converted.insert("metadata".to_owned(), metadata.clone());
        }
        Ok(Value::Object(converted))
    }
}

impl Handler for ConversionWebhook {
    fn handle(&self, body: Bytes) -> ReplyFuture<'_> {
        Box::pin(async move { self.answer(&body) })
    }
}
