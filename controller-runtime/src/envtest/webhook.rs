//! Installing webhooks that point the API server at a local webhook server: controller-runtime's
//! envtest `WebhookInstallOptions`.
//!
//! [`WebhookInstallOptions::install`] picks a local port, generates a CA and a serving
//! certificate for `127.0.0.1` and `localhost`, writes `tls.crt` / `tls.key` into a folder, and
//! creates the given `MutatingWebhookConfiguration`s, `ValidatingWebhookConfiguration`s and
//! CRDs with their `clientConfig` rewritten to `https://127.0.0.1:<port><path>` and the CA as
//! `caBundle`. The webhook server (the manager's, see [`crate::webhook`]) then serves on that
//! port with the certificates from that folder.
//!
//! The API server must be able to reach the address: with a control plane envtest started, it
//! always can. With `USE_EXISTING_CLUSTER=true` it can only if the cluster's API server runs on
//! this host's network: a kind cluster's API server runs in a container, where `127.0.0.1` is the
//! container itself. For such a cluster, listen on an address the container can reach
//! ([`WebhookInstallOptions::host`], e.g. `0.0.0.0`) and name it in the URLs
//! ([`WebhookInstallOptions::external_name`], e.g. the Docker bridge's gateway address).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, WebhookConversion,
};
use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::certs::WebhookCa;
use super::error::{Error, Result, io};

/// The path of the conversion webhook when a CRD does not name one (controller-runtime's).
pub const DEFAULT_CONVERSION_PATH: &str = "/convert";

/// The name of the serving certificate in the certificate folder (controller-runtime's default).
pub const CERT_FILE: &str = "tls.crt";

/// The name of the serving key in the certificate folder (controller-runtime's default).
pub const KEY_FILE: &str = "tls.key";

/// What to install and where the webhook server will listen.
///
/// A webhook's `clientConfig` names the path it is served at: `service.path` (the service
/// itself is dropped, as controller-runtime's envtest does) or a `url` that is just a path
/// (`/validate-…`). A `url` with a scheme and host is left as it is, and gets no `caBundle`.
/// A CRD's conversion webhook is served at its `spec.conversion.webhook.clientConfig`'s path,
/// or [`DEFAULT_CONVERSION_PATH`].
///
/// The API server must be able to reach the webhook server: with a control plane envtest
/// started, it always can. With `USE_EXISTING_CLUSTER=true` it can only if the cluster's API
/// server runs on this host's network: a kind cluster's API server runs in a container, where
/// `127.0.0.1` is the container itself. For such a cluster, listen on an address the container
/// can reach ([`host`](Self::host), e.g. `0.0.0.0`) and name it in the URLs
/// ([`external_name`](Self::external_name), e.g. the kind network's gateway address).
///
/// ```no_run
/// # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use ferrokube_runtime::envtest::WebhookInstallOptions;
/// use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
///
/// let config: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "podcounts.example.com"},
///     "webhooks": [{
///         "name": "vpodcount.example.com",
///         "clientConfig": {"url": "/validate-example-com-v1-podcount"},
///         "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"],
///                    "operations": ["CREATE", "UPDATE"], "resources": ["podcounts"]}],
///         "admissionReviewVersions": ["v1"], "sideEffects": "None",
///     }],
/// }))?;
/// let webhooks = WebhookInstallOptions::default()
///     .validating(config)
///     .install(&client)
///     .await?;
/// println!("serve on port {} with the certificates in {}", webhooks.port(), webhooks.cert_dir().display());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WebhookInstallOptions {
    mutating: Vec<MutatingWebhookConfiguration>,
    validating: Vec<ValidatingWebhookConfiguration>,
    conversion_crds: Vec<CustomResourceDefinition>,
    host: IpAddr,
    port: Option<u16>,
    external_name: Option<String>,
    cert_dir: Option<PathBuf>,
    max_time: Duration,
    poll_interval: Duration,
}

