//! The `Widget` custom resource of the chaos tests: `spec.value`, and `status.observed` (the
//! value a controller last reconciled), with a status subresource.

use std::time::Duration;

use anyhow::Context as _;
use ferrokube_runtime::client::{Client, ListOptions, WriteOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tests::eventually;

/// The group of the chaos CRD (cluster-wide; installed once per control plane).
pub const GROUP: &str = "chaos.ferrokube.dev";

/// A number the writer changes.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "chaos.ferrokube.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    schema = "disabled"
)]
pub struct WidgetSpec {
    /// Any number.
    pub value: i64,
}

/// What the chaos controller writes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct WidgetStatus {
    /// The `spec.value` last reconciled.
    #[serde(default)]
    pub observed: i64,
}

/// A Widget `name` of `value` in `namespace`.
pub fn widget(namespace: &str, name: &str, value: i64) -> Widget {
    let mut w = Widget::new(name, WidgetSpec { value });
    w.metadata.namespace = Some(namespace.to_owned());
    w
}

/// Installs the Widget CRD if needed and waits until Widgets are served.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
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
        Err(e) => return Err(e).context("creating the Widget CRD"),
    }
    // Established first, then discovery may lag a little: wait until a list works.
    let widgets = client.all::<Widget>();
    eventually("Widgets to be served", Duration::from_secs(60), || {
        let widgets = &widgets;
        async move {
            widgets
                .list(&ListOptions::default().limit(1))
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await
}
