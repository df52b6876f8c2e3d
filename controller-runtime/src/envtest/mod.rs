//! Start a real `etcd` + `kube-apiserver` for tests: controller-runtime's `pkg/envtest`.
//!
//! [`Environment::start`] looks for the binaries in `KUBEBUILDER_ASSETS` (default
//! `/usr/local/kubebuilder/bin`), starts them on free loopback ports with a fresh data dir and
//! PKI, waits for `/readyz`, and hands back a [`kube::Config`], a [`kube::Client`] and a
//! kubeconfig file. With `USE_EXISTING_CLUSTER=true` it uses the cluster from `KUBECONFIG`
//! instead. Dropping the [`Environment`] (or calling [`Environment::stop`]) kills the processes
//! and removes the temporary folder.
//!
//! With [`EnvironmentOptions::node`], a node tier runs beside the control plane:
//! kube-controller-manager (all controllers), kube-scheduler, containerd and a kubelet, so pods
//! really run (see [`NodeOptions`]); [`EnvironmentOptions::preflight`] says whether this host
//! can run it.
//!
//! With [`EnvironmentOptions::webhooks`], webhook configurations and CRD conversion stanzas are
//! installed pointing the API server at a local webhook server, with a CA and serving
//! certificate generated for it (see [`WebhookInstallOptions`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrokube_runtime::envtest::{Environment, EnvironmentOptions};
//! use k8s_openapi::api::core::v1::Namespace;
//!
//! let env = EnvironmentOptions::default().start().await?;
//! let namespaces = kube::Api::<Namespace>::all(env.client()?);
//! println!("{} namespaces", namespaces.list(&Default::default()).await?.items.len());
//! env.stop();
//! # Ok(()) }
//! ```

mod certs;
mod error;
mod node;
mod process;
mod webhook;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use self::error::io;
pub use self::error::{Error, Result};
pub use self::node::{BUSYBOX_IMAGE, NodeOptions, PAUSE_IMAGE};
use self::process::{Process, free_port};
pub use self::webhook::{
    CERT_FILE, DEFAULT_CONVERSION_PATH, KEY_FILE, WebhookInstallOptions, WebhookInstallation,
};

/// The folder searched for binaries when `KUBEBUILDER_ASSETS` is not set.
pub const DEFAULT_ASSETS_DIR: &str = "/usr/local/kubebuilder/bin";

/// Options for [`Environment`]; read `KUBEBUILDER_ASSETS` and `USE_EXISTING_CLUSTER` unless set.
#[derive(Clone, Debug)]
pub struct EnvironmentOptions {
    assets_dir: Option<PathBuf>,
    use_existing_cluster: Option<bool>,
    controller_manager: bool,
    api_server_flags: Vec<String>,
    start_timeout: Duration,
    node: Option<NodeOptions>,
    webhooks: Option<WebhookInstallOptions>,
}

impl Default for EnvironmentOptions {
    fn default() -> Self {
        Self {
            assets_dir: None,
            use_existing_cluster: None,
            controller_manager: false,
            api_server_flags: Vec::new(),
            start_timeout: Duration::from_secs(60),
            node: None,
            webhooks: None,
        }
    }
}

