//! Validating webhooks (controller-runtime's `admission/validator_custom.go`).

use std::future::Future;

use bytes::Bytes;
use http::StatusCode;
use kube::core::Resource;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::de::DeserializeOwned;

use super::review::{self, Incoming};
use super::{Denied, Warnings};
use crate::webhook::{Handler, ReplyFuture};

/// Checks objects before the API server stores or deletes them (controller-runtime's
/// `Validator`).
///
/// Each method answers `Ok(warnings)` to allow the request (the warnings reach the client) or
/// [`Denied`] to refuse it (any error converts into one with `?`). The methods you do not
/// implement allow everything. Connects are let through without a call.
pub trait Validator<K>: Send + Sync + 'static {
    /// Checks the object of a create.
    fn validate_create(&self, obj: &K) -> impl Future<Output = Result<Warnings, Denied>> + Send {
        let _ = obj;
        async { Ok(Warnings::new()) }
    }

    /// Checks an update from `old` to `new`.
    fn validate_update(
        &self,
        old: &K,
        new: &K,
    ) -> impl Future<Output = Result<Warnings, Denied>> + Send {
        let _ = (old, new);
        async { Ok(Warnings::new()) }
    }

    /// Checks the delete of `old`.
    fn validate_delete(&self, old: &K) -> impl Future<Output = Result<Warnings, Denied>> + Send {
        let _ = old;
        async { Ok(Warnings::new()) }
    }
}

/// The [`Handler`] of a validating webhook: decodes the request's objects into `K` and calls
/// the [`Validator`] method for the operation.
pub struct ValidatingWebhook<K: Resource, V> {
    validator: V,
    dt: K::DynamicType,
}

// === impl ValidatingWebhook ===

impl<K, V> ValidatingWebhook<K, V>
where
    K: Resource,
{
    /// A webhook for a typed `K` (`k8s_openapi` and `#[derive(CustomResource)]` types).
    pub fn new(validator: V) -> Self
    where
        K::DynamicType: Default,
    {
        Self::with_dynamic_type(validator, K::DynamicType::default())
    }

    /// A webhook for a `K` known at run time, e.g. a
    /// [`DynamicObject`](kube::core::DynamicObject) with its
    /// [`ApiResource`](kube::core::ApiResource): objects of another `apiVersion`/`kind` are
    /// refused.
    pub fn with_dynamic_type(validator: V, dt: K::DynamicType) -> Self {
        Self { validator, dt }
    }
}

impl<K, V> ValidatingWebhook<K, V>
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
    V: Validator<K>,
{
    async fn process(&self, incoming: &Incoming) -> AdmissionResponse {
        let verdict = match incoming.request.operation {
            Operation::Connect => Ok(Warnings::new()),
            Operation::Create => match review::object::<K>(incoming, &self.dt) {
                Ok(obj) => self.validator.validate_create(&obj).await,
                Err(e) => return review::errored(incoming, StatusCode::BAD_REQUEST, e),
            },
            Operation::Update => {
                let objects = review::object::<K>(incoming, &self.dt)
                    .and_then(|new| Ok((review::old_object::<K>(incoming, &self.dt)?, new)));
                match objects {
                    Ok((old, new)) => self.validator.validate_update(&old, &new).await,
                    Err(e) => return review::errored(incoming, StatusCode::BAD_REQUEST, e),
                }
            }
            // The object being deleted is the old object (kubernetes/kubernetes#76346).
            Operation::Delete => match review::old_object::<K>(incoming, &self.dt) {
                Ok(old) => self.validator.validate_delete(&old).await,
                Err(e) => return review::errored(incoming, StatusCode::BAD_REQUEST, e),
            },
        };
        match verdict {
            Ok(warnings) => review::allowed(incoming, warnings),
            Err(denied) => review::denied(incoming, denied),
        }
    }
}

