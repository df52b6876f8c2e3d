//! Client configuration: kubeconfig, in-cluster, or client-go's `BuildConfigFromFlags`, plus
//! QPS/burst throttling, a request timeout and the user agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::client::Client;
use crate::metrics::{RequestMetrics, SharedRequestMetrics};

/// client-go's default queries per second (`rest.DefaultQPS`).
pub const DEFAULT_QPS: f32 = 5.0;
/// client-go's default burst (`rest.DefaultBurst`).
pub const DEFAULT_BURST: u32 = 10;

/// Why a configuration could not be loaded or turned into a client.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A kubeconfig file could not be read or parsed.
    #[error("kubeconfig {path}: cannot be loaded")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// The requested context is not in the kubeconfig.
    #[error("context {context:?} not found in kubeconfig {paths} (contexts: {available})")]
    ContextNotFound {
        /// The context asked for.
        context: String,
        /// The kubeconfig files searched.
        paths: String,
        /// The contexts they define.
        available: String,
    },

    /// The kubeconfig was read, but its context, cluster or user could not be used.
    #[error("kubeconfig {paths}, context {context}: cannot be used")]
    Context {
        /// The kubeconfig files.
        paths: String,
        /// The context (or "current-context").
        context: String,
        /// What was wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// No kubeconfig was found and this is not a pod.
    #[error("no kubeconfig at {paths} and not running in a cluster ({in_cluster})")]
    NotFound {
        /// Where a kubeconfig was looked for.
        paths: String,
        /// Why the in-cluster configuration failed.
        in_cluster: String,
    },

    /// The in-cluster (service account) configuration could not be loaded.
    #[error("in-cluster configuration")]
    InCluster(#[source] kube::config::InClusterError),

    /// A server URL could not be parsed.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The user agent cannot be sent as an HTTP header value (a control character, such as
    /// a newline, or a non-visible byte).
    #[error("invalid user agent {user_agent:?}")]
    InvalidUserAgent {
        /// The user agent given.
        user_agent: String,
        /// What `http` reported.
        #[source]
        source: http::header::InvalidHeaderValue,
    },

    /// Throttling is on (`qps > 0`) with a burst of 0, which would let no request through
    /// (client-go's `NewForConfig` refuses it too).
    #[error("burst must be greater than 0 when qps ({qps}) is greater than 0")]
    ZeroBurst {
        /// The configured QPS.
        qps: f32,
    },

    /// kube could not build a client (TLS material, proxy, auth plugin set-up).
    #[error("building a client for {url}")]
    Client {
        /// The server URL.
        url: String,
        /// What kube reported.
        #[source]
        source: kube::Error,
    },
}

/// Everything needed to build a [`Client`]: where the server is, how to authenticate (both
/// through kube), and client-go's `rest.Config` knobs.
///
/// Settings are changed with by-value `with_*` setters and read back with getters of the
/// same name without the prefix:
///
/// ```no_run
/// use std::time::Duration;
/// use ferrokube_client::Config;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::infer()
///     .await?
///     .with_qps(50.0)
///     .with_burst(100)
///     .with_timeout(Duration::from_secs(30))
///     .with_user_agent("my-controller/1.0");
/// assert_eq!((config.qps(), config.burst()), (50.0, 100));
/// let client = config.build()?;
/// # Ok(()) }
/// ```
///
/// Its `Debug` output names the credentials configured, never their values (as client-go's
/// `rest.Config` prints `--- REDACTED ---`): tokens, passwords, client keys, auth-provider
/// settings, exec-plugin environment values and extra header values are left out.
#[derive(Clone)]
#[doc(alias = "rest.Config")]
pub struct Config {
    kube: kube::Config,
    qps: f32,
    burst: u32,
    timeout: Option<Duration>,
    user_agent: String,
    request_metrics: Option<SharedRequestMetrics>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kube = &self.kube;
        let auth = &kube.auth_info;
        let set = |name: &'static str, is_set: bool| is_set.then_some(name);
        let credentials: Vec<&str> = [
            set("token", auth.token.is_some()),
            set("token file", auth.token_file.is_some()),
            set("password", auth.password.is_some()),
            set(
                "client certificate",
                auth.client_certificate.is_some() || auth.client_certificate_data.is_some(),
            ),
            set(
                "client key",
                auth.client_key.is_some() || auth.client_key_data.is_some(),
            ),
            set("auth provider", auth.auth_provider.is_some()),
            set("exec plugin", auth.exec.is_some()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let header_names: Vec<&str> = kube.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Config")
            .field("cluster_url", &kube.cluster_url)
            .field("default_namespace", &kube.default_namespace)
            .field("insecure_skip_tls_verify", &kube.accept_invalid_certs)
            .field("tls_server_name", &kube.tls_server_name)
            .field("proxy_url", &kube.proxy_url)
            .field("username", &auth.username)
            .field("credentials", &credentials)
            .field(
                "exec_command",
                &auth.exec.as_ref().and_then(|e| e.command.as_deref()),
            )
            .field(
                "auth_provider",
                &auth.auth_provider.as_ref().map(|p| p.name.as_str()),
            )
            .field("headers", &header_names)
            .field("qps", &self.qps)
            .field("burst", &self.burst)
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .field("request_metrics", &self.request_metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Wraps a kube configuration with client-go's defaults (5 QPS, burst 10, no timeout).
    pub fn from_kube(kube: kube::Config) -> Self {
        Self {
            kube,
            qps: DEFAULT_QPS,
            burst: DEFAULT_BURST,
            timeout: None,
            user_agent: default_user_agent(),
            request_metrics: None,
        }
    }

    /// The kubeconfig from `KUBECONFIG` (a path list, merged) or `~/.kube/config`, then the
    /// in-cluster service account.
    pub async fn infer() -> Result<Self, ConfigError> {
        let paths = default_kubeconfig_paths();
        if paths.iter().any(|p| p.exists()) {
            return Self::from_kubeconfig_files(&paths, None).await;
        }
        match kube::Config::incluster() {
            Ok(config) => Ok(Self::from_kube(config)),
            Err(e) => Err(ConfigError::NotFound {
                paths: display_paths(&paths),
                in_cluster: e.to_string(),
            }),
        }
    }

    /// client-go's `clientcmd.BuildConfigFromFlags`: an explicit kubeconfig path and/or master
    /// URL win (the URL overrides the kubeconfig's server); with both empty, in-cluster is
    /// tried first, then the default kubeconfig.
    pub async fn from_flags(master_url: &str, kubeconfig_path: &str) -> Result<Self, ConfigError> {
        if master_url.is_empty() && kubeconfig_path.is_empty() {
            if let Ok(config) = kube::Config::incluster() {
                return Ok(Self::from_kube(config));
            }
            tracing::warn!(
                "neither --kubeconfig nor --master was specified; using the default kubeconfig"
            );
            return Self::infer().await;
        }
        let mut config = if kubeconfig_path.is_empty() {
            Self::from_kube(kube::Config::new(parse_url(master_url)?))
        } else {
            Self::from_kubeconfig_files(&[PathBuf::from(kubeconfig_path)], None).await?
        };
        if !master_url.is_empty() {
            config.kube.cluster_url = parse_url(master_url)?;
        }
        Ok(config)
    }

    /// A kubeconfig file, with `context` (or its current-context).
    pub async fn from_kubeconfig(
        path: impl AsRef<Path>,
        context: Option<&str>,
    ) -> Result<Self, ConfigError> {
        Self::from_kubeconfig_files(&[path.as_ref().to_owned()], context).await
    }

    /// The default kubeconfig (`KUBECONFIG` or `~/.kube/config`) with a named context.
    pub async fn from_default_kubeconfig(context: &str) -> Result<Self, ConfigError> {
        Self::from_kubeconfig_files(&default_kubeconfig_paths(), Some(context)).await
    }

    /// The in-cluster configuration: service-account token (re-read on rotation by kube),
    /// CA and namespace from `/var/run/secrets/kubernetes.io/serviceaccount`.
    pub fn in_cluster() -> Result<Self, ConfigError> {
        kube::Config::incluster()
            .map(Self::from_kube)
            .map_err(ConfigError::InCluster)
    }

    async fn from_kubeconfig_files(
        paths: &[PathBuf],
        context: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut merged: Option<Kubeconfig> = None;
        for path in paths.iter().filter(|p| p.exists() || paths.len() == 1) {
            let file = read_kubeconfig(path)?;
            merged = Some(match merged {
                None => file,
                Some(m) => m.merge(file).map_err(|source| ConfigError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?,
            });
        }
        let shown = display_paths(paths);
        let Some(kubeconfig) = merged else {
            return Err(ConfigError::NotFound {
                paths: shown,
                in_cluster: "not tried".into(),
            });
        };
        if let Some(name) = context
            && !kubeconfig.contexts.iter().any(|c| c.name == name)
        {
            let available: Vec<_> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(ConfigError::ContextNotFound {
                context: name.to_owned(),
                paths: shown,
                available: available.join(", "),
            });
        }
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| ConfigError::Context {
                paths: shown,
                context: context.unwrap_or("current-context").to_owned(),
                source,
            })?;
        Ok(Self::from_kube(config))
    }

    /// Sets the queries per second allowed by the client-side token bucket (client-go's
    /// `QPS`; default 5); zero or negative disables throttling.
    #[must_use]
    pub fn with_qps(mut self, qps: f32) -> Self {
        self.qps = qps;
        self
    }

    /// Sets how many requests may go at once above `qps` (client-go's `Burst`; default 10).
    /// It must be at least 1 while throttling is on.
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Sets the default timeout of a request that is not a watch or a stream (none by
    /// default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the `User-Agent` header sent with every request (default
    /// `ferrokube/VERSION (OS/ARCH)`); it must be a valid header value.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sets the namespace used when a request names none.
    #[must_use]
    pub fn with_default_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.kube.default_namespace = namespace.into();
        self
    }

    /// Turns verification of the API server's certificate off (kubeconfig's
    /// `insecure-skip-tls-verify`; verification is on by default). Anyone on the path to the
    /// server can then read and change the traffic, credentials included: a client built from
    /// such a configuration logs a warning saying so.
    #[must_use]
    pub fn with_insecure_skip_tls_verify(mut self, skip: bool) -> Self {
        self.kube.accept_invalid_certs = skip;
        self
    }

    /// Whether the API server's certificate goes unverified (see
    /// [`with_insecure_skip_tls_verify`](Self::with_insecure_skip_tls_verify)).
    pub fn insecure_skip_tls_verify(&self) -> bool {
        self.kube.accept_invalid_certs
    }

    /// Reports the outcome of every request (client-go's `rest_client_requests_total` hook);
    /// none by default. See [`crate::metrics`].
    #[must_use]
    pub fn with_request_metrics(mut self, metrics: Arc<dyn RequestMetrics>) -> Self {
        self.request_metrics = Some(SharedRequestMetrics(metrics));
        self
    }

    /// The server URL.
    pub fn cluster_url(&self) -> &http::Uri {
        &self.kube.cluster_url
    }

    /// The namespace used when a request names none: the kubeconfig context's (or `default`).
    pub fn default_namespace(&self) -> &str {
        &self.kube.default_namespace
    }

    /// The queries per second of the client-side token bucket (zero or negative: unthrottled).
    #[doc(alias = "QPS")]
    pub fn qps(&self) -> f32 {
        self.qps
    }

    /// The token bucket's burst.
    #[doc(alias = "Burst")]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The default request timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The `User-Agent` header sent with every request.
    #[doc(alias = "UserAgent")]
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// What every request's outcome is reported to, if anything.
    pub fn request_metrics(&self) -> Option<&Arc<dyn RequestMetrics>> {
        self.request_metrics.as_ref().map(|shared| &shared.0)
    }

    /// The underlying kube configuration (auth, TLS, proxy…).
    pub fn kube_config(&self) -> &kube::Config {
        &self.kube
    }

    /// Mutable access to the kube configuration, for what this type has no setter for.
    pub fn kube_config_mut(&mut self) -> &mut kube::Config {
        &mut self.kube
    }

    /// Builds a [`Client`] (must be called inside a tokio runtime); fails with
    /// [`ConfigError::InvalidUserAgent`] or [`ConfigError::ZeroBurst`] for settings that
    /// cannot be used, or [`ConfigError::Client`] if kube cannot build its client.
    pub fn build(&self) -> Result<Client, ConfigError> {
        Client::from_config(self)
    }
}

/// `ferrokube/VERSION (OS/ARCH)`, in the spirit of client-go's default user agent.
fn default_user_agent() -> String {
    format!(
        "ferrokube/{} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn parse_url(url: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri =
        url.parse()
            .map_err(|e: http::uri::InvalidUri| ConfigError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
    if uri.scheme().is_none() || uri.host().is_none() {
        return Err(ConfigError::InvalidUrl {
            url: url.to_owned(),
            reason: "expected scheme://host[:port]".into(),
        });
    }
    Ok(uri)
}

/// Reads a kubeconfig file with kube, refusing first what kube 5 panics on (found by the
/// `kubeconfig` fuzz target): a regular file that starts with a UTF-16 byte-order mark and
/// holds an odd number of bytes. Anything else (a pipe from process substitution, say) is
/// left to kube, unread.
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, ConfigError> {
    use std::io::Read;
    let error = |source| ConfigError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let mut head = [0u8; 2];
    let odd_utf16 = std::fs::File::open(path).is_ok_and(|mut file| {
        file.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.len() % 2 != 0)
            && file.read_exact(&mut head).is_ok()
            && matches!(head, [0xFF, 0xFE] | [0xFE, 0xFF])
    });
    if odd_utf16 {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "UTF-16 (it starts with a byte-order mark) with an odd number of bytes",
        );
        return Err(error(kube::config::KubeconfigError::ReadConfig(
            io,
            path.to_owned(),
        )));
    }
    Kubeconfig::read_from(path).map_err(error)
}

/// `KUBECONFIG` split as a path list, or `~/.kube/config`.
pub fn default_kubeconfig_paths() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<_> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return paths;
        }
    }
    std::env::var_os("HOME")
        .map(|home| vec![Path::new(&home).join(".kube").join("config")])
        .unwrap_or_default()
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u1
  user: {token: abc}
contexts:
- name: ctx1
  context: {cluster: c1, user: u1, namespace: team-a}
current-context: ctx1
"#;

    #[tokio::test]
    async fn loads_context_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, GOOD);
        let config = Config::from_kubeconfig(&path, None).await.unwrap();
        assert_eq!(config.default_namespace(), "team-a");
        assert_eq!(config.cluster_url().to_string(), "https://127.0.0.1:6443/");
        assert_eq!((config.qps(), config.burst()), (5.0, 10));
        assert_eq!(config.timeout(), None);
        assert!(
            config.user_agent().starts_with("ferrokube/"),
            "{}",
            config.user_agent()
        );
    }

    #[tokio::test]
    async fn malformed_kubeconfig_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "clusters: [this is: not valid");
        let err = Config::from_kubeconfig(&path, None).await.unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[tokio::test]
    async fn odd_length_utf16_kubeconfig_is_an_error_not_a_panic() {
        // Found by the kubeconfig fuzz target: kube's reader indexes past the end (panicked
        // before the check).
        let dir = tempfile::tempdir().unwrap();
        for bytes in [&[0xFF, 0xFE, b'a'][..], &[0xFE, 0xFF, 0, b'a', 0][..]] {
            let path = dir.path().join("config");
            std::fs::write(&path, bytes).unwrap();
            let err = Config::from_kubeconfig(&path, None).await.unwrap_err();
            let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
            assert!(text.contains("UTF-16"), "{text}");
        }
        // An even-length UTF-16 file is still read (as kube reads it).
        let path = write(&dir, "");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(GOOD.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        std::fs::write(&path, utf16).unwrap();
        let config = Config::from_kubeconfig(&path, None).await.unwrap();
        assert_eq!(config.default_namespace(), "team-a");
    }

    #[tokio::test]
    async fn missing_file_names_the_file() {
        let err = Config::from_kubeconfig("/nonexistent/kubeconfig", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }

    #[tokio::test]
    async fn missing_context_names_context_and_alternatives() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, GOOD);
        let err = Config::from_kubeconfig(&path, Some("nope"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"nope\"") && text.contains("ctx1"), "{text}");
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    }

    #[tokio::test]
    async fn from_flags_master_overrides_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, GOOD);
        let config = Config::from_flags("https://10.9.8.7:443", path.to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(config.cluster_url().host(), Some("10.9.8.7"));
        let only_master = Config::from_flags("http://localhost:8080", "")
            .await
            .unwrap();
        assert_eq!(only_master.cluster_url().port_u16(), Some(8080));
        let bad = Config::from_flags("not a url", "").await.unwrap_err();
        assert!(bad.to_string().contains("not a url"), "{bad}");
    }

    fn local() -> Config {
        Config::from_kube(kube::Config::new(http::Uri::from_static(
            "https://127.0.0.1:6443",
        )))
    }

    #[tokio::test]
    async fn invalid_user_agent_has_its_own_error() {
        let err = local()
            .with_user_agent("bad\nagent")
            .build()
            .expect_err("a newline cannot be sent in a header");
        assert!(
            matches!(&err, ConfigError::InvalidUserAgent { user_agent, .. } if user_agent == "bad\nagent"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"invalid user agent "bad\nagent""#);
        assert!(std::error::Error::source(&err).is_some());
        assert!(local().with_user_agent("my-controller/1.0").build().is_ok());
    }

    #[tokio::test]
    async fn zero_burst_is_refused_while_throttling() {
        let err = local().with_burst(0).build().err();
        assert!(
            matches!(err, Some(ConfigError::ZeroBurst { qps }) if qps == 5.0),
            "{err:?}"
        );
        // Unthrottled, the burst does not matter.
        assert!(local().with_qps(-1.0).with_burst(0).build().is_ok());
    }

    /// Runs `f` with a TRACE-level subscriber writing into a buffer; returns what it wrote.
    fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buffer(Arc<parking_lot::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&buffer.0.lock()).into_owned();
        (out, text)
    }

    const SECRETS: [&str; 8] = [
        "TOKEN-SECRET-1",
        "PASSWORD-SECRET-2",
        "S0VZLVNFQ1JFVC0z",
        "IDTOKEN-SECRET-4",
        "REFRESH-SECRET-5",
        "CLIENT-SECRET-6",
        "ENV-SECRET-7",
        "HEADER-SECRET-8",
    ];

    #[tokio::test]
    async fn debug_names_credentials_never_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u1
  user:
    token: TOKEN-SECRET-1
    username: bob
    password: PASSWORD-SECRET-2
    client-key-data: S0VZLVNFQ1JFVC0z
    auth-provider: {name: oidc, config: {id-token: IDTOKEN-SECRET-4, refresh-token: REFRESH-SECRET-5, client-secret: CLIENT-SECRET-6}}
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /usr/bin/credential-helper
      env: [{name: API_KEY, value: ENV-SECRET-7}]
contexts:
- name: ctx1
  context: {cluster: c1, user: u1}
current-context: ctx1
"#,
        );
        let mut config = Config::from_kubeconfig(&path, None).await.unwrap();
        config.kube_config_mut().headers.push((
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer HEADER-SECRET-8"),
        ));
        // The auth-provider settings and the exec environment were printed before.
        let shown = format!("{config:?} {config:#?}");
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for named in [
            "token",
            "password",
            "client key",
            "auth provider",
            "exec plugin",
        ] {
            assert!(shown.contains(named), "{named} not named in {shown}");
        }
        assert!(shown.contains("/usr/bin/credential-helper") && shown.contains("oidc"));
        assert!(
            shown.contains("authorization") && shown.contains("bob"),
            "{shown}"
        );

        // A client built from a token config, and what building it logs at TRACE.
        let config = Config::from_kube(kube::Config::new(http::Uri::from_static(
            "https://127.0.0.1:6443",
        )));
        let mut config = config;
        config.kube_config_mut().auth_info.token = Some("TOKEN-SECRET-1".to_owned().into());
        let (client, logs) = captured(|| config.build().unwrap());
        let shown = format!("{config:?} {client:?} {logs}");
        assert!(!shown.contains("TOKEN-SECRET-1"), "{shown}");
    }

    #[tokio::test]
    async fn tls_verification_is_on_unless_turned_off_explicitly_then_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let verified = Config::from_kubeconfig(&write(&dir, GOOD), None)
            .await
            .unwrap();
        assert!(!verified.insecure_skip_tls_verify());
        assert!(!local().insecure_skip_tls_verify());
        let (_, logs) = captured(|| verified.build().unwrap());
        assert!(!logs.contains("WARN"), "{logs}");

        let insecure_kubeconfig = GOOD.replace(
            r#"cluster: {server: "https://127.0.0.1:6443"}"#,
            r#"cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}"#,
        );
        let from_file = Config::from_kubeconfig(&write(&dir, &insecure_kubeconfig), None)
            .await
            .unwrap();
        let from_setter = local().with_insecure_skip_tls_verify(true);
        for config in [from_file, from_setter] {
            assert!(config.insecure_skip_tls_verify());
            let (_, logs) = captured(|| config.build().unwrap());
            let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
            assert_eq!(warnings.len(), 1, "{logs}");
            assert!(
                warnings[0].contains("TLS verification of the API server is off")
                    && warnings[0].contains("https://127.0.0.1:6443"),
                "{logs}"
            );
        }
        assert!(
            !local()
                .with_insecure_skip_tls_verify(true)
                .with_insecure_skip_tls_verify(false)
                .insecure_skip_tls_verify()
        );
    }

    #[test]
    fn setters_and_getters_pair_up() {
        let config = local()
            .with_qps(50.0)
            .with_burst(100)
            .with_timeout(Duration::from_secs(30))
            .with_user_agent("ua")
            .with_default_namespace("team-b");
        assert_eq!((config.qps(), config.burst()), (50.0, 100));
        assert_eq!(config.timeout(), Some(Duration::from_secs(30)));
        assert_eq!(config.user_agent(), "ua");
        assert_eq!(config.default_namespace(), "team-b");
    }
}