impl EnvironmentOptions {
    /// The folder holding `etcd` and `kube-apiserver` (overrides `KUBEBUILDER_ASSETS`).
    #[must_use]
    pub fn assets_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.assets_dir = Some(dir.into());
        self
    }

    /// Use the cluster from `KUBECONFIG` instead of starting one (overrides
    /// `USE_EXISTING_CLUSTER`).
    #[must_use]
    pub fn use_existing_cluster(mut self, existing: bool) -> Self {
        self.use_existing_cluster = Some(existing);
        self
    }

    /// Also start `kube-controller-manager` from the assets folder, running the garbage
    /// collector (ownerReference cascades) and the namespace controller.
    #[must_use]
    pub fn controller_manager(mut self, start: bool) -> Self {
        self.controller_manager = start;
        self
    }

    /// An extra `kube-apiserver` flag, e.g. `--feature-gates=…`; later flags win.
    #[must_use]
    pub fn api_server_flag(mut self, flag: impl Into<String>) -> Self {
        self.api_server_flags.push(flag.into());
        self
    }

    /// Also run a node (off by default): kube-controller-manager with all controllers,
    /// kube-scheduler, containerd and a kubelet, so pods really run. Needs root, `kubelet` and
    /// `kube-scheduler` in the assets folder and the host tools [`NodeOptions`] lists. Ignored
    /// with an existing cluster.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use ferrokube_runtime::envtest::{BUSYBOX_IMAGE, EnvironmentOptions, NodeOptions};
    ///
    /// let options = EnvironmentOptions::default().node(NodeOptions::default());
    /// options.preflight()?; // says what this host lacks, without starting anything
    /// let env = options.start().await?;
    /// println!("node {:?} runs pods of {BUSYBOX_IMAGE} (imagePullPolicy: Never)", env.node_name());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn node(mut self, options: NodeOptions) -> Self {
        self.node = Some(options);
        self
    }

    /// Webhooks to install once the API server is ready (controller-runtime's
    /// `Environment.WebhookInstallOptions`): the environment generates the webhook server's
    /// certificates and picks its port, read them with [`Environment::webhook_cert_dir`] and
    /// [`Environment::webhook_port`]. With an existing cluster, its API server must be able to
    /// reach the webhook server (a kind cluster cannot reach this host's `127.0.0.1`: see
    /// [`WebhookInstallOptions::external_name`]).
    ///
    /// ```no_run
    /// # async fn demo(config: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// use ferrokube_runtime::envtest::{EnvironmentOptions, WebhookInstallOptions};
    ///
    /// let env = EnvironmentOptions::default()
    ///     .webhooks(WebhookInstallOptions::default().mutating(config))
    ///     .start()
    ///     .await?;
    /// let (port, dir) = (env.webhook_port(), env.webhook_cert_dir());
    /// println!("webhook server: port {port:?}, certificates in {dir:?}");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn webhooks(mut self, options: WebhookInstallOptions) -> Self {
        self.webhooks = Some(options);
        self
    }

    /// Whether these options run a node tier.
    pub fn has_node(&self) -> bool {
        self.node.is_some()
    }

    /// Checks, without starting anything, that what these options need is there: the
    /// control plane binaries and, with a node, root and the node's binaries and host tools.
    /// An existing cluster needs nothing.
    pub fn preflight(&self) -> Result<()> {
        if self.uses_existing_cluster() {
            return Ok(());
        }
        let assets = self.resolved_assets_dir();
        for binary in ["etcd", "kube-apiserver"] {
            if !assets.join(binary).is_file() {
                return Err(Error::AssetNotFound {
                    binary,
                    dir: assets,
                });
            }
        }
        if self.controller_manager && !assets.join("kube-controller-manager").is_file() {
            return Err(Error::AssetNotFound {
                binary: "kube-controller-manager",
                dir: assets,
            });
        }
        if let Some(node) = &self.node {
            node::preflight(node, &assets)?;
        }
        Ok(())
    }

    /// How long to wait for each process to become ready (default 60 s).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The assets folder these options resolve to.
    pub fn resolved_assets_dir(&self) -> PathBuf {
        self.assets_dir
            .clone()
            .or_else(|| std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ASSETS_DIR))
    }

    /// Whether these options use an existing cluster rather than starting one.
    pub fn uses_existing_cluster(&self) -> bool {
        self.use_existing_cluster
            .unwrap_or_else(|| std::env::var("USE_EXISTING_CLUSTER").is_ok_and(|v| parse_bool(&v)))
    }

    /// Starts the environment (or connects to the existing cluster).
    pub async fn start(self) -> Result<Environment> {
        Environment::start_with(self).await
    }
}

/// `strconv.ParseBool`'s true values, as controller-runtime reads `USE_EXISTING_CLUSTER`.
fn parse_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// A running test control plane, or a handle on an existing cluster.
#[derive(Debug)]
#[must_use = "dropping the Environment stops the control plane"]
pub struct Environment {
    config: kube::Config,
    kubeconfig: Option<PathBuf>,
    control_plane: Option<ControlPlane>,
    webhooks: Option<WebhookInstallation>,
}

impl Environment {
    /// Starts an environment with default options (see [`EnvironmentOptions`]).
    pub async fn start() -> Result<Self> {
        Self::start_with(EnvironmentOptions::default()).await
    }

