//! The node tier: kube-scheduler, containerd and a kubelet beside the control plane, so pods
//! really run (enable it with [`EnvironmentOptions::node`](super::EnvironmentOptions::node)).
//!
//! containerd gets its own root, state folder and socket under the environment's folder; the
//! CNI network is a bridge of the environment's own; images come from a static busybox
//! ([`BUSYBOX_IMAGE`], [`PAUSE_IMAGE`]: use `imagePullPolicy: Never`). Start-up waits for the
//! Node to be Ready with a heartbeat from this run and for the `default` ServiceAccount.
//! Dropping the environment deletes every pod through the API (the kubelet stops their
//! sandboxes through CRI), then kills what is left and undoes the host changes: processes,
//! mounts, network namespaces, the bridge, cgroups, kernel settings and files.
//!
//! The node needs root, a kubelet and kube-scheduler beside kube-apiserver, and containerd,
//! runc, the CNI plugins and a static busybox on the host (Debian: `containerd runc
//! containernetworking-plugins busybox-static`). [`EnvironmentOptions::preflight`] says what is
//! missing.
//!
//! [`EnvironmentOptions::preflight`]: super::EnvironmentOptions::preflight

mod containerd;
mod host;
mod image;
mod kubelet;
mod network;
mod options;
mod teardown;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as NodeObject, ServiceAccount};

use super::error::{Error, Result, io};
use super::process::{Process, free_port};

pub use self::image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use self::options::NodeOptions;
use self::options::requirement;
pub(crate) use self::options::{Tools, preflight};

/// Names, addresses and ports of one node, chosen before the control plane starts (the API
/// server's flags and the PKI depend on them).
#[derive(Debug)]
pub(crate) struct NodePlan {
    pub(crate) name: String,
    pub(crate) ip: IpAddr,
    subnet: Ipv4Addr,
    /// The bridge, the CNI network and the cgroup root share this environment's suffix.
    bridge: String,
    network: String,
    pub(crate) cgroup: String,
    pub(crate) kubelet_port: u16,
    pub(crate) healthz_port: u16,
    pub(crate) assets: PathBuf,
    tools: Tools,
    verbosity: u8,
}

impl NodePlan {
    pub(crate) fn new(options: &NodeOptions, assets: &Path) -> Result<Self> {
        let tools = preflight(options, assets)?;
        let ip = match options.ip {
            Some(ip) => ip,
            None => network::host_ip()?,
        };
        if ip.is_loopback() {
            return Err(requirement("the kubelet refuses a loopback node IP"));
        }
        let suffix = format!("{:08x}", rand::random::<u32>());
        Ok(Self {
            name: options.name.clone(),
            ip,
            subnet: network::free_pod_subnet(rand::random::<u8>())?,
            bridge: format!("fkenv{suffix}"),
            network: format!("ferrokube-envtest-{suffix}"),
            cgroup: format!("ferrokube-envtest-{suffix}"),
            kubelet_port: free_port()?,
            healthz_port: free_port()?,
            assets: assets.to_path_buf(),
            tools,
            verbosity: options.kubelet_verbosity,
        })
    }

    /// The identity the PKI issues the node's certificates for.
    pub(crate) fn identity(&self) -> super::certs::NodeIdentity<'_> {
        super::certs::NodeIdentity {
            name: &self.name,
            ip: self.ip,
        }
    }

    /// The API server's flags for talking to the kubelet and authorizing nodes.
    pub(crate) fn api_server_flags(layout: &NodeLayout) -> Vec<String> {
        vec![
            "--authorization-mode=Node,RBAC".to_owned(),
            "--enable-admission-plugins=NodeRestriction".to_owned(),
            format!(
                "--kubelet-client-certificate={}",
                layout.apiserver_kubelet_client_cert.display()
            ),
            format!(
                "--kubelet-client-key={}",
                layout.apiserver_kubelet_client_key.display()
            ),
            format!("--kubelet-certificate-authority={}", layout.ca.display()),
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
        ]
    }
}

/// Where the node's files go, all under the environment's folder.
#[derive(Debug)]
pub(crate) struct NodeLayout {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) kubelet_serving_cert: PathBuf,
    pub(crate) kubelet_serving_key: PathBuf,
    pub(crate) kubelet_client_cert: PathBuf,
    pub(crate) kubelet_client_key: PathBuf,
    pub(crate) apiserver_kubelet_client_cert: PathBuf,
    pub(crate) apiserver_kubelet_client_key: PathBuf,
    pub(crate) containerd_config: PathBuf,
    pub(crate) containerd_root: PathBuf,
    pub(crate) containerd_state: PathBuf,
    pub(crate) containerd_socket: PathBuf,
    pub(crate) cni_conf_dir: PathBuf,
    pub(crate) cni_ipam_dir: PathBuf,
    pub(crate) kubelet_root: PathBuf,
    pub(crate) kubelet_config: PathBuf,
    pub(crate) kubelet_kubeconfig: PathBuf,
    pub(crate) pod_logs: PathBuf,
    pub(crate) resolv_conf: PathBuf,
    pub(crate) images: PathBuf,
}