impl<K, V> Handler for ValidatingWebhook<K, V>
where
    K: Resource + DeserializeOwned + Send + Sync + 'static,
    V: Validator<K>,
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

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::{Value, json};

    use super::*;
    use crate::webhook::admission::tests::{call, config_map, review, reviewed};

    /// Counts calls; denies data with `bad`, warns on data with `old`; update checks immutability.
    #[derive(Default)]
    pub(crate) struct Checks {
        calls: Arc<AtomicUsize>,
    }

    impl Validator<ConfigMap> for Checks {
        async fn validate_create(&self, cm: &ConfigMap) -> Result<Warnings, Denied> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let data = cm.data.clone().unwrap_or_default();
            if data.contains_key("bad") {
                return Err(Denied::invalid("bad is not allowed").with_warnings(["think again"]));
            }
            if data.contains_key("old") {
                return Ok(vec!["old is deprecated".into()]);
            }
            Ok(Warnings::new())
        }

        async fn validate_update(
            &self,
            old: &ConfigMap,
            new: &ConfigMap,
        ) -> Result<Warnings, Denied> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if old.data != new.data {
                return Err(Denied::new(format!(
                    "data is immutable (was {:?})",
                    old.data
                )));
            }
            Ok(Warnings::new())
        }

        async fn validate_delete(&self, old: &ConfigMap) -> Result<Warnings, Denied> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if old.metadata.name.as_deref() == Some("cm") {
                let e = serde_json::from_str::<u8>("x").unwrap_err();
                Err(Denied::from(e).with_code(StatusCode::CONFLICT))
            } else {
                Ok(Warnings::new())
            }
        }
    }

    #[tokio::test]
    async fn validator_create_allows_with_warnings_and_denies_with_code_and_warnings() {
        let handler = ValidatingWebhook::<ConfigMap, _>::new(Checks::default());
        let ok = reviewed(
            &call(
                &handler,
                review("CREATE", config_map(json!({})), Value::Null),
            )
            .await,
        );
        assert_eq!(
            (&ok["allowed"], &ok["status"]["code"]),
            (&json!(true), &json!(200))
        );
        assert!(ok.get("warnings").is_none());

        let body = review("CREATE", config_map(json!({"old": "1"})), Value::Null);
        let warned = reviewed(&call(&handler, body).await);
        assert_eq!(warned["allowed"], true);
        assert_eq!(warned["warnings"], json!(["old is deprecated"]));

        let body = review("CREATE", config_map(json!({"bad": "1"})), Value::Null);
        let denied = reviewed(&call(&handler, body).await);
        assert_eq!(denied["allowed"], false);
        assert_eq!(denied["status"]["code"], 422);
        assert_eq!(denied["status"]["reason"], "Invalid");
        assert_eq!(denied["status"]["message"], "bad is not allowed");
        assert_eq!(denied["warnings"], json!(["think again"]));
    }

    #[tokio::test]
    async fn validator_update_sees_the_old_object_and_delete_the_deleted_one() {
        let checks = Checks::default();
        let calls = checks.calls.clone();
        let handler = ValidatingWebhook::<ConfigMap, _>::new(checks);
        let (old, new) = (config_map(json!({"a": "1"})), config_map(json!({"a": "2"})));
        let denied = reviewed(&call(&handler, review("UPDATE", new.clone(), old.clone())).await);
        assert_eq!(
            denied["status"]["message"],
            "data is immutable (was Some({\"a\": \"1\"}))"
        );
        let same = reviewed(&call(&handler, review("UPDATE", old.clone(), old.clone())).await);
        assert_eq!(same["allowed"], true);
        let missing_old = reviewed(&call(&handler, review("UPDATE", new, Value::Null)).await);
        assert_eq!(
            missing_old["status"]["message"],
            "Update request has no oldObject"
        );

        let deleted = reviewed(&call(&handler, review("DELETE", Value::Null, old.clone())).await);
        assert_eq!(deleted["allowed"], false);
        assert_eq!(deleted["status"]["code"], 409);
        assert_eq!(deleted["status"]["reason"], "Conflict");
        assert!(
            deleted["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("expected value")
        );

        let connect = reviewed(&call(&handler, review("CONNECT", Value::Null, Value::Null)).await);
        assert_eq!(connect["allowed"], true);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "connect calls nothing");
    }

    /// Panics on every call.
    struct Panics;
    impl Validator<ConfigMap> for Panics {
        async fn validate_create(&self, _: &ConfigMap) -> Result<Warnings, Denied> {
            panic!("validator bug")
        }
    }

    #[tokio::test]
    async fn a_panicking_validator_is_a_500_denial_and_the_handler_goes_on() {
        let handler = ValidatingWebhook::<ConfigMap, _>::new(Panics);
        for _ in 0..2 {
            let body = review("CREATE", config_map(json!({})), Value::Null);
            let response = reviewed(&call(&handler, body).await);
            assert_eq!(response["allowed"], false);
            assert_eq!(response["status"]["code"], 500);
            assert_eq!(
                response["status"]["message"],
                "panic: validator bug [recovered]"
            );
        }
        let delete = reviewed(
            &call(
                &handler,
                review("DELETE", Value::Null, config_map(json!({}))),
            )
            .await,
        );
        assert_eq!(delete["allowed"], true);
    }

    /// Denies what `mallory` creates, warns on dry runs: reads [`current_request`].
    struct WhoAsks;
    impl Validator<ConfigMap> for WhoAsks {
        async fn validate_create(&self, _: &ConfigMap) -> Result<Warnings, Denied> {
            let request = crate::webhook::admission::current_request().expect("inside a webhook");
            assert!(request.object.is_none(), "the object is the argument");
            if request.user_info.username.as_deref() == Some("mallory") {
                return Err(Denied::new("not you"));
            }
            Ok(if request.dry_run {
                vec!["dry run".into()]
            } else {
                Vec::new()
            })
        }
    }

    #[tokio::test]
    async fn validators_see_the_request_being_answered() {
        let handler = ValidatingWebhook::<ConfigMap, _>::new(WhoAsks);
        let mut body: Value =
            serde_json::from_slice(&review("CREATE", config_map(json!({})), Value::Null)).unwrap();
        body["request"]["dryRun"] = true.into();
        let dry = reviewed(&call(&handler, body.to_string().into_bytes()).await);
        assert_eq!(
            (&dry["allowed"], &dry["warnings"]),
            (&json!(true), &json!(["dry run"]))
        );
        body["request"]["userInfo"]["username"] = "mallory".into();
        let denied = reviewed(&call(&handler, body.to_string().into_bytes()).await);
        assert_eq!(denied["status"]["message"], "not you");
        assert!(crate::webhook::admission::current_request().is_none());
    }
}
