//! PodCount's webhooks: a defaulter (`spec.count` defaults to 1), a validator (a negative count
//! is denied with a reason), and a `v2` of the API served through a conversion webhook.
//!
//! `v1` is the hub (and the storage version, what the controller reads); `v2` renames
//! `spec.count` to `spec.minPods`, the same number: the PodCount is Ready once at least
//! `minPods` Pods match. Paths are controller-runtime's: `/mutate-examples-ferrokube-dev-v1-podcount`,
//! `/validate-examples-ferrokube-dev-v1-podcount` and `/convert`.

use ferrokube_runtime::k8s_openapi::ByteString;
use ferrokube_runtime::k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use ferrokube_runtime::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use ferrokube_runtime::kube::core::crd::merge_crds;
use ferrokube_runtime::kube::{CustomResourceExt, Resource};
use ferrokube_runtime::webhook::admission::{
    Defaulter, Denied, Validator, Warnings, WebhookBuilder, WebhookPaths, mutate_path,
    validate_path,
};
use ferrokube_runtime::webhook::conversion::{
    BoxError, CONVERT_PATH, ConversionWebhook, Convertible, Hub,
};
use ferrokube_runtime::webhook::server::{self, WebhookServer};

use super::{DEFAULT_COUNT, PodCount};

/// The `v2` PodCount: `spec.count` is `spec.minPods`.
pub mod v2 {
    use ferrokube_runtime::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use ferrokube_runtime::kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    pub use super::super::PodCountStatus;

    /// How many Pods matching `selector` the PodCount's namespace should have at least.
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    #[kube(
        group = "examples.ferrokube.dev",
        version = "v2",
        kind = "PodCount",
        namespaced,
        status = "PodCountStatus",
        shortname = "pc",
        doc = "Counts the Pods of its namespace that match a label selector.",
        printcolumn = r#"{"name": "Minimum", "type": "integer", "jsonPath": ".spec.minPods"}"#,
        printcolumn = r#"{"name": "Matching", "type": "integer", "jsonPath": ".status.matching"}"#,
        printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(
            kube_core = "::ferrokube_runtime::kube::core",
            k8s_openapi = "::ferrokube_runtime::k8s_openapi"
        )
    )]
    pub struct PodCountSpec {
        /// The Pods to count (an empty selector counts every Pod of the namespace).
        #[schemars(schema_with = "super::super::label_selector_schema")]
        pub selector: LabelSelector,
        /// How many matching Pods make the PodCount Ready (defaulted to 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_pods: Option<i32>,
    }
}

// === conversion ===

impl Hub for PodCount {}

impl Convertible for v2::PodCount {
    type Hub = PodCount;

    fn convert_to(&self) -> Result<PodCount, BoxError> {
        let spec = super::PodCountSpec {
            selector: self.spec.selector.clone(),
            count: self.spec.min_pods,
        };
        Ok(PodCount {
            metadata: self.metadata.clone(),
            spec,
            status: self.status.clone(),
        })
    }

    fn convert_from(hub: &PodCount) -> Result<Self, BoxError> {
        let spec = v2::PodCountSpec {
            selector: hub.spec.selector.clone(),
            min_pods: hub.spec.count,
        };
        Ok(v2::PodCount {
            metadata: hub.metadata.clone(),
            spec,
            status: hub.status.clone(),
        })
    }
}

// === admission ===

/// Defaults and validates PodCounts.
pub struct PodCountWebhook;

impl Defaulter<PodCount> for PodCountWebhook {
    async fn apply_defaults(&self, podcount: &mut PodCount) -> Result<(), Denied> {
        podcount.spec.count.get_or_insert(DEFAULT_COUNT);
        Ok(())
    }
}

impl Validator<PodCount> for PodCountWebhook {
    async fn validate_create(&self, podcount: &PodCount) -> Result<Warnings, Denied> {
        validate(podcount)
    }

    async fn validate_update(&self, _old: &PodCount, new: &PodCount) -> Result<Warnings, Denied> {
        validate(new)
    }
}