impl NodeLayout {
    /// Creates `root/node` and writes the node's certificates into it.
    pub(crate) fn create(root: &Path, ca: &Path, pki: &super::certs::NodePki) -> Result<Self> {
        let dir = root.join("node");
        let layout = Self {
            ca: ca.to_path_buf(),
            kubelet_serving_cert: dir.join("kubelet.crt"),
            kubelet_serving_key: dir.join("kubelet.key"),
            kubelet_client_cert: dir.join("kubelet-client.crt"),
            kubelet_client_key: dir.join("kubelet-client.key"),
            apiserver_kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
            apiserver_kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
            containerd_config: dir.join("containerd.toml"),
            containerd_root: dir.join("containerd/root"),
            containerd_state: dir.join("containerd/state"),
            containerd_socket: dir.join("containerd/containerd.sock"),
            cni_conf_dir: dir.join("cni/net.d"),
            cni_ipam_dir: dir.join("cni/ipam"),
            kubelet_root: dir.join("kubelet"),
            kubelet_config: dir.join("kubelet-config.json"),
            kubelet_kubeconfig: dir.join("kubelet.kubeconfig"),
            pod_logs: dir.join("pod-logs"),
            resolv_conf: dir.join("resolv.conf"),
            images: dir.join("images.tar"),
            dir,
        };
        for d in [
            &layout.dir,
            &layout.containerd_root,
            &layout.containerd_state,
            &layout.cni_conf_dir,
            &layout.cni_ipam_dir,
            &layout.kubelet_root,
            &layout.pod_logs,
        ] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        for (path, pem) in [
            (&layout.kubelet_serving_cert, &pki.kubelet_serving_cert),
            (&layout.kubelet_serving_key, &pki.kubelet_serving_key),
            (&layout.kubelet_client_cert, &pki.kubelet_client_cert),
            (&layout.kubelet_client_key, &pki.kubelet_client_key),
            (
                &layout.apiserver_kubelet_client_cert,
                &pki.apiserver_kubelet_client_cert,
            ),
            (
                &layout.apiserver_kubelet_client_key,
                &pki.apiserver_kubelet_client_key,
            ),
        ] {
            std::fs::write(path, pem).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(layout)
    }
}

/// A running node: scheduler, containerd and kubelet, and the host changes to undo.
/// Dropping it tears everything down (see [`teardown`]).
#[derive(Debug)]
pub(crate) struct Node {
    plan: NodePlan,
    layout: NodeLayout,
    admin: kube::Config,
    scheduler: Option<Process>,
    kubelet: Option<Process>,
    containerd: Option<Process>,
    kernel: Option<host::KernelSettings>,
    cgroups: Option<host::CgroupTree>,
    outside: Option<host::OutsideFiles>,
}

impl Node {
    /// Starts the scheduler, containerd and the kubelet against the running API server, and
    /// waits until the Node is Ready and the `default` ServiceAccount exists. On failure,
    /// whatever was started is torn down before the error is returned.
    pub(crate) async fn start(
        plan: NodePlan,
        layout: NodeLayout,
        admin: kube::Config,
        admin_kubeconfig: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        let mut node = Self {
            plan,
            layout,
            admin,
            scheduler: None,
            kubelet: None,
            containerd: None,
            kernel: None,
            cgroups: None,
            outside: None,
        };
        node.start_scheduler(admin_kubeconfig, timeout).await?;
        node.kernel = Some(host::KernelSettings::record());
        node.outside = Some(host::OutsideFiles::record());
        node.cgroups = Some(host::CgroupTree::create(&node.plan.cgroup)?);
        node.start_containerd(timeout).await?;
        node.start_kubelet(timeout).await?;
        tracing::info!(node = %node.plan.name, ip = %node.plan.ip, "envtest node ready");
        Ok(node)
    }

    pub(crate) fn name(&self) -> &str {
        &self.plan.name
    }

    pub(crate) fn ip(&self) -> IpAddr {
        self.plan.ip
    }

    pub(crate) fn processes(&self) -> impl Iterator<Item = &Process> {
        self.scheduler
            .iter()
            .chain(&self.containerd)
            .chain(&self.kubelet)
    }

