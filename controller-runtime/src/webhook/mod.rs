//! Admission and conversion webhooks served over HTTPS by the manager (controller-runtime's
//! `pkg/webhook`, `pkg/webhook/admission`, `pkg/webhook/conversion` and `pkg/certwatcher`).
//!
//! A webhook is a [`Handler`] registered at a path of the manager's webhook [`server`]: it
//! receives the request body (an `AdmissionReview` or a `ConversionReview`) and answers a
//! [`Reply`]. [`admission`] turns defaulters and validators into handlers, [`conversion`] turns
//! hub/spoke conversions into one.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::StatusCode;

pub mod admission;
pub mod conversion;
pub mod server;

/// A boxed future answering one webhook request.
pub type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// One webhook endpoint: takes the body of a `POST` and answers it.
///
/// The server has already enforced the body limit and the read timeout; a handler decodes the
/// body itself, so that a malformed review gets a `400` saying what is wrong with it.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Never panics on bad input: a body that is not the review this
    /// handler expects is answered with [`Reply::bad_request`].
    fn handle(&self, body: Bytes) -> ReplyFuture<'_>;
}

/// What a [`Handler`] answers: an HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status: `200` for any decoded review (allowed or not), `400` for a malformed one.
    pub status: StatusCode,
    /// The JSON body (`application/json`).
    pub body: Bytes,
}

impl Reply {
    /// `200` with a serialised review.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            body: body.into(),
        }
    }

    /// `400` with `{"error": message}`: the request was not a review this handler understands.
    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        let body = serde_json::json!({ "error": message.to_string() });
        Self {
            status: StatusCode::BAD_REQUEST,
            body: Bytes::from(body.to_string()),
        }
    }
}