impl Default for WebhookInstallOptions {
    fn default() -> Self {
        Self {
            mutating: Vec::new(),
            validating: Vec::new(),
            conversion_crds: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            external_name: None,
            cert_dir: None,
            max_time: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl WebhookInstallOptions {
    /// A `MutatingWebhookConfiguration` to create (or update, if one has its name).
    #[must_use]
    pub fn mutating(mut self, config: MutatingWebhookConfiguration) -> Self {
        self.mutating.push(config);
        self
    }

    /// A `ValidatingWebhookConfiguration` to create (or update, if one has its name).
    #[must_use]
    pub fn validating(mut self, config: ValidatingWebhookConfiguration) -> Self {
        self.validating.push(config);
        self
    }

    /// A CRD to create (or update) with a conversion webhook:
    /// `spec.conversion = {strategy: Webhook, webhook: {clientConfig: {url, caBundle},
    /// conversionReviewVersions}}` (`["v1"]` unless the CRD names them). The installation waits
    /// until it is `Established`.
    #[must_use]
    pub fn conversion_crd(mut self, crd: CustomResourceDefinition) -> Self {
        self.conversion_crds.push(crd);
        self
    }

    /// The address the webhook server will listen on (default `127.0.0.1`), and the host of the
    /// URLs unless [`external_name`](Self::external_name) is set.
    #[must_use]
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// The port the webhook server will listen on (default: a free port, picked at install).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The host name or address the API server uses to reach the webhook server (default: the
    /// [`host`](Self::host)); the serving certificate names it too.
    #[must_use]
    pub fn external_name(mut self, name: impl Into<String>) -> Self {
        self.external_name = Some(name.into());
        self
    }

    /// The folder to write `tls.crt` and `tls.key` into (created if missing, kept afterwards).
    /// By default a temporary folder, removed when the [`WebhookInstallation`] is dropped.
    #[must_use]
    pub fn cert_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cert_dir = Some(dir.into());
        self
    }

    /// How long to wait for the CRDs to be `Established` (default 10 s).
    #[must_use]
    pub fn max_time(mut self, max_time: Duration) -> Self {
        self.max_time = max_time;
        self
    }

    /// How often to check while waiting (default 100 ms).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether there is anything to install.
    pub fn is_empty(&self) -> bool {
        self.mutating.is_empty() && self.validating.is_empty() && self.conversion_crds.is_empty()
    }

    /// Generates the certificates, writes them, and creates (or updates) the configurations and
    /// CRDs through `client`. The API server starts calling the webhooks once its informers see
    /// the new configurations, typically well under a second later.
    pub async fn install(self, client: &kube::Client) -> Result<WebhookInstallation> {
        let port = match self.port {
            Some(port) => port,
            None => free_port(self.host)?,
        };
        let url_host = self
            .external_name
            .clone()
            .unwrap_or_else(|| self.host.to_string());
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        for name in [self.host.to_string(), url_host.clone()] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let ca = WebhookCa::generate(names)?;
        let cert_dir = match &self.cert_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                CertDir::Given(dir.clone())
            }
            None => CertDir::Temporary(
                tempfile::Builder::new()
                    .prefix("ferrokube-envtest-webhook-")
                    .tempdir()
                    .map_err(io("creating the webhook certificate folder"))?,
            ),
        };
        let installation = WebhookInstallation {
            host: self.host,
            port,
            base_url: base_url(&url_host, port),
            ca_pem: ca.pem(),
            ca,
            cert_dir,
            mutating: Vec::new(),
            validating: Vec::new(),
            crds: Vec::new(),
        };
        installation.rotate_serving_cert()?;
        self.create_all(client, installation).await
    }

