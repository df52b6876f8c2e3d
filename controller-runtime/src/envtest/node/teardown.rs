//! Tearing the node down so that nothing is left on the host.
//!
//! 1. The scheduler stops (the controller-manager was stopped by the control plane already),
//!    so nothing new is scheduled or created.
//! 2. Every pod is deleted through the API server with a 1 s grace period, and the kubelet
//!    stops its containers and sandboxes through CRI: CNI `DEL` frees the address and the veth,
//!    containerd removes the network namespace. Pods the kubelet confirms are gone from the API.
//! 3. The kubelet stops; what still runs in the node's cgroup tree is killed, then the
//!    containerd shims (they name the node's socket) and containerd.
//! 4. Whatever is still mounted under the environment's folder is unmounted (lazily), the
//!    bridge and any veth on it are deleted, the cgroup tree removed, kernel settings restored,
//!    and what the kubelet, containerd's shims and CNI keep outside the folder removed: the
//!    container log links, cached CNI results and shim sockets of this node's containers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};

use super::{Node, host, network};

/// How long the pods get to go away through the kubelet before they are killed.
const POD_DELETION_PATIENCE: Duration = Duration::from_secs(30);
/// How long killed processes get to leave their cgroups.
const CGROUP_PATIENCE: Duration = Duration::from_secs(10);

pub(super) fn run(node: &mut Node) {
    if let Some(scheduler) = &mut node.scheduler {
        scheduler.stop();
    }
    if let Some(kubelet) = &mut node.kubelet
        && kubelet.exited().is_none()
        && let Some(pid) = kubelet.id()
    {
        delete_pods(node.admin.clone(), pid);
    }
    if let Some(kubelet) = &mut node.kubelet {
        kubelet.stop();
    }
    if let Some(cgroups) = &node.cgroups {
        host::kill(&cgroups.processes());
    }
    let socket = node.layout.containerd_socket.display().to_string();
    host::kill(&host::processes_mentioning(&socket));
    if let Some(containerd) = &mut node.containerd {
        containerd.stop();
    }
    // Anything else still naming the node's folder (a shim started with another argument form).
    host::kill(&host::processes_mentioning(
        &node.layout.dir.display().to_string(),
    ));
    let left = host::unmount_all(&node.layout.dir);
    for mount in &left {
        tracing::warn!(mount = %mount.display(), "envtest node: still mounted after teardown");
    }
    network::remove_bridge(&node.plan.bridge);
    if let Some(cgroups) = &node.cgroups {
        cgroups.remove(CGROUP_PATIENCE);
    }
    if let Some(kernel) = &node.kernel {
        kernel.restore();
    }
    if let Some(outside) = &node.outside {
        // The containers' IDs, read before the folder goes: they name the files left outside.
        let ids = super::containerd::container_ids(&node.layout);
        let shim_sockets = super::containerd::shim_socket_names(&node.layout, &ids);
        outside.remove(&node.layout.dir, &node.plan.network, &ids, &shim_sockets);
    }
    tracing::debug!(node = %node.plan.name, "envtest node torn down");
}

/// Deletes every pod and waits (at most [`POD_DELETION_PATIENCE`], and only while the
/// kubelet `kubelet` runs) until the API no longer lists any. Runs on a thread of its own with
/// its own runtime: this is called from `Drop`, maybe inside another runtime.
fn delete_pods(admin: kube::Config, kubelet: u32) {
    let work = move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "envtest node: no runtime to delete pods with");
                return;
            }
        };
        runtime.block_on(async {
            let work = delete_pods_async(admin, kubelet);
            match tokio::time::timeout(POD_DELETION_PATIENCE, work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "envtest node: deleting pods failed"),
                Err(_) => tracing::warn!(
                    "envtest node: pods were still listed after {POD_DELETION_PATIENCE:?}; killing them"
                ),
            }
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("envtest-node-teardown".to_owned())
        .spawn(work)
        .map(|t| t.join())
    {
        tracing::warn!(error = %e, "envtest node: could not start the pod deletion thread");
    }
}

async fn delete_pods_async(admin: kube::Config, kubelet: u32) -> Result<(), kube::Error> {
    let client = kube::Client::try_from(admin)?;
    let all = kube::Api::<Pod>::all(client.clone());
    let grace = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::default()
    };
    loop {
        let pods = all.list(&ListParams::default()).await?;
        if pods.items.is_empty() {
            return Ok(());
        }
        if !host::is_running(kubelet) {
            tracing::warn!(
                "envtest node: the kubelet stopped before its pods were gone; killing them"
            );
            return Ok(());
        }
        for pod in pods.items {
            let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let api = kube::Api::<Pod>::namespaced(client.clone(), &ns);
            if let Err(e) = api.delete(&name, &grace).await {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "envtest node: deleting a pod failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
