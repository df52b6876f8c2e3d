//! Webhook request bodies: any bytes posted to a mutating (`DefaultingWebhook`), a validating
//! (`ValidatingWebhook`) and a conversion (`ConversionWebhook`) handler. None panics; each
//! answers `400` with `{"error": "<non-empty>"}` or `200` with a review whose response carries
//! the request's uid (and, for a successful conversion, one object per object sent).
#![no_main]

use std::future::Future;
use std::sync::OnceLock;

use bytes::Bytes;
use ferrokube_fuzz::paused_runtime;
use ferrokube_runtime::webhook::admission::{
    Defaulter, DefaultingWebhook, Denied, ValidatingWebhook, Validator, Warnings,
};
use ferrokube_runtime::webhook::conversion::{BoxError, ConversionWebhook, Convertible, Hub};
use ferrokube_runtime::webhook::{Handler, Reply};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResource;
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn denies(cm: &ConfigMap) -> bool {
    cm.data.as_ref().is_some_and(|d| d.contains_key("deny"))
}

struct Label;

impl Defaulter<ConfigMap> for Label {
    fn apply_defaults(
        &self,
        obj: &mut ConfigMap,
    ) -> impl Future<Output = Result<(), Denied>> + Send {
        let result = if denies(obj) {
            Err(Denied::new("the data has a deny key"))
        } else {
            obj.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("defaulted".into(), "yes".into());
            Ok(())
        };
        std::future::ready(result)
    }
}

struct NoDeny;

impl Validator<ConfigMap> for NoDeny {
    fn validate_create(
        &self,
        obj: &ConfigMap,
    ) -> impl Future<Output = Result<Warnings, Denied>> + Send {
        std::future::ready(if denies(obj) {
            Err(Denied::new("the data has a deny key"))
        } else {
            Ok(vec!["checked".to_owned()])
        })
    }

    fn validate_update(
        &self,
        _old: &ConfigMap,
        new: &ConfigMap,
    ) -> impl Future<Output = Result<Warnings, Denied>> + Send {
        self.validate_create(new)
    }
}

mod v1 {
    use super::*;
    /// `size` like `"4Ki"`.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize)]
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
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize)]
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

impl Hub for v2::Foo {}

impl Convertible for v1::Foo {
    type Hub = v2::Foo;

    fn convert_to(&self) -> Result<v2::Foo, BoxError> {
        let kib: u64 = self.spec.size.trim_end_matches("Ki").parse()?;
        let size_bytes = kib.checked_mul(1024).ok_or("too large")?;
        Ok(v2::Foo::new("", v2::FooSpec { size_bytes }))
    }

    fn convert_from(hub: &v2::Foo) -> Result<Self, BoxError> {
        let size = format!("{}Ki", hub.spec.size_bytes / 1024);
        Ok(v1::Foo::new("", v1::FooSpec { size }))
    }
}

fn handlers() -> &'static [Box<dyn Handler>; 3] {
    static HANDLERS: OnceLock<[Box<dyn Handler>; 3]> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        [
            Box::new(DefaultingWebhook::<ConfigMap, _>::new(Label)),
            Box::new(ValidatingWebhook::<ConfigMap, _>::new(NoDeny)),
            Box::new(ConversionWebhook::new().spoke::<v1::Foo>()),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let which = usize::from(mode % 3);
    let reply: Reply =
        paused_runtime().block_on(handlers()[which].handle(Bytes::copy_from_slice(body)));
    let answer: Value = serde_json::from_slice(&reply.body).expect("every reply is JSON");
    match reply.status.as_u16() {
        400 => {
            let message = answer["error"].as_str().unwrap_or_default();
            assert!(
                !message.trim().is_empty(),
                "a 400 without a message: {answer}"
            );
        }
        200 => {
            // The handlers skip members they do not read without checking their strings
            // (serde's IgnoredAny): read the request leniently too.
            let Some(request) = serde_json::from_slice::<Value>(body)
                .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(body)))
                .ok()
            else {
                assert!(answer["response"]["uid"].is_string(), "{answer}");
                return;
            };
            let uid = &request["request"]["uid"];
            assert_eq!(&answer["response"]["uid"], uid, "{answer}");
            if which == 2 && answer["response"]["result"]["status"] == "Success" {
                let sent = request["request"]["objects"].as_array().map_or(0, Vec::len);
                let converted = answer["response"]["convertedObjects"]
                    .as_array()
                    .map_or(0, Vec::len);
                assert_eq!(sent, converted, "{answer}");
            }
        }
        other => panic!("answered {other}: {answer}"),
    }
});
