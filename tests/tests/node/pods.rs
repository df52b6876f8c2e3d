//! Pods really run on the node: scheduled, Running with an IP, and an informer sees them go
//! from Pending to Running.

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use ferrokube_informer::{EventHandlerFuncs, InformerConfig, SharedIndexInformer};
use ferrokube_runtime::client::{Client, ListOptions, WriteOptions};
use ferrokube_runtime::envtest::BUSYBOX_IMAGE;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use serde_json::json;
use tests::{Context, Test, eventually};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{busybox_pod, pods, run_pod};

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("pods::run_on_the_node", run_on_the_node),
        Test::new(
            "pods::informer_sees_pending_then_running",
            informer_sees_pending_then_running,
        ),
        Test::new("pods::deployment_pods_run", deployment_pods_run),
    ]
}

async fn run_on_the_node(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    let pod = run_pod(&pods, &busybox_pod("sleeper", "sleep 3600", json!({}))).await?;
    let status = pod.status.unwrap_or_default();
    ensure!(
        status.pod_ip.is_some(),
        "a running pod has an IP: {status:?}"
    );
    let node = pod.spec.and_then(|s| s.node_name);
    let expected = ctx.env.read().await.node_name().map(str::to_owned);
    if expected.is_some() {
        ensure!(node == expected, "scheduled to {node:?}, not {expected:?}");
    }
    Ok(())
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn informer_sees_pending_then_running(ctx: Context) -> anyhow::Result<()> {
    let pods = pods(&ctx);
    let informer = SharedIndexInformer::new(pods.clone(), InformerConfig::default());
    let phases: Arc<Mutex<Vec<String>>> = Arc::default();
    let (on_add, on_update) = (Arc::clone(&phases), Arc::clone(&phases));
    let _registration = informer.add_event_handler(
        EventHandlerFuncs::default()
            .on_add(move |pod: Arc<Pod>, _| on_add.lock().push(phase(&pod)))
            .on_update(move |_, pod: Arc<Pod>| on_update.lock().push(phase(&pod))),
    );
    let cancel = CancellationToken::new();
    let (i, c) = (informer.clone(), cancel.clone());
    let run = tokio::spawn(async move { i.run(c).await });
    let _stop = cancel.clone().drop_guard();
    ensure!(
        informer.wait_for_cache_sync(&cancel).await,
        "informer did not sync"
    );

    pods.create(
        &busybox_pod("watched", "sleep 3600", json!({})),
        &WriteOptions::default(),
    )
    .await?;
    eventually(
        "the informer to see Running",
        Duration::from_secs(60),
        || async { phases.lock().iter().any(|p| p == "Running").then_some(()) },
    )
    .await?;
    let seen = phases.lock().clone();
    let first_running = seen.iter().position(|p| p == "Running");
    let pending_before = seen.iter().position(|p| p == "Pending" || p.is_empty());
    ensure!(
        matches!((pending_before, first_running), (Some(p), Some(r)) if p < r),
        "phases seen: {seen:?}"
    );
    cancel.cancel();
    run.abort();
    Ok(())
}

/// A workload's pods are real: the controller-manager creates them, the scheduler places
/// them, the kubelet runs them, and the Deployment reports them available.
async fn deployment_pods_run(ctx: Context) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let deployments = client.namespaced::<Deployment>(&ctx.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "sleepers"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {
                "metadata": {"labels": {"app": "sleepers"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main",
                        "image": BUSYBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }],
                },
            },
        },
    }))?;
    deployments
        .create(&deployment, &WriteOptions::default())
        .await?;
    eventually("2 available replicas", Duration::from_secs(60), || async {
        let d = deployments.get("sleepers").await.ok()?;
        (d.status?.available_replicas? == 2).then_some(())
    })
    .await?;
    let pods = pods(&ctx)
        .list(&ListOptions::default().labels("app=sleepers"))
        .await?;
    let running = pods.items.iter().filter(|p| phase(p) == "Running").count();
    ensure!(
        running == 2,
        "{running} of {} pods Running",
        pods.items.len()
    );
    Ok(())
}
