//! Defaulting webhooks (controller-runtime's `admission/defaulter_custom.go`).

use std::future::Future;

use bytes::Bytes;
use http::StatusCode;
use kube::core::Resource;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Denied;
use super::review::{self, Incoming};
use crate::webhook::{Handler, ReplyFuture};

/// Fills in an object before the API server stores it (controller-runtime's `Defaulter`).
///
/// Set the fields a user left out; return [`Denied`] to refuse the request (any error converts
/// into one with `?`). Deletes are let through without a call.
pub trait Defaulter<K>: Send + Sync + 'static {
    /// Sets defaults on `obj`, the object of a create or update.
    fn apply_defaults(&self, obj: &mut K) -> impl Future<Output = Result<(), Denied>> + Send;
}

/// The [`Handler`] of a mutating webhook: decodes the request's object into `K`, runs the
/// [`Defaulter`] and answers the JSON patch from the object as sent to the defaulted one.
///
/// The patch only touches what the defaulter changed: fields `K` does not know (and so did not
/// decode) are left as the API server sent them.
pub struct DefaultingWebhook<K: Resource, D> {
    defaulter: D,
    dt: K::DynamicType,
}

// === impl DefaultingWebhook ===

impl<K, D> DefaultingWebhook<K, D>
where
    K: Resource,
{
    /// A webhook for a typed `K` (`k8s_openapi` and `#[derive(CustomResource)]` types).
    pub fn new(defaulter: D) -> Self
    where
        K::DynamicType: Default,
    {
        Self::with_dynamic_type(defaulter, K::DynamicType::default())
    }

    /// A webhook for a `K` known at run time, e.g. a
    /// [`DynamicObject`](kube::core::DynamicObject) with its
    /// [`ApiResource`](kube::core::ApiResource): objects of another `apiVersion`/`kind` are
    /// refused.
    pub fn with_dynamic_type(defaulter: D, dt: K::DynamicType) -> Self {
        Self { defaulter, dt }
    }
}

