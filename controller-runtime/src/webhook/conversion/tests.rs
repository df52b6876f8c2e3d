//! Conversion reviews at the [`Handler`] level, with a three-version test CRD: `v2` is the hub,
//! `v1` and `v3` are spokes.

use http::StatusCode;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::webhook::{Handler, Reply};

mod v1 {
    use super::*;
    /// `size` is a string like `"4Ki"`.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq)]
    #[kube(
        group = "example.com",
        version = "v1",
        kind = "Foo",
        namespaced,
        schema = "disabled"
    )]
    pub struct FooSpec {
        pub size: String,
    }
}

mod v2 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq)]
    #[kube(
        group = "example.com",
        version = "v2",
        kind = "Foo",
        namespaced,
        schema = "disabled"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct FooSpec {
        pub size_bytes: u64,
    }
}

mod v3 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq)]
    #[kube(
        group = "example.com",
        version = "v3",
        kind = "Foo",
        namespaced,
        schema = "disabled"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct FooSpec {
        pub size_kib: u64,
    }
}

impl Hub for v2::Foo {}

impl Convertible for v1::Foo {
    type Hub = v2::Foo;

    fn convert_to(&self) -> Result<v2::Foo, BoxError> {
        if self.spec.size == "panic" {
            panic!("size panicked");
        }
        let kib: u64 = self.spec.size.trim_end_matches("Ki").parse()?;
        // Metadata left empty on purpose: the webhook puts back what it received.
        Ok(v2::Foo::new(
            "",
            v2::FooSpec {
                size_bytes: kib * 1024,
            },
        ))
    }

    fn convert_from(hub: &v2::Foo) -> Result<Self, BoxError> {
        if !hub.spec.size_bytes.is_multiple_of(1024) {
            return Err(
                format!("{} bytes is not a whole number of KiB", hub.spec.size_bytes).into(),
            );
        }
        let size = format!("{}Ki", hub.spec.size_bytes / 1024);
        Ok(v1::Foo::new("", v1::FooSpec { size }))
    }
}

impl Convertible for v3::Foo {
    type Hub = v2::Foo;

    fn convert_to(&self) -> Result<v2::Foo, BoxError> {
        Ok(v2::Foo::new(
            "",
            v2::FooSpec {
                size_bytes: self.spec.size_kib * 1024,
            },
        ))
    }

    fn convert_from(hub: &v2::Foo) -> Result<Self, BoxError> {
        Ok(v3::Foo::new(
            "",
            v3::FooSpec {
                size_kib: hub.spec.size_bytes / 1024,
            },
        ))
    }
}

fn webhook() -> ConversionWebhook {
    ConversionWebhook::new()
        .spoke::<v1::Foo>()
        .spoke::<v3::Foo>()
}

fn foo(api_version: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "Foo",
        "metadata": {
            "name": name, "namespace": "default", "uid": "7e2b", "resourceVersion": "42",
            "generation": 3, "labels": {"app": "x"}, "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Update"}]
        },
        "spec": spec
    })
}

fn review(desired: &str, objects: Vec<Value>) -> Vec<u8> {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c0ffee", "desiredAPIVersion": desired, "objects": objects}
    })
    .to_string()
    .into_bytes()
}

/// The `response` of a `200` review reply, after checking its type and `uid`.
fn reviewed(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let review: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(review["kind"], "ConversionReview");
    assert_eq!(review["response"]["uid"], "c0ffee");
    review["response"].clone()
}

/// The converted objects of a successful review.
fn converted(webhook: &ConversionWebhook, desired: &str, objects: Vec<Value>) -> Vec<Value> {
    let response = reviewed(&webhook.answer(&review(desired, objects)));
    assert_eq!(response["result"]["status"], "Success", "{response}");
    serde_json::from_value(response["convertedObjects"].clone()).unwrap()
}

