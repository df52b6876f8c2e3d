//! Plain admission handlers: any function of an `AdmissionRequest` (controller-runtime's
//! `admission.HandlerFunc`).

use std::future::Future;

use bytes::Bytes;
use http::StatusCode;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use serde::Deserialize;

use super::Error;
use super::review::{self, Incoming};
use crate::webhook::{Handler, ReplyFuture};

/// Answers one admission request: build the answer with
/// [`AdmissionResponse::from(&req)`](AdmissionResponse) then `.deny(…)`, `.with_patch(…)`….
///
/// Implemented for `Fn(AdmissionRequest<DynamicObject>) -> impl Future<Output =
/// AdmissionResponse>` closures. The answer's `uid` is set to the request's whatever it holds,
/// and a `status.code` of 0 becomes 200.
pub trait Admit: Send + Sync + 'static {
    /// Answers `req`.
    fn admit(
        &self,
        req: AdmissionRequest<DynamicObject>,
    ) -> impl Future<Output = AdmissionResponse> + Send;
}

impl<F, Fut> Admit for F
where
    F: Fn(AdmissionRequest<DynamicObject>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = AdmissionResponse> + Send,
{
    fn admit(
        &self,
        req: AdmissionRequest<DynamicObject>,
    ) -> impl Future<Output = AdmissionResponse> + Send {
        self(req)
    }
}

/// The [`Handler`] of a webhook answered by an [`Admit`], for any kind of object (mutating or
/// validating: the configuration that points at it decides).
pub struct AdmissionWebhook<A> {
    admit: A,
}

// === impl AdmissionWebhook ===

impl<A: Admit> AdmissionWebhook<A> {
    /// A webhook answered by `admit`.
    pub fn new(admit: A) -> Self {
        Self { admit }
    }

    async fn process(&self, incoming: &Incoming) -> AdmissionResponse {
        let mut request = incoming.request.clone();
        let decode = |raw: Option<&serde_json::Value>, field| {
            raw.map(|raw| {
                DynamicObject::deserialize(raw).map_err(|source| Error::Decode {
                    field,
                    kind: "DynamicObject".to_owned(),
                    source,
                })
            })
            .transpose()
        };
        match (
            decode(incoming.object.as_ref(), "object"),
            decode(incoming.old_object.as_ref(), "oldObject"),
        ) {
            (Ok(object), Ok(old_object)) => {
                request.object = object;
                request.old_object = old_object;
            }
            (Err(e), _) | (_, Err(e)) => {
                return review::errored(incoming, StatusCode::BAD_REQUEST, e);
            }
        }
        self.admit.admit(request).await
    }
}

impl<A: Admit> Handler for AdmissionWebhook<A> {
    fn handle(&self, body: Bytes) -> ReplyFuture<'_> {
        Box::pin(async move {
            let incoming = match review::decode(&body) {
                Ok(incoming) => incoming,
                Err(reply) => return reply,
            };
            let response = review::catch_panic(&incoming, self.process(&incoming)).await;
            review::finish(&incoming, response)
        })
    }
}