    async fn start_scheduler(&mut self, kubeconfig: &Path, timeout: Duration) -> Result<()> {
        let port = free_port()?;
        let kubeconfig = kubeconfig.display();
        let args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!(
                "--cert-dir={}",
                self.layout.dir.join("scheduler-certs").display()
            ),
        ];
        let process = Process::spawn(
            &self.plan.assets,
            "kube-scheduler",
            args,
            self.layout.dir.join("kube-scheduler.log"),
        )?;
        let process = self.scheduler.insert(process);
        super::wait_for_port(process, port, timeout).await
    }

    async fn start_containerd(&mut self, timeout: Duration) -> Result<()> {
        let (plan, layout) = (&self.plan, &self.layout);
        let cni = network::cni_config(
            &plan.network,
            &plan.bridge,
            plan.subnet,
            &layout.cni_ipam_dir,
        );
        let cni_path = layout.cni_conf_dir.join("10-envtest.conflist");
        std::fs::write(&cni_path, cni).map_err(io(format!("writing {}", cni_path.display())))?;

        let applets = busybox_applets(&plan.tools.busybox)?;
        let archive = image::build(&plan.tools.busybox, &applets)?;
        std::fs::write(&layout.images, archive)
            .map_err(io(format!("writing {}", layout.images.display())))?;

        let process = self
            .containerd
            .insert(containerd::spawn(layout, &plan.tools)?);
        containerd::wait_ready(process, layout, &plan.tools, timeout).await?;
        containerd::import(
            layout,
            &plan.tools,
            &layout.images,
            &[BUSYBOX_IMAGE, PAUSE_IMAGE],
        )
        .await
    }

    async fn start_kubelet(&mut self, timeout: Duration) -> Result<()> {
        let api_url = self.admin.cluster_url.to_string();
        let api_url = api_url.trim_end_matches('/');
        let started = k8s_openapi::jiff::Timestamp::now();
        let process = self.kubelet.insert(kubelet::spawn(
            &self.plan,
            &self.layout,
            api_url,
            self.plan.verbosity,
        )?);
        kubelet::wait_healthy(process, self.plan.healthz_port, timeout).await?;
        let client =
            kube::Client::try_from(self.admin.clone()).map_err(|source| Error::Client {
                url: api_url.to_owned(),
                source,
            })?;
        let deadline = Instant::now() + timeout;
        let name = self.plan.name.clone();
        self.wait_for("the Node to be Ready", deadline, || {
            node_ready(client.clone(), name.clone(), started)
        })
        .await?;
        self.wait_for("the default ServiceAccount", deadline, || {
            default_service_account(client.clone())
        })
        .await
    }

    /// Polls `check` until it says `Ok(())`, the kubelet exits, or `deadline` passes.
    async fn wait_for<F, Fut>(&mut self, what: &str, deadline: Instant, check: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let start = Instant::now();
        loop {
            let last_error = match check().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(kubelet) = self.kubelet.as_mut() else {
                return Err(requirement("the kubelet is not running"));
            };
            if let Some(status) = kubelet.exited() {
                return Err(kubelet.exited_error(status));
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    binary: kubelet.binary,
                    waited: start.elapsed(),
                    last_error: format!("waiting for {what}: {last_error}"),
                    flags: kubelet.flags(),
                    log_tail: kubelet.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        teardown::run(self);
    }
}

/// The applets of `busybox` (`busybox --list`).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let output = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io(format!("running {} --list", busybox.display())))?;
    if !output.status.success() {
        return Err(requirement(&format!(
            "{} --list failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `Ok` once the Node is Ready with a heartbeat from this run (not one left in etcd) and
/// carries no `node.kubernetes.io/…` scheduling taint.
async fn node_ready(
    client: kube::Client,
    name: String,
    since: k8s_openapi::jiff::Timestamp,
) -> Result<(), String> {
    let nodes = kube::Api::<NodeObject>::all(client);
    let node = nodes
        .get_opt(&name)
        .await
        .map_err(|e| format!("getting Node {name}: {e}"))?
        .ok_or_else(|| format!("Node {name} is not registered yet"))?;
    let status = node.status.unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("the Node has no Ready condition yet")?;
    if ready.status != "True" {
        return Err(format!(
            "Ready is {}: {}",
            ready.status,
            ready.message.unwrap_or_default()
        ));
    }
    let fresh = ready
        .last_heartbeat_time
        .is_some_and(|t| t.0.as_second() + 1 >= since.as_second());
    if !fresh {
        return Err("the Ready heartbeat predates this kubelet".to_owned());
    }
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    if let Some(t) = taints
        .iter()
        .find(|t| t.key.starts_with("node.kubernetes.io/"))
    {
        return Err(format!("the Node still has taint {}:{}", t.key, t.effect));
    }
    Ok(())
}

async fn default_service_account(client: kube::Client) -> Result<(), String> {
    let accounts = kube::Api::<ServiceAccount>::namespaced(client, "default");
    match accounts.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("not created yet".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