impl<K, D> DefaultingWebhook<K, D>
where
    K: Resource + Serialize + DeserializeOwned + Send + Sync + 'static,
    D: Defaulter<K>,
{
    async fn process(&self, incoming: &Incoming) -> AdmissionResponse {
        if incoming.request.operation == Operation::Delete {
            return review::allowed(incoming, Vec::new());
        }
        let mut obj: K = match review::object(incoming, &self.dt) {
            Ok(obj) => obj,
            Err(e) => return review::errored(incoming, StatusCode::BAD_REQUEST, e),
        };
        let before = match serde_json::to_value(&obj) {
            Ok(before) => before,
            Err(e) => return review::errored(incoming, StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        if let Err(denied) = self.defaulter.apply_defaults(&mut obj).await {
            return review::denied(incoming, denied);
        }
        let after = match serde_json::to_value(&obj) {
            Ok(after) => after,
            Err(e) => return review::errored(incoming, StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let allowed = review::allowed(incoming, Vec::new());
        let Some(raw) = incoming.object.as_ref() else {
            return allowed; // unreachable: `review::object` decoded it
        };
        let patch = patch(raw, &before, &after);
        if patch.0.is_empty() {
            return allowed;
        }
        match allowed.with_patch(patch) {
            Ok(response) => response,
            Err(e) => review::errored(incoming, StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
}

impl<K, D> Handler for DefaultingWebhook<K, D>
where
    K: Resource + Serialize + DeserializeOwned + Send + Sync + 'static,
    D: Defaulter<K>,
{
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

/// The JSON patch for `raw` (the object as the API server sent it) that makes the changes from
/// `before` to `after` (the typed object before and after defaulting, serialised): empty when
/// the defaulter changed nothing.
pub(crate) fn patch(raw: &Value, before: &Value, after: &Value) -> json_patch::Patch {
    if before == after {
        return json_patch::Patch::default();
    }
    json_patch::diff(raw, &rebase(raw, before, after))
}

/// `raw` with the changes from `before` to `after` applied, where `raw` may hold fields that
/// `before` and `after` lack (unknown to the type) and lack fields they hold (`null`s and
/// defaults a serialiser writes): those are left as in `raw` unless the change touched them.
fn rebase(raw: &Value, before: &Value, after: &Value) -> Value {
    if before == after {
        return raw.clone();
    }
    match (raw, before, after) {
        (Value::Object(raw), Value::Object(before), Value::Object(after)) => {
            let mut out = raw.clone();
            for (key, after_value) in after {
                match (raw.get(key), before.get(key)) {
                    (Some(raw_value), Some(before_value)) => {
                        out.insert(key.clone(), rebase(raw_value, before_value, after_value));
                    }
                    // The serialiser wrote it, the defaulter did not change it: leave it out.
                    (None, Some(before_value)) if before_value == after_value => {}
                    _ => {
                        out.insert(key.clone(), after_value.clone());
                    }
                }
            }
            for key in before.keys() {
                if !after.contains_key(key) {
                    out.remove(key);
                }
            }
            Value::Object(out)
        }
        (Value::Array(raw), Value::Array(before), Value::Array(after))
            if raw.len() == before.len() && before.len() == after.len() =>
        {
            let items = raw.iter().zip(before).zip(after);
            Value::Array(items.map(|((r, b), a)| rebase(r, b, a)).collect())
        }
        _ => after.clone(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;
    use crate::webhook::admission::tests::{
        TeamLabel, call, config_map, patch_of, review, reviewed,
    };

    fn apply(raw: &Value, patch: &json_patch::Patch) -> Value {
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, patch).unwrap();
        doc
    }

    #[test]
    fn unchanged_object_has_no_patch() {
        let raw = json!({"spec": {"a": 1}, "unknown": true});
        let typed = json!({"spec": {"a": 1}, "status": null});
        assert!(patch(&raw, &typed, &typed).0.is_empty());
    }

    #[test]
    fn patch_keeps_unknown_fields_and_serialiser_nulls_out() {
        let raw = json!({"metadata": {"name": "a", "x-unknown": 1}, "spec": {"list": [1, 2]}});
        let before = json!({"metadata": {"name": "a"}, "spec": {"list": [1, 2], "count": null}, "status": null});
        let after = json!({"metadata": {"name": "a", "labels": {"l": "v"}}, "spec": {"list": [1, 2], "count": 1}, "status": null});
        let p = patch(&raw, &before, &after);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"l": "v"}},
                {"op": "add", "path": "/spec/count", "value": 1},
            ])
        );
        let patched = apply(&raw, &p);
        assert_eq!(patched["metadata"]["x-unknown"], 1);
        assert!(patched.get("status").is_none());
    }

    #[test]
    fn removals_and_array_changes_apply_to_the_raw_object() {
        let raw = json!({"spec": {"drop": "x", "items": [{"n": 1, "u": 0}, {"n": 2}]}});
        let before = json!({"spec": {"drop": "x", "items": [{"n": 1}, {"n": 2}]}});
        let after = json!({"spec": {"items": [{"n": 1}, {"n": 3}, {"n": 4}]}});
        let patched = apply(&raw, &patch(&raw, &before, &after));
        assert_eq!(
            patched,
            json!({"spec": {"items": [{"n": 1}, {"n": 3}, {"n": 4}]}})
        );

        let same_len = json!({"spec": {"drop": "x", "items": [{"n": 1}, {"n": 5}]}});
        let patched = apply(&raw, &patch(&raw, &before, &same_len));
        // Element-wise: the unknown field of the untouched element survives.
        assert_eq!(
            patched["spec"]["items"],
            json!([{"n": 1, "u": 0}, {"n": 5}])
        );
    }

    #[tokio::test]
    async fn defaulter_answers_the_json_patch_to_the_defaulted_object() {
        let handler = DefaultingWebhook::<ConfigMap, _>::new(TeamLabel);
        let object = config_map(json!({"a": "b"}));
        let response =
            reviewed(&call(&handler, review("CREATE", object.clone(), Value::Null)).await);
        assert_eq!(response["allowed"], true);
        assert_eq!(response["status"]["code"], 200);
        let patch = patch_of(&response);
        assert_eq!(
            patch,
            json!([
                {"op": "add", "path": "/data/default", "value": "1"},
                {"op": "add", "path": "/metadata/labels", "value": {"team": "platform"}},
            ])
        );
        let mut patched = object;
        json_patch::patch(
            &mut patched,
            &serde_json::from_value::<json_patch::Patch>(patch).unwrap(),
        )
        .unwrap();
        assert_eq!(
            patched["metadata"]["creationTimestamp"],
            Value::Null,
            "left as sent"
        );
        assert_eq!(patched["data"], json!({"a": "b", "default": "1"}));
    }

    #[tokio::test]
    async fn defaulter_without_changes_answers_no_patch() {
        let handler = DefaultingWebhook::<ConfigMap, _>::new(TeamLabel);
        let mut object = config_map(json!({"default": "1"}));
        object["metadata"]["labels"] = json!({"team": "platform"});
        let response = reviewed(&call(&handler, review("UPDATE", object.clone(), object)).await);
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none() && response.get("patchType").is_none());
    }

    #[tokio::test]
    async fn defaulter_denial_and_delete() {
        let handler = DefaultingWebhook::<ConfigMap, _>::new(TeamLabel);
        let object = config_map(json!({"forbidden": "x"}));
        let response =
            reviewed(&call(&handler, review("CREATE", object.clone(), Value::Null)).await);
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        assert_eq!(response["status"]["message"], "forbidden key");

        // Deletes are not defaulted, whatever the old object.
        let response = reviewed(&call(&handler, review("DELETE", Value::Null, object)).await);
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());
    }
}
