//! [`Options`]: where the webhook server listens, where its certificate is, and its limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// controller-runtime's default webhook port.
pub const DEFAULT_PORT: u16 = 9443;

/// controller-runtime's limit on a webhook request body (7 MiB); larger requests get `413`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// How long a client may take to send a request's headers and its body, by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the certificate files are read to notice a rotation, by default (controller-runtime's
/// certwatcher polls every 10 s besides watching the files).
pub const DEFAULT_CERT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How long in-flight requests may finish after shutdown, by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How the webhook server runs (controller-runtime's `webhook.Options`).
///
/// Defaults: all interfaces, port [`DEFAULT_PORT`] (9443), certificates in
/// `$TMPDIR/k8s-webhook-server/serving-certs` as `tls.crt` and `tls.key`, a
/// [`DEFAULT_MAX_BODY_BYTES`] (7 MiB) body limit, a [`DEFAULT_READ_TIMEOUT`] (30 s) read timeout,
/// certificate files checked every [`DEFAULT_CERT_POLL_INTERVAL`] (10 s).
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) cert_dir: PathBuf,
    pub(crate) cert_name: String,
    pub(crate) key_name: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) read_timeout: Duration,
    pub(crate) cert_poll_interval: Duration,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            cert_dir: std::env::temp_dir()
                .join("k8s-webhook-server")
                .join("serving-certs"),
            cert_name: "tls.crt".to_owned(),
            key_name: "tls.key".to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            read_timeout: DEFAULT_READ_TIMEOUT,
            cert_poll_interval: DEFAULT_CERT_POLL_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl Options {
    /// The address to listen on (default `0.0.0.0`, every interface).
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// The port to listen on (default 9443; 0 picks a free one, see
    /// [`WebhookServer::local_addr`](super::WebhookServer::local_addr)).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The directory holding the serving certificate and key (default
    /// `$TMPDIR/k8s-webhook-server/serving-certs`).
    pub fn cert_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cert_dir = dir.into();
        self
    }

    /// The certificate chain's file name in the directory (default `tls.crt`, PEM).
    pub fn cert_name(mut self, name: impl Into<String>) -> Self {
        self.cert_name = name.into();
        self
    }

    /// The private key's file name in the directory (default `tls.key`, PEM: PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn key_name(mut self, name: impl Into<String>) -> Self {
        self.key_name = name.into();
        self
    }

    /// The largest request body accepted (default 7 MiB); a larger one is answered `413`
    /// without being read to its end.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// How long a client may take for the TLS handshake, then to send a request's headers,
    /// then its body (default 30 s each); a body that takes longer gets `408`, a handshake or
    /// headers that do get the connection closed.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How often the certificate files are read to notice a rotation (default 10 s).
    pub fn cert_poll_interval(mut self, interval: Duration) -> Self {
        self.cert_poll_interval = interval;
        self
    }

    /// How long in-flight requests may finish after shutdown before their connections are
    /// closed (default 30 s; the manager's graceful shutdown timeout also bounds it).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The address the server binds.
    pub fn bind_address(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The certificate directory.
    pub fn cert_dir_path(&self) -> &Path {
        &self.cert_dir
    }

    /// The certificate chain's path.
    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.join(&self.cert_name)
    }

    /// The private key's path.
    pub fn key_path(&self) -> PathBuf {
        self.cert_dir.join(&self.key_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_controller_runtimes() {
        let options = Options::default();
        assert_eq!(
            options.bind_address(),
            SocketAddr::from(([0, 0, 0, 0], 9443))
        );
        let dir = std::env::temp_dir().join("k8s-webhook-server/serving-certs");
        assert_eq!(options.cert_path(), dir.join("tls.crt"));
        assert_eq!(options.key_path(), dir.join("tls.key"));
        assert_eq!(options.max_body_bytes, 7 * 1024 * 1024);

        let options = Options::default()
            .host(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(0)
            .cert_dir("/certs")
            .cert_name("a.pem")
            .key_name("b.pem");
        assert_eq!(
            options.bind_address(),
            SocketAddr::from(([127, 0, 0, 1], 0))
        );
        assert_eq!(options.cert_path(), Path::new("/certs/a.pem"));
        assert_eq!(options.key_path(), Path::new("/certs/b.pem"));
    }
}
