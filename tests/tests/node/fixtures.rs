//! Pods on the node tier: busybox pods running a shell script, and waiting for them.

use std::time::Duration;

use ferrokube_runtime::client::{Api, Client, WriteOptions};
use ferrokube_runtime::envtest::BUSYBOX_IMAGE;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tests::Context;

/// How long a pod may take to reach Running on the node (about a second, usually).
pub const POD_START: Duration = Duration::from_secs(60);

/// The ferrokube client and the test namespace's pods.
pub fn pods(ctx: &Context) -> Api<Pod> {
    Client::from_kube(ctx.client.clone()).namespaced::<Pod>(&ctx.namespace)
}

/// A busybox pod running `script` with `sh -c` in container `main`, never restarted, with
/// a short grace period. `extra` is merged into the container (e.g. `{"stdin": true}`).
pub fn busybox_pod(name: &str, script: &str, extra: serde_json::Value) -> Pod {
    let mut container = json!({
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    });
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": "Never",
            "containers": [container],
        },
    }))
    .expect("a valid pod")
}

/// A pod serving `/www/index.html` (`hello from NAME`) with busybox httpd on port 8080.
pub fn http_pod(name: &str) -> Pod {
    let script = format!(
        "mkdir -p /www && echo 'hello from {name}' > /www/index.html && exec httpd -f -p 8080 -h /www"
    );
    busybox_pod(
        name,
        &script,
        json!({"ports": [{"name": "http", "containerPort": 8080}]}),
    )
}

/// Creates `pod` and waits until it is Running.
pub async fn run_pod(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<Pod> {
    pods.create(pod, &WriteOptions::default()).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    wait_for_phase(pods, &name, "Running").await
}

/// Waits until the pod's phase is `phase`, failing early in another final phase.
pub async fn wait_for_phase(pods: &Api<Pod>, name: &str, phase: &str) -> anyhow::Result<Pod> {
    let deadline = tokio::time::Instant::now() + POD_START;
    loop {
        let pod = pods.get(name).await?;
        let status = pod.status.clone().unwrap_or_default();
        let now = status.phase.clone().unwrap_or_default();
        if now == phase {
            return Ok(pod);
        }
        if now != "Pending" && now != "Running" {
            anyhow::bail!("pod {name} is {now}, not {phase}: {status:?}");
        }
        if tokio::time::Instant::now() > deadline {
            // Why it waits: an unschedulable pod says so in a condition (e.g. the node's
            // disk-pressure taint when the host's disk is nearly full), a started one in its
            // containers' states.
            let conditions: Vec<String> = (status.conditions.iter().flatten())
                .filter(|c| c.status != "True")
                .map(|c| {
                    let why = c.message.as_deref().or(c.reason.as_deref()).unwrap_or("");
                    format!("{} is {}: {why}", c.type_, c.status)
                })
                .collect();
            anyhow::bail!(
                "pod {name} not {phase} after {POD_START:?}; last seen {now}; conditions: {}; containers: {:?}",
                conditions.join("; "),
                status.container_statuses
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
