//! Errors from starting or stopping a test control plane (and its node).

use std::path::PathBuf;
use std::time::Duration;

/// Why a test control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary the environment needs is not in the assets folder.
    #[error(
        "{binary} not found in {dir} (set KUBEBUILDER_ASSETS to a folder holding etcd and \
         kube-apiserver, and for a node kubelet, kube-scheduler and kube-controller-manager; or \
         USE_EXISTING_CLUSTER=true to use the cluster from KUBECONFIG)"
    )]
    AssetNotFound {
        /// The missing binary, e.g. `kube-apiserver`.
        binary: &'static str,
        /// The folder that was searched.
        dir: PathBuf,
    },

    /// The node tier cannot run on this host: not root, or a host tool (containerd, runc,
    /// the CNI plugins, a static busybox, iproute2) is missing, or setting the node up failed.
    #[error("node tier: {what}")]
    NodeRequirement {
        /// What is missing or failed.
        what: String,
    },

    /// A file or folder operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Generating the test certificates or keys failed.
    #[error("generating the test PKI")]
    Certificates(#[source] rcgen::Error),

    /// A control plane process exited while starting.
    #[error(
        "{binary} exited during start-up ({status}); flags: {flags}\n--- last lines of its log ---\n{log_tail}"
    )]
    Exited {
        /// The binary that exited.
        binary: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The flags it was started with.
        flags: String,
        /// The tail of its combined stdout/stderr.
        log_tail: String,
    },

    /// A control plane process did not become ready in time.
    #[error(
        "{binary} was not ready after {waited:?} ({last_error}); flags: {flags}\n--- last lines of its log ---\n{log_tail}"
    )]
    NotReady {
        /// The binary that did not become ready.
        binary: &'static str,
        /// How long the environment waited.
        waited: Duration,
        /// The last readiness probe failure.
        last_error: String,
        /// The flags it was started with.
        flags: String,
        /// The tail of its combined stdout/stderr.
        log_tail: String,
    },

    /// Loading the kubeconfig of an existing cluster, or the one written for the test
    /// control plane, failed.
    #[error("loading kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    /// `USE_EXISTING_CLUSTER=true` was set but no cluster configuration could be inferred.
    #[error("USE_EXISTING_CLUSTER=true but no cluster config could be loaded")]
    ExistingCluster(#[source] kube::config::InferConfigError),

    /// A webhook's `clientConfig` names no path to serve it at (see
    /// [`WebhookInstallOptions`](super::WebhookInstallOptions)).
    #[error("webhook {webhook}: {reason}")]
    WebhookClientConfig {
        /// The webhook's name.
        webhook: String,
        /// What is wrong with its `clientConfig`.
        reason: String,
    },

    /// Creating, updating or deleting a webhook configuration or CRD failed.
    #[error("installing webhooks: {what}")]
    Install {
        /// The object, e.g. `ValidatingWebhookConfiguration podcounts.example.com`.
        what: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },

    /// A CRD installed with a conversion webhook was not `Established` in time.
    #[error("CustomResourceDefinition {crd} was not Established after {waited:?}")]
    NotEstablished {
        /// The CRD's name.
        crd: String,
        /// How long the installation waited.
        waited: Duration,
    },

    /// Building a ferrokube client for the control plane failed.
    #[error("building a ferrokube client for {url}")]
    ApiClient {
        /// The API server URL.
        url: String,
        /// The underlying error.
        #[source]
        source: crate::client::ConfigError,
    },

    /// Building a client for the control plane failed.
    #[error("building a client for {url}")]
    Client {
        /// The API server URL.
        url: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// A `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