    /// Starts an environment with `options`.
    pub async fn start_with(mut options: EnvironmentOptions) -> Result<Self> {
        let webhooks = options.webhooks.take();
        let mut env = if options.uses_existing_cluster() {
            let config = kube::Config::infer()
                .await
                .map_err(Error::ExistingCluster)?;
            Self {
                config,
                kubeconfig: existing_kubeconfig_path(),
                control_plane: None,
                webhooks: None,
            }
        } else {
            let control_plane = ControlPlane::start(options).await?;
            Self {
                config: control_plane.config.clone(),
                kubeconfig: Some(control_plane.kubeconfig.clone()),
                control_plane: Some(control_plane),
                webhooks: None,
            }
        };
        if let Some(webhooks) = webhooks {
            env.webhooks = Some(webhooks.install(&env.client()?).await?);
        }
        Ok(env)
    }

    /// Client configuration for the cluster, authenticated as an admin in `system:masters`.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// A new client for the cluster.
    pub fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.config.clone()).map_err(|source| Error::Client {
            url: self.config.cluster_url.to_string(),
            source,
        })
    }

    /// A ferrokube [`Client`](crate::client::Client) for the cluster (client-go's default
    /// throttling: 5 QPS, burst 10), as an admin.
    pub fn api_client(&self) -> Result<crate::client::Client> {
        crate::client::Config::from_kube(self.config.clone())
            .build()
            .map_err(|source| Error::ApiClient {
                url: self.config.cluster_url.to_string(),
                source,
            })
    }

    /// A kubeconfig file for the cluster (for the test control plane, valid while it runs).
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// Whether this environment is an existing cluster rather than one it started.
    pub fn is_existing_cluster(&self) -> bool {
        self.control_plane.is_none()
    }

    /// The etcd client URL of a started control plane.
    pub fn etcd_url(&self) -> Option<&str> {
        self.control_plane.as_ref().map(|cp| cp.etcd_url.as_str())
    }

    /// The name of the node tier's Node, if it runs one.
    pub fn node_name(&self) -> Option<&str> {
        self.control_plane
            .as_ref()?
            .node
            .as_ref()
            .map(node::Node::name)
    }

    /// The node tier's IP address (the Node's `InternalIP`), if it runs one.
    pub fn node_ip(&self) -> Option<std::net::IpAddr> {
        self.control_plane
            .as_ref()?
            .node
            .as_ref()
            .map(node::Node::ip)
    }

    /// The installed webhooks, if the options had [`EnvironmentOptions::webhooks`].
    pub fn webhooks(&self) -> Option<&WebhookInstallation> {
        self.webhooks.as_ref()
    }

    /// The folder holding the webhook server's `tls.crt` and `tls.key`, if webhooks were
    /// installed: the manager's webhook server reads its certificates from here.
    pub fn webhook_cert_dir(&self) -> Option<&Path> {
        self.webhooks.as_ref().map(WebhookInstallation::cert_dir)
    }

    /// The port the webhook server must listen on (on [`WebhookInstallation::host`],
    /// `127.0.0.1` by default), if webhooks were installed.
    pub fn webhook_port(&self) -> Option<u16> {
        self.webhooks.as_ref().map(WebhookInstallation::port)
    }

    /// Process ids of the started control plane (`(binary, pid)`), for diagnostics.
    pub fn process_ids(&self) -> Vec<(&'static str, u32)> {
        let Some(cp) = &self.control_plane else {
            return Vec::new();
        };
        cp.processes()
            .filter_map(|p| Some((p.binary, p.id()?)))
            .collect()
    }

    /// Kills and restarts `kube-apiserver` on the same port and data, then waits for it to be
    /// ready. Clients keep working once it is back. Does nothing for an existing cluster.
    pub async fn restart_api_server(&mut self) -> Result<()> {
        match &mut self.control_plane {
            Some(cp) => cp.restart_api_server().await,
            None => Ok(()),
        }
    }

    /// Stops the control plane and removes its temporary folder (the same as dropping it).
    pub fn stop(self) {}
}

fn existing_kubeconfig_path() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        return std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty());
    }
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".kube").join("config");
    path.exists().then_some(path)
}

