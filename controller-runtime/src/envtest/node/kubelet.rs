//! The kubelet: its `KubeletConfiguration` (cgroupfs driver under a cgroup root of its own,
//! no negative OOM scores, every folder under the environment's), its kubeconfig as
//! `system:node:<name>`, start-up and the `/healthz` wait.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::error::{Error, Result, io};
use super::super::process::Process;
use super::{NodeLayout, NodePlan};

/// The `KubeletConfiguration` for the node. Field names matter: the kubelet silently ignores
/// unknown ones (`podLogsDir`, not `podLogsDirectory`).
pub(crate) fn config(plan: &NodePlan, layout: &NodeLayout) -> serde_json::Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": plan.ip.to_string(),
        "port": plan.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": plan.healthz_port,
        "tlsCertFile": layout.kubelet_serving_cert,
        "tlsPrivateKeyFile": layout.kubelet_serving_key,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": layout.ca},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": format!("unix://{}", layout.containerd_socket.display()),
        // No systemd here, and cgroup v1 (hybrid): cgroupfs, under a root of the node's own.
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": format!("/{}", plan.cgroup),
        "cgroupsPerQOS": true,
        "enforceNodeAllocatable": ["pods"],
        // Root may lack CAP_SYS_RESOURCE: a negative OOM score adjustment is refused.
        "oomScoreAdj": 0,
        "failSwapOn": false,
        // The kubelet then sets a few kernel settings; teardown restores them.
        "protectKernelDefaults": false,
        "resolvConf": layout.resolv_conf,
        "clusterDomain": "cluster.local",
        // Keep the imported images, whatever the disk usage; evict only when nearly full.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "podLogsDir": layout.pod_logs,
        "serializeImagePulls": false,
        // No KUBE-FIREWALL or canary chains in the host's iptables.
        "makeIPTablesUtilChains": false,
        "registerNode": true,
        "shutdownGracePeriod": "0s",
    })
}

/// The kubelet's kubeconfig: the API server, the CA, and the node's client certificate.
pub(crate) fn kubeconfig(api_url: &str, layout: &NodeLayout, node: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {
            "server": api_url,
            "certificate-authority": layout.ca,
        }}],
        "users": [{"name": format!("system:node:{node}"), "user": {
            "client-certificate": layout.kubelet_client_cert,
            "client-key": layout.kubelet_client_key,
        }}],
        "contexts": [{"name": "envtest", "context": {
            "cluster": "envtest", "user": format!("system:node:{node}"),
        }}],
        "current-context": "envtest",
    })
}

/// Writes the kubelet's files and starts it.
pub(crate) fn spawn(
    plan: &NodePlan,
    layout: &NodeLayout,
    api_url: &str,
    verbosity: u8,
) -> Result<Process> {
    let write = |path: &std::path::Path, contents: String| {
        std::fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
    };
    write(&layout.kubelet_config, config(plan, layout).to_string())?;
    write(
        &layout.kubelet_kubeconfig,
        kubeconfig(api_url, layout, &plan.name).to_string(),
    )?;
    write(
        &layout.resolv_conf,
        "# ferrokube envtest node: pods resolve no names\n".to_owned(),
    )?;
    let args = vec![
        format!("--config={}", layout.kubelet_config.display()),
        format!("--kubeconfig={}", layout.kubelet_kubeconfig.display()),
        format!("--root-dir={}", layout.kubelet_root.display()),
        format!("--cert-dir={}", layout.kubelet_root.join("pki").display()),
        // A flag, not a configuration field; the default is under /usr/libexec.
        format!(
            "--volume-plugin-dir={}",
            layout.kubelet_root.join("volume-plugins").display()
        ),
        format!("--hostname-override={}", plan.name),
        format!("--node-ip={}", plan.ip),
        format!("--v={verbosity}"),
    ];
    Process::spawn_program(
        &plan.assets.join("kubelet"),
        "kubelet",
        args,
        layout.dir.join("kubelet.log"),
    )
}

/// Waits until the kubelet's `/healthz` answers `ok`.
pub(crate) async fn wait_healthy(
    process: &mut Process,
    port: u16,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(process.exited_error(status));
        }
        let last_error = match healthz(port).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            return Err(Error::NotReady {
                binary: process.binary,
                waited: start.elapsed(),
                last_error,
                flags: process.flags(),
                log_tail: process.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `GET /healthz` on the loopback healthz port (plain HTTP/1.0).
async fn healthz(port: u16) -> Result<(), String> {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .map_err(|_| "GET /healthz timed out".to_owned())?
        .map_err(|e| format!("GET /healthz on 127.0.0.1:{port}: {e}"))?;
    let ok = response.starts_with("HTTP/1.") && response.contains(" 200 ");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if ok && body == "ok" {
        Ok(())
    } else {
        Err(format!(
            "/healthz said {:?}",
            response.lines().next().unwrap_or("")
        ))
    }
}
