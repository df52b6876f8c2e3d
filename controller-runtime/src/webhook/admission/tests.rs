//! Admission webhooks end to end at the [`Handler`] level: review bodies in, replies out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::admission::AdmissionResponse;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::*;
use crate::webhook::{Handler, Reply};

/// A review of `operation` with these objects (`Value::Null` for none).
pub(super) fn review(operation: &str, object: Value, old_object: Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "cm",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old_object,
            "dryRun": false
        }
    })
    .to_string()
    .into_bytes()
}

pub(super) fn config_map(data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default", "creationTimestamp": null},
        "data": data
    })
}

pub(super) async fn call(handler: &impl Handler, body: Vec<u8>) -> Reply {
    handler.handle(body.into()).await
}

/// The `response` of a `200` review reply, after checking the review's type and `uid`.
pub(super) fn reviewed(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let review: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(
        review["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    review["response"].clone()
}

/// The `error` of a `400` reply.
fn bad_request(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

/// The JSON patch of a response, decoded.
pub(super) fn patch_of(response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Adds `team: platform` to the labels and `default: "1"` to the data; refuses `forbidden`.
pub(super) struct TeamLabel;

impl Defaulter<ConfigMap> for TeamLabel {
    async fn apply_defaults(&self, cm: &mut ConfigMap) -> Result<(), Denied> {
        let data = cm.data.get_or_insert_with(Default::default);
        if data.contains_key("forbidden") {
            return Err(Denied::new("forbidden key"));
        }
        data.entry("default".into()).or_insert_with(|| "1".into());
        let labels = cm.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("team".into(), "platform".into());
        Ok(())
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_clear_error() {
    let handler = DefaultingWebhook::<ConfigMap, _>::new(TeamLabel);
    let good = review("CREATE", config_map(json!({})), Value::Null);
    let truncated = good[..good.len() / 2].to_vec();
    assert!(bad_request(&call(&handler, truncated).await).contains("not an AdmissionReview"));
    assert!(
        bad_request(&call(&handler, b"[1, 2]".to_vec()).await).contains("not an AdmissionReview")
    );
    assert!(bad_request(&call(&handler, Vec::new()).await).contains("not an AdmissionReview"));

    let mut wrong_kind: Value = serde_json::from_slice(&good).unwrap();
    wrong_kind["kind"] = "ConversionReview".into();
    let error = bad_request(&call(&handler, wrong_kind.to_string().into_bytes()).await);
    assert_eq!(
        error,
        "request body has kind \"ConversionReview\", expected AdmissionReview"
    );

    let mut wrong_version: Value = serde_json::from_slice(&good).unwrap();
    wrong_version["apiVersion"] = "admission.k8s.io/v2".into();
    let error = bad_request(&call(&handler, wrong_version.to_string().into_bytes()).await);
    assert!(
        error.contains("apiVersion \"admission.k8s.io/v2\""),
        "{error}"
    );

    let mut no_request: Value = serde_json::from_slice(&good).unwrap();
    no_request.as_object_mut().unwrap().remove("request");
    let error = bad_request(&call(&handler, no_request.to_string().into_bytes()).await);
    assert_eq!(error, "AdmissionReview has no request");

    let mut no_uid: Value = serde_json::from_slice(&good).unwrap();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let error = bad_request(&call(&handler, no_uid.to_string().into_bytes()).await);
    assert_eq!(error, "AdmissionReview request has no uid");
}

#[tokio::test]
async fn a_malformed_request_with_a_uid_is_denied_with_400() {
    let handler = ValidatingWebhook::<ConfigMap, _>::new(Allow);
    let mut body: Value =
        serde_json::from_slice(&review("CREATE", config_map(json!({})), Value::Null)).unwrap();
    body["request"]["operation"] = "EXPLODE".into();
    let response = reviewed(&call(&handler, body.to_string().into_bytes()).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("malformed AdmissionReview request: "),
        "{message}"
    );
}

#[tokio::test]
async fn an_object_that_does_not_decode_is_denied_with_400() {
    let handler = DefaultingWebhook::<ConfigMap, _>::new(TeamLabel);
    let body = review("CREATE", config_map(json!({"a": 5})), Value::Null);
    let response = reviewed(&call(&handler, body).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("unable to decode object into ConfigMap: "),
        "{message}"
    );

    let mut secret = config_map(json!({}));
    secret["kind"] = "Secret".into();
    let response = reviewed(&call(&handler, review("CREATE", secret, Value::Null)).await);
    assert_eq!(response["status"]["code"], 400);
    assert_eq!(
        response["status"]["message"],
        "object is v1 Secret, this webhook handles v1 ConfigMap"
    );

    let response = reviewed(&call(&handler, review("CREATE", Value::Null, Value::Null)).await);
    assert_eq!(
        response["status"]["message"],
        "Create request has no object"
    );
}

/// Allows everything (the trait's default methods).
struct Allow;
impl Validator<ConfigMap> for Allow {}

#[tokio::test]
async fn plain_handler_gets_dynamic_objects_and_answers_with_the_request_uid() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let handler = AdmissionWebhook::new(move |req: AdmissionRequest<DynamicObject>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let object = req.object.clone().expect("create has an object");
            let mut response = AdmissionResponse::from(&req);
            response.uid = "not-the-request-uid".into();
            if object.data["data"]["deny"].is_string() {
                response = response.deny(format!("{} says no", object.metadata.name.unwrap()));
            }
            response
        }
    });
    let allowed = reviewed(
        &call(
            &handler,
            review("CREATE", config_map(json!({})), Value::Null),
        )
        .await,
    );
    assert_eq!(
        (&allowed["allowed"], &allowed["status"]["code"]),
        (&json!(true), &json!(200))
    );
    let body = review("CREATE", config_map(json!({"deny": "1"})), Value::Null);
    let denied = reviewed(&call(&handler, body).await);
    assert_eq!(denied["status"]["message"], "cm says no");

    let body = review("CREATE", json!({"metadata": {"name": 5}}), Value::Null);
    let undecodable = reviewed(&call(&handler, body).await);
    assert_eq!(undecodable["status"]["code"], 400);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "not called for an undecodable object"
    );
}

/// Sets `spec.replicas` to 1 when absent.
struct OneReplica;
impl Defaulter<DynamicObject> for OneReplica {
    async fn apply_defaults(&self, obj: &mut DynamicObject) -> Result<(), Denied> {
        if obj.data["spec"].get("replicas").is_none() {
            obj.data["spec"]["replicas"] = json!(1);
        }
        Ok(())
    }
}

#[tokio::test]
async fn dynamic_objects_are_defaulted_and_checked_against_their_api_resource() {
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Foo");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "foos");
    let handler = DefaultingWebhook::<DynamicObject, _>::with_dynamic_type(OneReplica, resource);
    let foo = json!({
        "apiVersion": "example.com/v1", "kind": "Foo",
        "metadata": {"name": "f", "x-unknown": 1}, "spec": {"size": 3}
    });
    let response = reviewed(&call(&handler, review("CREATE", foo.clone(), Value::Null)).await);
    let patch = patch_of(&response);
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/spec/replicas", "value": 1}])
    );

    let mut bar = foo;
    bar["apiVersion"] = "example.com/v2".into();
    let response = reviewed(&call(&handler, review("CREATE", bar, Value::Null)).await);
    assert_eq!(
        response["status"]["message"],
        "object is example.com/v2 Foo, this webhook handles example.com/v1 Foo"
    );
}

#[test]
fn paths_are_controller_runtime_s() {
    use k8s_openapi::api::apps::v1::Deployment;
    assert_eq!(mutate_path::<Deployment>(&()), "/mutate-apps-v1-deployment");
    assert_eq!(validate_path::<ConfigMap>(&()), "/validate--v1-configmap");
    let gvk = GroupVersionKind::gvk("batch.tutorial.kubebuilder.io", "v1", "CronJob");
    let resource = ApiResource::from_gvk(&gvk);
    assert_eq!(
        mutate_path::<DynamicObject>(&resource),
        "/mutate-batch-tutorial-kubebuilder-io-v1-cronjob"
    );
    let builder = WebhookBuilder::<ConfigMap>::new().with_validator(Allow);
    assert_eq!(
        builder.paths(),
        WebhookPaths {
            mutate: None,
            validate: Some("/validate--v1-configmap".into())
        }
    );
    let custom = builder
        .with_validate_path("/check")
        .with_mutate_path("/ignored");
    assert_eq!(custom.paths().validate.as_deref(), Some("/check"));
    assert_eq!(custom.paths().mutate, None);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::webhook::admission::validator::tests::Checks;

    fn answers(handler: &impl Handler, body: Vec<u8>) -> Reply {
        futures::executor::block_on(handler.handle(body.into()))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let reply = answers(&DefaultingWebhook::<ConfigMap, _>::new(TeamLabel), body.clone());
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            let reply = answers(&ValidatingWebhook::<ConfigMap, _>::new(Checks::default()), body);
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        }

        #[test]
        fn arbitrary_objects_never_panic(
            data in proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,4}", 0..4),
            name in proptest::option::of("[a-z]{1,5}"),
            operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE"), Just("PATCH")],
            garbage in any::<bool>(),
        ) {
            let mut object = config_map(serde_json::to_value(&data).unwrap());
            object["metadata"]["name"] = name.map_or(Value::Null, Value::from);
            if garbage {
                object["data"] = json!([data.len()]);
            }
            let body = review(operation, object.clone(), object);
            let reply = answers(&DefaultingWebhook::<ConfigMap, _>::new(TeamLabel), body.clone());
            prop_assert_eq!(reply.status, StatusCode::OK);
            let reply = answers(&ValidatingWebhook::<ConfigMap, _>::new(Checks::default()), body);
            prop_assert_eq!(reply.status, StatusCode::OK);
        }
    }
}
