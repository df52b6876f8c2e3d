//! The API server's proxy: `pods/proxy` to a container's HTTP server, `services/proxy` to a
//! service's endpoint, `nodes/proxy` to the kubelet.

use std::time::Duration;

use anyhow::ensure;
use ferrokube_runtime::client::{Client, WriteOptions};
use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::json;
use tests::{Context, Test, eventually};

use crate::fixtures::{http_pod, pods, run_pod};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("proxy::pod", pod_proxy),
        Test::new("proxy::service", service_proxy),
        Test::new("proxy::node", node_proxy),
    ]
}

async fn pod_proxy(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &http_pod("web")).await?;
    let body = eventually(
        "an answer through pods/proxy",
        Duration::from_secs(30),
        || async {
            pods.proxy_get("", "web", "8080", "/index.html")
                .bytes()
                .await
                .ok()
        },
    )
    .await?;
    ensure!(body == "hello from web\n".as_bytes(), "{body:?}");
    // The container's 404 comes back as an API error (pods/proxy takes port numbers only;
    // services/proxy also resolves port names).
    let missing = pods
        .proxy_get("", "web", "8080", "/nothing-here")
        .bytes()
        .await;
    let code = missing
        .as_ref()
        .err()
        .and_then(|e| e.status())
        .map(|s| s.code);
    ensure!(code == Some(404), "a missing page: {missing:?}");
    Ok(())
}

async fn service_proxy(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    run_pod(&pods, &http_pod("web")).await?;
    let services = Client::from_kube(ctx.client.clone()).namespaced::<Service>(&ctx.namespace);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }))?;
    services.create(&service, &WriteOptions::default()).await?;
    // The API server picks a ready endpoint and dials the pod itself (no kube-proxy here).
    let body = eventually(
        "an answer through services/proxy",
        Duration::from_secs(60),
        || async {
            services
                .proxy_get("", "web", "http", "/index.html")
                .bytes()
                .await
                .ok()
        },
    )
    .await?;
    ensure!(body == "hello from web\n".as_bytes(), "{body:?}");
    Ok(())
}

async fn node_proxy(ctx: Context) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let nodes = client.all::<Node>();
    let node = nodes
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .next();
    let name = node.and_then(|n| n.metadata.name);
    let Some(name) = name else {
        anyhow::bail!("the cluster has no node");
    };
    // The kubelet's port comes from the Node's status; the kubelet checks the API server's
    // client certificate and asks the API server whether it may.
    let body = nodes.proxy_get("", &name, "", "/healthz").bytes().await?;
    ensure!(body == "ok".as_bytes(), "kubelet /healthz: {body:?}");
    let pods = nodes.proxy_get("", &name, "", "/pods").bytes().await?;
    let list: serde_json::Value = serde_json::from_slice(&pods)?;
    ensure!(list["kind"] == "PodList", "kubelet /pods: {list}");
    Ok(())
}