/// The failure message of a failed review (no converted objects).
fn failure(webhook: &ConversionWebhook, desired: &str, objects: Vec<Value>) -> String {
    let response = reviewed(&webhook.answer(&review(desired, objects)));
    assert_eq!(response["result"]["status"], "Failure", "{response}");
    assert_eq!(response["convertedObjects"], json!([]));
    response["result"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn v1_to_v2_and_back_round_trips_with_metadata_as_received() {
    let webhook = webhook();
    let original = foo("example.com/v1", "a", json!({"size": "4Ki"}));
    let reply = webhook
        .handle(review("example.com/v2", vec![original.clone()]).into())
        .await;
    let response = reviewed(&reply);
    let at_v2 = &response["convertedObjects"][0];
    assert_eq!(at_v2["apiVersion"], "example.com/v2");
    assert_eq!(at_v2["kind"], "Foo");
    assert_eq!(at_v2["metadata"], original["metadata"]);
    assert_eq!(at_v2["spec"], json!({"sizeBytes": 4096}));

    let back = converted(&webhook, "example.com/v1", vec![at_v2.clone()]);
    assert_eq!(back, vec![original]);
}

#[test]
fn spoke_to_spoke_goes_through_the_hub_and_same_version_passes_through() {
    let webhook = webhook();
    let objects = vec![
        foo("example.com/v1", "a", json!({"size": "8Ki"})),
        foo(
            "example.com/v3",
            "b",
            json!({"sizeKib": 2, "x-unknown": true}),
        ),
        foo("example.com/v2", "c", json!({"sizeBytes": 1024})),
    ];
    let at_v3 = converted(&webhook, "example.com/v3", objects.clone());
    assert_eq!(at_v3[0]["apiVersion"], "example.com/v3");
    assert_eq!(at_v3[0]["spec"], json!({"sizeKib": 8}));
    assert_eq!(at_v3[1], objects[1], "already at v3: as received");
    assert_eq!(at_v3[2]["spec"], json!({"sizeKib": 1}));
    assert_eq!(at_v3[2]["metadata"]["name"], "c");
    let at_v1 = converted(&webhook, "example.com/v1", at_v3);
    assert_eq!(at_v1[0], objects[0]);
    assert_eq!(at_v1[2]["spec"], json!({"size": "1Ki"}));
    assert_eq!(
        webhook.versions(),
        ["example.com/v1", "example.com/v2", "example.com/v3"]
            .map(|v| (v.to_owned(), "Foo".to_owned()))
    );
}

#[test]
fn one_failing_object_fails_the_whole_review() {
    let webhook = webhook();
    let good = foo("example.com/v1", "good", json!({"size": "1Ki"}));
    let bad = foo("example.com/v1", "bad", json!({"size": "lots"}));
    let message = failure(&webhook, "example.com/v2", vec![good.clone(), bad]);
    assert_eq!(
        message,
        "converting Foo default/bad from example.com/v1 to example.com/v2: \
         convert_to: invalid digit found in string"
    );

    let odd = foo("example.com/v2", "odd", json!({"sizeBytes": 1000}));
    let message = failure(&webhook, "example.com/v1", vec![odd]);
    assert!(message.ends_with("convert_from: 1000 bytes is not a whole number of KiB"));

    let undecodable = foo("example.com/v1", "u", json!({"size": 5}));
    let message = failure(&webhook, "example.com/v2", vec![good, undecodable]);
    assert!(
        message.starts_with(
            "converting Foo default/u from example.com/v1 to example.com/v2: decoding: invalid type"
        ),
        "{message}"
    );
}

#[test]
fn unknown_versions_and_non_objects_fail() {
    let webhook = webhook();
    let good = foo("example.com/v1", "good", json!({"size": "1Ki"}));
    assert_eq!(
        failure(&webhook, "example.com/v9", vec![good.clone()]),
        "desired apiVersion \"example.com/v9\" is not a version this webhook converts"
    );
    let unknown = foo("example.com/v0", "old", json!({}));
    assert_eq!(
        failure(&webhook, "example.com/v2", vec![good.clone(), unknown]),
        "Foo default/old: no conversion from example.com/v0 to example.com/v2"
    );
    assert_eq!(
        failure(&webhook, "example.com/v2", vec![good, json!(5)]),
        "object 1 of the request has no apiVersion and kind"
    );
}

#[test]
fn a_panicking_conversion_fails_the_review_and_the_webhook_goes_on() {
    let webhook = webhook();
    let panics = foo("example.com/v1", "p", json!({"size": "panic"}));
    let message = failure(&webhook, "example.com/v2", vec![panics]);
    assert!(
        message.ends_with(": panic: size panicked [recovered]"),
        "{message}"
    );
    let ok = foo("example.com/v1", "ok", json!({"size": "1Ki"}));
    assert_eq!(converted(&webhook, "example.com/v2", vec![ok]).len(), 1);
}

fn bad_request(webhook: &ConversionWebhook, body: &[u8]) -> String {
    let reply = webhook.answer(body);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[test]
fn malformed_reviews_are_400_with_a_clear_error() {
    let webhook = webhook();
    let good = review(
        "example.com/v2",
        vec![foo("example.com/v1", "a", json!({"size": "1Ki"}))],
    );
    let truncated = &good[..good.len() - 10];
    assert!(
        bad_request(&webhook, truncated).starts_with("request body is not a ConversionReview: ")
    );
    assert!(bad_request(&webhook, b"").starts_with("request body is not a ConversionReview: "));

    let mut wrong_kind: Value = serde_json::from_slice(&good).unwrap();
    wrong_kind["kind"] = "AdmissionReview".into();
    assert_eq!(
        bad_request(&webhook, wrong_kind.to_string().as_bytes()),
        "request body has kind \"AdmissionReview\", expected ConversionReview"
    );
    let mut wrong_version: Value = serde_json::from_slice(&good).unwrap();
    wrong_version["apiVersion"] = "admission.k8s.io/v1".into();
    assert_eq!(
        bad_request(&webhook, wrong_version.to_string().as_bytes()),
        "request body has apiVersion \"admission.k8s.io/v1\", expected apiextensions.k8s.io/v1"
    );
    let mut no_request: Value = serde_json::from_slice(&good).unwrap();
    no_request.as_object_mut().unwrap().remove("request");
    assert_eq!(
        bad_request(&webhook, no_request.to_string().as_bytes()),
        "ConversionReview has no request"
    );
    let mut no_desired: Value = serde_json::from_slice(&good).unwrap();
    no_desired["request"]
        .as_object_mut()
        .unwrap()
        .remove("desiredAPIVersion");
    let error = bad_request(&webhook, no_desired.to_string().as_bytes());
    assert!(
        error.starts_with("malformed ConversionReview request: missing field `desiredAPIVersion`"),
        "{error}"
    );
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert_eq!(webhook().answer(&body).status, StatusCode::BAD_REQUEST);
        }

        #[test]
        fn arbitrary_objects_never_panic(
            from in prop_oneof![Just("example.com/v1"), Just("example.com/v2"), Just("example.com/v3"), Just("x/v1")],
            to in prop_oneof![Just("example.com/v1"), Just("example.com/v2"), Just("example.com/v3"), Just("")],
            size in prop_oneof![
                "[0-9]{1,25}(Ki)?".prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                Just(Value::Null),
            ],
            field in prop_oneof![Just("size"), Just("sizeBytes"), Just("sizeKib")],
        ) {
            let object = foo(from, "f", json!({ field: size }));
            let reply = webhook().answer(&review(to, vec![object]));
            prop_assert_eq!(reply.status, StatusCode::OK);
        }
    }
}