    async fn create_all(
        self,
        client: &kube::Client,
        mut installation: WebhookInstallation,
    ) -> Result<WebhookInstallation> {
        let (base, ca) = (installation.base_url.clone(), installation.ca_pem.clone());
        for mut config in self.mutating {
            for hook in config.webhooks.iter_mut().flatten() {
                point_at(&mut hook.client_config, &hook.name, &base, &ca)?;
            }
            let name = ensure_created(&Api::all(client.clone()), config).await?;
            installation.mutating.push(name);
        }
        for mut config in self.validating {
            for hook in config.webhooks.iter_mut().flatten() {
                point_at(&mut hook.client_config, &hook.name, &base, &ca)?;
            }
            let name = ensure_created(&Api::all(client.clone()), config).await?;
            installation.validating.push(name);
        }
        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        for mut crd in self.conversion_crds {
            set_conversion(&mut crd, &base, &ca);
            let name = ensure_created(&crds, crd).await?;
            installation.crds.push(name);
        }
        for name in &installation.crds {
            wait_established(&crds, name, self.max_time, self.poll_interval).await?;
        }
        tracing::debug!(url = %installation.base_url, dir = %installation.cert_dir().display(), "webhooks installed");
        Ok(installation)
    }
}

/// `https://host:port`, with an IPv6 address in brackets.
fn base_url(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{port}"),
        _ => format!("https://{host}:{port}"),
    }
}

/// A free TCP port on `host` (free a moment ago).
fn free_port(host: IpAddr) -> Result<u16> {
    let listener = std::net::TcpListener::bind((host, 0))
        .map_err(io(format!("binding a free port on {host}")))?;
    Ok(listener
        .local_addr()
        .map_err(io("reading a bound port"))?
        .port())
}

/// `path` with a leading `/`.
fn absolute_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// Points an admission webhook's client config at `base` + its path, trusting `ca`.
fn point_at(config: &mut WebhookClientConfig, webhook: &str, base: &str, ca: &str) -> Result<()> {
    let path = match (&config.service, &config.url) {
        (Some(service), _) => match &service.path {
            Some(path) => absolute_path(path),
            None => {
                return Err(Error::WebhookClientConfig {
                    webhook: webhook.to_owned(),
                    reason: "clientConfig.service has no path".to_owned(),
                });
            }
        },
        (None, Some(url)) if url.starts_with('/') => url.clone(),
        (None, Some(url)) if url.contains("://") => return Ok(()),
        (None, Some(url)) => {
            return Err(Error::WebhookClientConfig {
                webhook: webhook.to_owned(),
                reason: format!("clientConfig.url {url:?} is neither a path nor a URL"),
            });
        }
        (None, None) => {
            return Err(Error::WebhookClientConfig {
                webhook: webhook.to_owned(),
                reason: "clientConfig names neither a service path nor a url".to_owned(),
            });
        }
    };
    config.service = None;
    config.url = Some(format!("{base}{path}"));
    config.ca_bundle = Some(ByteString(ca.as_bytes().to_vec()));
    Ok(())
}

/// Sets the CRD's conversion to the webhook at `base` + its path (default `/convert`).
fn set_conversion(crd: &mut CustomResourceDefinition, base: &str, ca: &str) {
    let previous = crd.spec.conversion.take().and_then(|c| c.webhook);
    let path = previous
        .as_ref()
        .and_then(|w| w.client_config.as_ref())
        .and_then(|c| match (&c.service, &c.url) {
            (Some(service), _) => service.path.as_deref().map(absolute_path),
            (None, Some(url)) if url.starts_with('/') => Some(url.clone()),
            _ => None,
        })
        .unwrap_or_else(|| DEFAULT_CONVERSION_PATH.to_owned());
    let review_versions = previous
        .map(|w| w.conversion_review_versions)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["v1".to_owned()]);
    crd.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".to_owned(),
        webhook: Some(WebhookConversion {
            client_config: Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::WebhookClientConfig {
                    ca_bundle: Some(ByteString(ca.as_bytes().to_vec())),
                    service: None,
                    url: Some(format!("{base}{path}")),
                },
            ),
            conversion_review_versions: review_versions,
        }),
    });
}

/// Creates `object`, or replaces the one with its name (controller-runtime's `ensureCreated`).
async fn ensure_created<K>(api: &Api<K>, mut object: K) -> Result<String>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let kind = K::kind(&());
    let name = object.meta().name.clone().unwrap_or_default();
    let failed = |source| Error::Install {
        what: format!("{kind} {name}"),
        source,
    };
    match api.get_opt(&name).await.map_err(failed)? {
        None => {
            api.create(&PostParams::default(), &object)
                .await
                .map_err(failed)?;
        }
        Some(existing) => {
            tracing::debug!(%kind, %name, "already exists, updating");
            object.meta_mut().resource_version = existing.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &object)
                .await
                .map_err(failed)?;
        }
    }
    Ok(name)
}

