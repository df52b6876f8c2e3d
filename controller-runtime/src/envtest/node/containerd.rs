//! containerd for the node tier: a configuration with its own root, state folder and socket
//! under the environment's folder (a test run never touches the host's containerd), started,
//! waited for, and loaded with the node's images through `ctr`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::super::error::{Error, Result, io};
use super::super::process::Process;
use super::image::PAUSE_IMAGE;
use super::{NodeLayout, Tools};

/// The containerd namespace the CRI plugin uses.
pub(crate) const CRI_NAMESPACE: &str = "k8s.io";

/// Plugins a test node has no use for (and that would probe the host at start-up). The v1
/// runtime stays: containerd 1.6's task service needs it loaded.
const DISABLED_PLUGINS: [&str; 6] = [
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// containerd's `config.toml` (version 2) for the node.
pub(crate) fn config(layout: &NodeLayout, tools: &Tools) -> String {
    let quote = |p: &Path| toml_string(&p.display().to_string());
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_string(p)).collect();
    format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = [{disabled}]
oom_score = 0

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {pause}
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = {runc}
        Root = {runc_root}
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
    max_conf_num = 1
"#,
        root = quote(&layout.containerd_root),
        state = quote(&layout.containerd_state),
        disabled = disabled.join(", "),
        socket = quote(&layout.containerd_socket),
        ttrpc = quote(&layout.containerd_socket.with_extension("sock.ttrpc")),
        opt = quote(&layout.containerd_root.join("opt")),
        pause = toml_string(PAUSE_IMAGE),
        runc = quote(&tools.runc),
        runc_root = quote(&layout.containerd_state.join("runc")),
        cni_bin = quote(&tools.cni_bin_dir),
        cni_conf = quote(&layout.cni_conf_dir),
    )
}

/// The IDs of the node's containers and sandboxes, from containerd's own folders: the CRI
/// plugin's per-container and per-sandbox folders and the v2 task bundles.
pub(crate) fn container_ids(layout: &NodeLayout) -> BTreeSet<String> {
    let cri = "io.containerd.grpc.v1.cri";
    let tasks = "io.containerd.runtime.v2.task";
    let folders = [
        layout.containerd_root.join(cri).join("containers"),
        layout.containerd_root.join(cri).join("sandboxes"),
        layout.containerd_state.join(cri).join("containers"),
        layout.containerd_state.join(cri).join("sandboxes"),
        layout.containerd_state.join(tasks).join(CRI_NAMESPACE),
    ];
    folders
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// The names of the shim sockets of `ids` in [`SHIM_SOCKETS`](super::host::SHIM_SOCKETS):
/// containerd 1.6 names them by the SHA-256 of `<containerd socket>/<namespace>/<id>`.
pub(crate) fn shim_socket_names(layout: &NodeLayout, ids: &BTreeSet<String>) -> BTreeSet<String> {
    let socket = layout.containerd_socket.display().to_string();
    ids.iter()
        .map(|id| {
            let path = format!("{socket}/{CRI_NAMESPACE}/{id}");
            let digest = ring::digest::digest(&ring::digest::SHA256, path.as_bytes());
            digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Starts containerd with the configuration written to `layout.containerd_config`.
pub(crate) fn spawn(layout: &NodeLayout, tools: &Tools) -> Result<Process> {
    std::fs::write(&layout.containerd_config, config(layout, tools)).map_err(io(format!(
        "writing {}",
        layout.containerd_config.display()
    )))?;
    Process::spawn_program(
        &tools.containerd,
        "containerd",
        vec![format!("--config={}", layout.containerd_config.display())],
        layout.dir.join("containerd.log"),
    )
}

/// Waits until containerd answers `ctr version` on its socket.
pub(crate) async fn wait_ready(
    process: &mut Process,
    layout: &NodeLayout,
    tools: &Tools,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(process.exited_error(status));
        }
        let last_error = if layout.containerd_socket.exists() {
            match ctr(layout, tools, &["version"]).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            }
        } else {
            format!("{} does not exist yet", layout.containerd_socket.display())
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

/// Imports the image-layout tarball at `archive` into the CRI namespace and checks that
/// `images` are there.
pub(crate) async fn import(
    layout: &NodeLayout,
    tools: &Tools,
    archive: &Path,
    images: &[&str],
) -> Result<()> {
    let archive = archive.display().to_string();
    ctr(layout, tools, &["images", "import", &archive])
        .await
        .map_err(|what| Error::NodeRequirement {
            what: format!("importing the node's images: {what}"),
        })?;
    let listed = ctr(layout, tools, &["images", "list", "--quiet"])
        .await
        .map_err(|what| Error::NodeRequirement { what })?;
    for image in images {
        if !listed.lines().any(|l| l.trim() == *image) {
            return Err(Error::NodeRequirement {
                what: format!("{image} is missing after the import; ctr lists: {listed}"),
            });
        }
    }
    Ok(())
}

/// Runs `ctr` against the node's containerd in the CRI namespace; its stdout, or a message
/// with its stderr.
pub(crate) async fn ctr(
    layout: &NodeLayout,
    tools: &Tools,
    args: &[&str],
) -> Result<String, String> {
    let output = tokio::process::Command::new(&tools.ctr)
        .arg(format!("--address={}", layout.containerd_socket.display()))
        .arg(format!("--namespace={CRI_NAMESPACE}"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", tools.ctr.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ctr {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }
}