/// The processes and files of a started control plane. Field order is drop order.
#[derive(Debug)]
struct ControlPlane {
    node: Option<node::Node>,
    controller_manager: Option<Process>,
    api_server: Process,
    etcd: Process,
    config: kube::Config,
    kubeconfig: PathBuf,
    etcd_url: String,
    assets: PathBuf,
    api_server_args: Vec<String>,
    start_timeout: Duration,
    dir: tempfile::TempDir,
}

// === impl ControlPlane ===

impl ControlPlane {
    async fn start(options: EnvironmentOptions) -> Result<Self> {
        let assets = options.resolved_assets_dir();
        for binary in ["etcd", "kube-apiserver"] {
            if !assets.join(binary).is_file() {
                return Err(Error::AssetNotFound {
                    binary,
                    dir: assets,
                });
            }
        }
        if options.controller_manager && !assets.join("kube-controller-manager").is_file() {
            return Err(Error::AssetNotFound {
                binary: "kube-controller-manager",
                dir: assets,
            });
        }
        let node_plan = match &options.node {
            Some(node) => Some(node::NodePlan::new(node, &assets)?),
            None => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("ferrokube-envtest-")
            .tempdir()
            .map_err(io("creating the envtest temporary folder"))?;
        let root = dir.path();
        let pki = certs::Pki::generate(node_plan.as_ref().map(|p| p.identity()).as_ref())?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = root.join(name);
            std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
            Ok(path)
        };
        let ca = write("ca.crt", &pki.ca_cert)?;
        let serving_cert = write("apiserver.crt", &pki.serving_cert)?;
        let serving_key = write("apiserver.key", &pki.serving_key)?;
        let admin_cert = write("admin.crt", &pki.admin_cert)?;
        let admin_key = write("admin.key", &pki.admin_key)?;
        let sa_key = write("sa.key", &pki.service_account_key)?;
        let sa_pub = write("sa.pub", &pki.service_account_pub)?;
        let node_layout = match &pki.node {
            Some(node_pki) => Some(node::NodeLayout::create(root, &ca, node_pki)?),
            None => None,
        };

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--name=default".to_owned(),
            "--unsafe-no-fsync".to_owned(),
        ];
        let mut etcd = Process::spawn(&assets, "etcd", etcd_args, root.join("etcd.log"))?;
        wait_for_port(&mut etcd, etcd_port, options.start_timeout).await?;

        let api_url = format!("https://127.0.0.1:{api_port}");
        let mut api_server_args = vec![
            "--advertise-address=127.0.0.1".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--etcd-servers={etcd_url}"),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            format!("--service-account-issuer={api_url}"),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
        ];
        match &node_layout {
            // A node runs pods as kind's does: with service account tokens, the Node
            // authorizer and NodeRestriction.
            Some(layout) => api_server_args.extend(node::NodePlan::api_server_flags(layout)),
            None => api_server_args.extend([
                "--disable-admission-plugins=ServiceAccount".to_owned(),
                "--authorization-mode=RBAC".to_owned(),
            ]),
        }
        api_server_args.extend(options.api_server_flags.iter().cloned());
        let api_server = Process::spawn(
            &assets,
            "kube-apiserver",
            api_server_args.clone(),
            root.join("kube-apiserver.log"),
        )?;