/// Waits until the CRD `name` has the condition `Established=True`.
async fn wait_established(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
    max_time: Duration,
    interval: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let crd = crds.get(name).await.map_err(|source| Error::Install {
            what: format!("CustomResourceDefinition {name}"),
            source,
        })?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if start.elapsed() > max_time {
            return Err(Error::NotEstablished {
                crd: name.to_owned(),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Installed webhooks: where the webhook server must listen and find its certificates.
///
/// Dropping it removes a temporary certificate folder; the configurations stay until
/// [`uninstall`](Self::uninstall) (or the control plane stops).
#[derive(Debug)]
#[must_use = "dropping the installation removes the certificate folder"]
pub struct WebhookInstallation {
    host: IpAddr,
    port: u16,
    base_url: String,
    ca: WebhookCa,
    ca_pem: String,
    cert_dir: CertDir,
    mutating: Vec<String>,
    validating: Vec<String>,
    crds: Vec<String>,
}

#[derive(Debug)]
enum CertDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

// === impl WebhookInstallation ===

impl WebhookInstallation {
    /// The address the webhook server must listen on.
    pub fn host(&self) -> IpAddr {
        self.host
    }

    /// The port the webhook server must listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address the webhook server must listen on.
    pub fn address(&self) -> std::net::SocketAddr {
        (self.host, self.port).into()
    }

    /// The folder holding `tls.crt` and `tls.key` (controller-runtime's `LocalServingCertDir`).
    pub fn cert_dir(&self) -> &Path {
        match &self.cert_dir {
            CertDir::Temporary(dir) => dir.path(),
            CertDir::Given(dir) => dir,
        }
    }

    /// The CA (PEM) that signed the serving certificates: the `caBundle` of the configurations.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The URL the API server calls for `path`, e.g. `https://127.0.0.1:38211/convert`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, absolute_path(path))
    }

    /// The serving certificate (PEM) currently in the folder.
    pub fn serving_cert_pem(&self) -> Result<String> {
        let path = self.cert_dir().join(CERT_FILE);
        std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))
    }

    /// Issues a new serving certificate and key from the same CA and replaces both files at
    /// once, as the kubelet updates a mounted Secret (what cert-manager's rotation looks like to
    /// a pod): `tls.crt` and `tls.key` are links into `..data`, a link to a folder holding the
    /// pair, and a rotation writes a new folder and renames a new `..data` link over the old.
    /// A reader never sees a new certificate with an old key.
    pub fn rotate_serving_cert(&self) -> Result<()> {
        let pair = self.ca.issue()?;
        write_pair(self.cert_dir(), &pair.cert, &pair.key)
    }

    /// Deletes the webhook configurations this installation created (CRDs stay: they are the
    /// API, and deleting one deletes its objects). Ones already gone are skipped.
    pub async fn uninstall(&self, client: &kube::Client) -> Result<()> {
        let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone());
        for name in &self.mutating {
            delete_if_present(&mutating, name).await?;
        }
        let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone());
        for name in &self.validating {
            delete_if_present(&validating, name).await?;
        }
        Ok(())
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Install {
            what: format!("deleting {} {name}", K::kind(&())),
            source,
        }),
    }
}

/// The link every file points through, swapped atomically on rotation.
const DATA_LINK: &str = "..data";

