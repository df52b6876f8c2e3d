//! The `Gadget` custom resource the controller-runtime tests reconcile: `spec.size`,
//! `spec.mode` (how the test reconciler behaves), a status subresource.

use std::time::Duration;

use anyhow::Context as _;
use ferrokube_runtime::client::{Client, WriteOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tests::eventually;

/// The group of the test CRD (cluster-wide; installed once, shared by the tests).
pub const GROUP: &str = "runtime.e2e.ferrokube.dev";

/// What a test controller should make of a Gadget.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "runtime.e2e.ferrokube.dev",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    schema = "disabled"
)]
pub struct GadgetSpec {
    /// Any number; status mirrors it.
    pub size: i64,
    /// How the test reconciler behaves for this object (`""`: succeed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// What the test controller writes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GadgetStatus {
    /// The generation last reconciled.
    #[serde(default)]
    pub observed_generation: i64,
    /// The size last reconciled.
    #[serde(default)]
    pub size: i64,
    /// Free text a test may write.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A Gadget named `name` of `size` in `namespace`.
pub fn gadget(namespace: &str, name: &str, size: i64, mode: &str) -> Gadget {
    let mut g = Gadget::new(
        name,
        GadgetSpec {
            size,
            mode: mode.to_owned(),
        },
    );
    g.metadata.namespace = Some(namespace.to_owned());
    g
}

/// Installs the Gadget CRD if needed and waits until it is established.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "listKind": "GadgetList", "plural": "gadgets", "singular": "gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    }))?;
    let crds = client.all::<CustomResourceDefinition>();
    match crds.create(&crd, &WriteOptions::default()).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e).context("creating the Gadget CRD"),
    }
    let name = format!("gadgets.{GROUP}");
    eventually(
        "the Gadget CRD to be established",
        Duration::from_secs(60),
        || {
            let (crds, name) = (&crds, &name);
            async move {
                let crd = crds.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await?;
    // Discovery may lag the condition a little: wait until a list works.
    let gadgets = client.all::<Gadget>();
    eventually("Gadgets to be served", Duration::from_secs(30), || {
        let gadgets = &gadgets;
        async move {
            gadgets
                .list(&ferrokube_runtime::client::ListOptions::default().limit(1))
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await
}