/// A negative count is denied; an empty selector is allowed with a warning.
fn validate(podcount: &PodCount) -> Result<Warnings, Denied> {
    if let Some(count) = podcount.spec.count.filter(|c| *c < 0) {
        return Err(Denied::invalid(format!(
            "spec.count must not be negative (got {count}): it is how many matching Pods make the PodCount Ready"
        )));
    }
    let selector = &podcount.spec.selector;
    let empty = selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    Ok(if empty {
        vec!["spec.selector is empty: every Pod of the namespace counts".to_owned()]
    } else {
        Warnings::new()
    })
}

/// Registers the defaulter, the validator and the conversion webhook.
pub fn register(server: &WebhookServer) -> Result<WebhookPaths, server::Error> {
    let paths = WebhookBuilder::<PodCount>::new()
        .with_defaulter(PodCountWebhook)
        .with_validator(PodCountWebhook)
        .complete(server)?;
    ConversionWebhook::new()
        .spoke::<v2::PodCount>()
        .register(server)?;
    Ok(paths)
}

// === manifests ===

/// How the API server reaches the webhook server: a Service (in-cluster, kubebuilder's
/// layout), or a base URL (`https://host:port`, e.g. a kind cluster calling the host).
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The Service's namespace and name, when there is no URL.
    pub service: (String, String),
    /// A base URL instead of the Service.
    pub url: Option<String>,
    /// The CA (PEM) the serving certificate is signed by, if known (cert-manager's CA injector
    /// fills it in otherwise).
    pub ca_bundle: Option<Vec<u8>>,
}

impl Endpoint {
    fn client_config(&self, path: &str) -> WebhookClientConfig {
        let ca_bundle = self.ca_bundle.clone().map(ByteString);
        match &self.url {
            Some(base) => WebhookClientConfig {
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
            None => WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: self.service.0.clone(),
                    name: self.service.1.clone(),
                    path: Some(path.to_owned()),
                    port: None,
                }),
                ca_bundle,
                url: None,
            },
        }
    }
}

/// The CRD with both versions (`v1` stored) and the conversion webhook at [`CONVERT_PATH`].
pub fn crd(endpoint: &Endpoint) -> Result<apiextensions::CustomResourceDefinition, BoxError> {
    let mut crd = merge_crds(vec![PodCount::crd(), v2::PodCount::crd()], "v1")?;
    let client_config = endpoint.client_config(CONVERT_PATH);
    crd.spec.conversion = Some(apiextensions::CustomResourceConversion {
        strategy: "Webhook".to_owned(),
        webhook: Some(apiextensions::WebhookConversion {
            client_config: Some(apiextensions::WebhookClientConfig {
                ca_bundle: client_config.ca_bundle,
                service: client_config
                    .service
                    .map(|s| apiextensions::ServiceReference {
                        namespace: s.namespace,
                        name: s.name,
                        path: s.path,
                        port: s.port,
                    }),
                url: client_config.url,
            }),
            conversion_review_versions: vec!["v1".to_owned()],
        }),
    });
    Ok(crd)
}

/// The rule of both admission webhooks: PodCount v1 creates and updates.
fn rules() -> Option<Vec<RuleWithOperations>> {
    Some(vec![RuleWithOperations {
        api_groups: Some(vec![PodCount::group(&()).into_owned()]),
        api_versions: Some(vec![PodCount::version(&()).into_owned()]),
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        resources: Some(vec![PodCount::plural(&()).into_owned()]),
        scope: Some("Namespaced".to_owned()),
    }])
}