/// Writes `cert` and `key` into a new `..<generation>` folder of `dir` and switches `..data`
/// (and so `tls.crt` and `tls.key`) to it in one rename.
fn write_pair(dir: &Path, cert: &str, key: &str) -> Result<()> {
    use std::os::unix::fs::{PermissionsExt, symlink};

    let mut generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let (folder_name, folder) = loop {
        let name = format!("..{generation}");
        let folder = dir.join(&name);
        match std::fs::create_dir(&folder) {
            Ok(()) => break (name, folder),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => generation += 1,
            Err(e) => return Err(io(format!("creating {}", folder.display()))(e)),
        }
    };
    for (name, contents, mode) in [(CERT_FILE, cert, 0o644), (KEY_FILE, key, 0o600)] {
        let path = folder.join(name);
        std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("setting the mode of {}", path.display())))?;
    }
    let previous = std::fs::read_link(dir.join(DATA_LINK)).ok();
    let new_link = dir.join(format!("{DATA_LINK}_tmp"));
    let _ = std::fs::remove_file(&new_link);
    symlink(&folder_name, &new_link).map_err(io(format!("linking {}", new_link.display())))?;
    std::fs::rename(&new_link, dir.join(DATA_LINK))
        .map_err(io(format!("switching {} to {folder_name}", dir.display())))?;
    for name in [CERT_FILE, KEY_FILE] {
        let path = dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if std::fs::read_link(&path).ok().as_deref() != Some(target.as_path()) {
            let tmp = dir.join(format!("{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            symlink(&target, &tmp).map_err(io(format!("linking {}", tmp.display())))?;
            std::fs::rename(&tmp, &path).map_err(io(format!("replacing {}", path.display())))?;
        }
    }
    if let Some(old) = previous.filter(|old| old != Path::new(&folder_name)) {
        let old = dir.join(old);
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::debug!(folder = %old.display(), error = %e, "could not remove old certificates");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::admissionregistration::v1::ServiceReference;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

    use super::*;

    const BASE: &str = "https://127.0.0.1:9443";

    fn service(path: Option<&str>) -> WebhookClientConfig {
        WebhookClientConfig {
            service: Some(ServiceReference {
                name: "webhook-service".to_owned(),
                namespace: "system".to_owned(),
                path: path.map(str::to_owned),
                port: Some(443),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_path_becomes_a_local_url_with_the_ca() {
        let mut config = service(Some("/mutate-example-com-v1-podcount"));
        point_at(&mut config, "m.example.com", BASE, "CA").unwrap();
        assert_eq!(
            config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate-example-com-v1-podcount")
        );
        assert_eq!(config.service, None);
        assert_eq!(config.ca_bundle, Some(ByteString(b"CA".to_vec())));

        let mut relative = service(Some("validate"));
        point_at(&mut relative, "v.example.com", BASE, "CA").unwrap();
        assert_eq!(
            relative.url.as_deref(),
            Some("https://127.0.0.1:9443/validate")
        );
    }

    #[test]
    fn url_path_becomes_a_local_url_and_a_full_url_is_kept() {
        let mut path = WebhookClientConfig {
            url: Some("/validate-x".to_owned()),
            ..Default::default()
        };
        point_at(&mut path, "v", BASE, "CA").unwrap();
        assert_eq!(
            path.url.as_deref(),
            Some("https://127.0.0.1:9443/validate-x")
        );
        assert!(path.ca_bundle.is_some());

        let full = WebhookClientConfig {
            url: Some("https://hooks.example.com/validate".to_owned()),
            ..Default::default()
        };
        let mut kept = full.clone();
        point_at(&mut kept, "v", BASE, "CA").unwrap();
        assert_eq!(kept, full);
    }

    #[test]
    fn a_client_config_without_a_path_is_named_in_the_error() {
        for (config, reason) in [
            (service(None), "service has no path"),
            (
                WebhookClientConfig::default(),
                "neither a service path nor a url",
            ),
            (
                WebhookClientConfig {
                    url: Some("validate".to_owned()),
                    ..Default::default()
                },
                "neither a path nor a URL",
            ),
        ] {
            let mut config = config;
            let err = point_at(&mut config, "vpodcount.example.com", BASE, "CA").unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("vpodcount.example.com") && message.contains(reason),
                "{message}"
            );
        }
    }

    fn crd(conversion: Option<serde_json::Value>) -> CustomResourceDefinition {
        let mut spec = serde_json::json!({
            "group": "example.com",
            "names": {"kind": "PodCount", "plural": "podcounts"},
            "scope": "Namespaced",
            "versions": [],
        });
        if let Some(conversion) = conversion {
            spec["conversion"] = conversion;
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "podcounts.example.com"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn conversion_defaults_to_convert_and_review_v1() {
        let mut crd = crd(None);
        set_conversion(&mut crd, BASE, "CA");
        let conversion = serde_json::to_value(&crd.spec.conversion).unwrap();
        assert_eq!(
            conversion,
            serde_json::json!({
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "url": "https://127.0.0.1:9443/convert",
                        "caBundle": "Q0E=",
                    },
                    "conversionReviewVersions": ["v1"],
                },
            })
        );
    }

    #[test]
    fn conversion_keeps_a_named_path_and_review_versions() {
        let mut crd = crd(Some(serde_json::json!({
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"service": {"name": "s", "namespace": "n", "path": "/convert-podcount"}},
                "conversionReviewVersions": ["v1", "v1beta1"],
            },
        })));
        set_conversion(&mut crd, BASE, "CA");
        let webhook = crd.spec.conversion.unwrap().webhook.unwrap();
        let config = webhook.client_config.unwrap();
        assert_eq!(
            config.url.as_deref(),
            Some("https://127.0.0.1:9443/convert-podcount")
        );
        assert_eq!(config.service, None);
        assert_eq!(webhook.conversion_review_versions, ["v1", "v1beta1"]);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(base_url("::1", 9443), "https://[::1]:9443");
        assert_eq!(base_url("127.0.0.1", 9443), "https://127.0.0.1:9443");
        assert_eq!(base_url("host.internal", 1), "https://host.internal:1");
    }

    #[test]
    fn rotation_replaces_both_files_and_removes_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "cert-1", "key-1").unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            (read(CERT_FILE), read(KEY_FILE)),
            ("cert-1".into(), "key-1".into())
        );
        let first = std::fs::read_link(dir.path().join(DATA_LINK)).unwrap();

        write_pair(dir.path(), "cert-2", "key-2").unwrap();
        assert_eq!(
            (read(CERT_FILE), read(KEY_FILE)),
            ("cert-2".into(), "key-2".into())
        );
        assert!(!dir.path().join(&first).exists(), "old pair left behind");
        let mut entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(entries.len(), 4, "{entries:?}"); // ..<gen>, ..data, tls.crt, tls.key
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn regular_files_in_a_given_folder_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "old").unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "old").unwrap();
        write_pair(dir.path(), "cert", "key").unwrap();
        let cert = std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
        assert_eq!(cert, "cert");
    }

    /// A TLS handshake over an in-memory pipe: the server presents `cert`/`key`, the client
    /// trusts only `ca` and connects to `name`.
    async fn handshake(ca: &str, cert: &str, key: &str, name: &str) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let (server, client) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        // The client's verdict, as the rustls error's variant (`InvalidCertificate(…)`).
        client.map_err(|e| match e.get_ref() {
            Some(inner) => format!("{inner:?}"),
            None => e.to_string(),
        })?;
        server.map_err(|e| e.to_string())?;
        Ok(())
    }

    #[tokio::test]
    async fn serving_certificates_are_trusted_through_the_ca_for_every_name() {
        let ca = WebhookCa::generate(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "host.internal".to_owned(),
        ])
        .unwrap();
        let first = ca.issue().unwrap();
        let second = ca.issue().unwrap();
        assert_ne!(first.cert, second.cert);
        assert_ne!(first.key, second.key);
        for pair in [&first, &second] {
            for name in ["localhost", "127.0.0.1", "host.internal"] {
                handshake(&ca.pem(), &pair.cert, &pair.key, name)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let err = handshake(&ca.pem(), &first.cert, &first.key, "other.example.com")
            .await
            .unwrap_err();
        assert!(err.contains("NotValidForName"), "{err}");

        let other_ca = WebhookCa::generate(vec!["localhost".to_owned()]).unwrap();
        let err = handshake(&other_ca.pem(), &first.cert, &first.key, "localhost")
            .await
            .unwrap_err();
        // Both CAs have the same name: the signature does not verify.
        assert!(
            err.contains("BadSignature") || err.contains("UnknownIssuer"),
            "{err}"
        );
    }
}