        let kubeconfig = root.join("kubeconfig");
        let contents = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": api_url,
                "certificate-authority": ca,
            }}],
            "users": [{"name": "envtest-admin", "user": {
                "client-certificate": admin_cert,
                "client-key": admin_key,
            }}],
            "contexts": [{"name": "envtest", "context": {
                "cluster": "envtest", "user": "envtest-admin", "namespace": "default",
            }}],
            "current-context": "envtest",
        });
        write("kubeconfig", &contents.to_string())?;
        let parsed = Kubeconfig::read_from(&kubeconfig).map_err(Error::Kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
            .await
            .map_err(Error::Kubeconfig)?;

        let mut cp = Self {
            node: None,
            controller_manager: None,
            api_server,
            etcd,
            config,
            kubeconfig,
            etcd_url,
            assets,
            api_server_args,
            start_timeout: options.start_timeout,
            dir,
        };
        cp.wait_for_api_server().await?;
        if options.controller_manager || node_plan.is_some() {
            cp.start_controller_manager(node_plan.is_some()).await?;
        }
        if let (Some(plan), Some(layout)) = (node_plan, node_layout) {
            let node = node::Node::start(
                plan,
                layout,
                cp.config.clone(),
                &cp.kubeconfig,
                options.start_timeout,
            )
            .await?;
            cp.node = Some(node);
        }
        tracing::info!(url = %api_url, dir = %cp.dir.path().display(), "envtest control plane ready");
        Ok(cp)
    }

    fn processes(&self) -> impl Iterator<Item = &Process> {
        self.node
            .iter()
            .flat_map(node::Node::processes)
            .chain(&self.controller_manager)
            .chain([&self.api_server, &self.etcd])
    }

    async fn wait_for_api_server(&mut self) -> Result<()> {
        let client =
            kube::Client::try_from(self.config.clone()).map_err(|source| Error::Client {
                url: self.config.cluster_url.to_string(),
                source,
            })?;
        let start = Instant::now();
        loop {
            for p in [&mut self.etcd, &mut self.api_server] {
                if let Some(status) = p.exited() {
                    return Err(p.exited_error(status));
                }
            }
            let last_error = match http::Request::get("/readyz").body(Vec::new()) {
                Ok(req) => match client.request_text(req).await {
                    Ok(body) if body.trim() == "ok" => return Ok(()),
                    Ok(body) => format!("/readyz said {body:?}"),
                    Err(e) => format!("/readyz: {e}"),
                },
                Err(e) => e.to_string(),
            };
            if start.elapsed() > self.start_timeout {
                return Err(Error::NotReady {
                    binary: self.api_server.binary,
                    waited: start.elapsed(),
                    last_error,
                    flags: self.api_server.flags(),
                    log_tail: self.api_server.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn restart_api_server(&mut self) -> Result<()> {
        self.api_server.stop();
        self.api_server = Process::spawn(
            &self.assets,
            "kube-apiserver",
            self.api_server_args.clone(),
            self.dir.path().join("kube-apiserver.log"),
        )?;
        self.wait_for_api_server().await
    }

    /// Starts kube-controller-manager: the garbage collector and the namespace controller, or
    /// with a node every controller (ServiceAccounts, root CA ConfigMaps, workloads, node
    /// lifecycle …).
    async fn start_controller_manager(&mut self, all_controllers: bool) -> Result<()> {
        let port = free_port()?;
        let kubeconfig = self.kubeconfig.display().to_string();
        let root = self.dir.path();
        let mut args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", root.join("kcm-certs").display()),
        ];
        if all_controllers {
            args.extend([
                "--controllers=*".to_owned(),
                format!("--root-ca-file={}", root.join("ca.crt").display()),
                format!(
                    "--service-account-private-key-file={}",
                    root.join("sa.key").display()
                ),
                // The default is under /usr/libexec, created when the volume controllers start.
                format!(
                    "--flex-volume-plugin-dir={}",
                    root.join("kcm-volume-plugins").display()
                ),
            ]);
        } else {
            args.push("--controllers=garbagecollector,namespace".to_owned());
        }
        let mut kcm = Process::spawn(
            &self.assets,
            "kube-controller-manager",
            args,
            self.dir.path().join("kube-controller-manager.log"),
        )?;
        wait_for_port(&mut kcm, port, self.start_timeout).await?;
        self.controller_manager = Some(kcm);
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(kcm) = &mut self.controller_manager {
            kcm.stop();
        }
        // The node deletes its pods through the API server: before it stops.
        drop(self.node.take());
        self.api_server.stop();
        self.etcd.stop();
        tracing::debug!(dir = %self.dir.path().display(), "envtest control plane stopped");
    }
}

/// Waits until `process` accepts TCP connections on `port`.
async fn wait_for_port(process: &mut Process, port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(process.exited_error(status));
        }
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > timeout => {
                return Err(Error::NotReady {
                    binary: process.binary,
                    waited: start.elapsed(),
                    last_error: format!("connecting to 127.0.0.1:{port}: {e}"),
                    flags: process.flags(),
                    log_tail: process.log_tail(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