/// The MutatingWebhookConfiguration and ValidatingWebhookConfiguration (`podcount webhooks`),
/// as kubebuilder's `config/webhook/manifests.yaml`.
pub fn configurations(
    endpoint: &Endpoint,
) -> (MutatingWebhookConfiguration, ValidatingWebhookConfiguration) {
    let mut mutating = MutatingWebhookConfiguration {
        webhooks: Some(vec![MutatingWebhook {
            name: "mpodcount.examples.ferrokube.dev".to_owned(),
            client_config: endpoint.client_config(&mutate_path::<PodCount>(&())),
            rules: rules(),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            ..MutatingWebhook::default()
        }]),
        ..MutatingWebhookConfiguration::default()
    };
    mutating.metadata.name = Some("podcount-mutating".to_owned());
    let mut validating = ValidatingWebhookConfiguration {
        webhooks: Some(vec![ValidatingWebhook {
            name: "vpodcount.examples.ferrokube.dev".to_owned(),
            client_config: endpoint.client_config(&validate_path::<PodCount>(&())),
            rules: rules(),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            ..ValidatingWebhook::default()
        }]),
        ..ValidatingWebhookConfiguration::default()
    };
    validating.metadata.name = Some("podcount-validating".to_owned());
    (mutating, validating)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::PodCountSpec;

    fn podcount(count: Option<i32>, labels: &[(&str, &str)]) -> PodCount {
        let mut selector = super::super::LabelSelector::default();
        if !labels.is_empty() {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            selector.match_labels = Some(labels);
        }
        PodCount::new("web", PodCountSpec { selector, count })
    }

    #[tokio::test]
    async fn count_defaults_to_one_and_a_given_count_stays() {
        let mut unset = podcount(None, &[("app", "web")]);
        PodCountWebhook.apply_defaults(&mut unset).await.unwrap();
        assert_eq!(unset.spec.count, Some(1));
        let mut zero = podcount(Some(0), &[("app", "web")]);
        PodCountWebhook.apply_defaults(&mut zero).await.unwrap();
        assert_eq!(zero.spec.count, Some(0));
    }

    #[test]
    fn a_negative_count_is_denied_with_a_reason() {
        let denied = validate(&podcount(Some(-3), &[("app", "web")])).unwrap_err();
        assert!(
            denied
                .message()
                .contains("spec.count must not be negative (got -3)"),
            "{denied}"
        );
        assert_eq!(denied.code().as_u16(), 422);
        assert_eq!(
            validate(&podcount(Some(2), &[("app", "web")])).unwrap(),
            Warnings::new()
        );
        let warnings = validate(&podcount(Some(2), &[])).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn v2_round_trips_through_the_hub() {
        let mut hub = podcount(Some(4), &[("app", "web")]);
        hub.metadata.labels = Some(BTreeMap::from([("team".to_owned(), "a".to_owned())]));
        let spoke = v2::PodCount::convert_from(&hub).unwrap();
        assert_eq!(spoke.spec.min_pods, Some(4));
        assert_eq!(spoke.metadata, hub.metadata);
        let back = spoke.convert_to().unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&hub).unwrap()
        );
        let json = serde_json::to_value(&spoke).unwrap();
        assert_eq!(json["apiVersion"], "examples.ferrokube.dev/v2");
        assert_eq!(json["spec"]["minPods"], 4);
    }

    #[test]
    fn the_crd_serves_both_versions_and_stores_v1() {
        let endpoint = Endpoint {
            service: ("podcount-system".to_owned(), "podcount-webhook".to_owned()),
            url: None,
            ca_bundle: None,
        };
        let crd = crd(&endpoint).unwrap();
        let versions: Vec<_> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(versions, [("v1", true, true), ("v2", true, false)]);
        let conversion = serde_json::to_value(&crd.spec.conversion).unwrap();
        assert_eq!(conversion["strategy"], "Webhook");
        assert_eq!(
            conversion["webhook"]["clientConfig"]["service"]["path"],
            "/convert"
        );

        let endpoint = Endpoint {
            url: Some("https://172.18.0.1:9443/".to_owned()),
            ca_bundle: Some(b"CA".to_vec()),
            ..endpoint
        };
        let (mutating, validating) = configurations(&endpoint);
        let url = |c: &WebhookClientConfig| c.url.clone().unwrap_or_default();
        let mutating = &mutating.webhooks.unwrap()[0];
        assert_eq!(
            url(&mutating.client_config),
            "https://172.18.0.1:9443/mutate-examples-ferrokube-dev-v1-podcount"
        );
        assert_eq!(
            mutating.client_config.ca_bundle,
            Some(ByteString(b"CA".to_vec()))
        );
        let validating = &validating.webhooks.unwrap()[0];
        assert_eq!(
            url(&validating.client_config),
            "https://172.18.0.1:9443/validate-examples-ferrokube-dev-v1-podcount"
        );
    }
}
