//! The webhook server: HTTPS on its own port, one [`Handler`] per path, the serving certificate
//! reloaded when its files change (controller-runtime's `pkg/webhook` server and
//! `pkg/certwatcher`).
//!
//! | request | answer |
//! |---|---|
//! | `POST <registered path>`, `Content-Type: application/json` | the handler's [`Reply`](super::Reply), `application/json` |
//! | a body over [`Options::max_body_bytes`] (7 MiB) | `413`, without reading the rest |
//! | headers or body slower than [`Options::read_timeout`] | connection closed (headers) or `408` (body) |
//! | another content type | `400` |
//! | another method | `405` (`Allow: POST`) |
//! | an unregistered path | `404` |
//!
//! Each registered path has controller-runtime's series in the [`Metrics`] registry:
//! `controller_runtime_webhook_requests_total{webhook,code}`,
//! `controller_runtime_webhook_latency_seconds{webhook}` and
//! `controller_runtime_webhook_requests_in_flight{webhook}`, `webhook` being the path.
//!
//! The [`Manager`](crate::manager::Manager) runs one when configured with
//! [`ManagerOptions::webhook_server`](crate::manager::ManagerOptions::webhook_server); on its
//! own:
//!
//! ```no_run
//! use ferrokube_runtime::metrics::Metrics;
//! use ferrokube_runtime::webhook::server::{Options, WebhookServer};
//! use ferrokube_runtime::webhook::{Handler, Reply, ReplyFuture};
//! use tokio_util::sync::CancellationToken;
//!
//! struct AllowAll;
//!
//! impl Handler for AllowAll {
//!     fn handle(&self, body: bytes::Bytes) -> ReplyFuture<'_> {
//!         Box::pin(async move { Reply::ok(body) }) // a real handler answers a review
//!     }
//! }
//!
//! # async fn demo() -> Result<(), ferrokube_runtime::webhook::server::Error> {
//! let server = WebhookServer::new(
//!     Options::default().cert_dir("/var/run/webhook-certs"),
//!     Metrics::new(),
//! );
//! server.register("/validate-example-com-v1-widget", AllowAll)?;
//! // Reads tls.crt and tls.key now (a missing or bad file fails here) and binds :9443.
//! let bound = server.bind().await?;
//! println!("serving webhooks on {}", bound.local_addr());
//! let shutdown = CancellationToken::new();
//! tokio::spawn(bound.serve(shutdown.clone()));
//! // … later: stop accepting, let in-flight requests finish.
//! shutdown.cancel();
//! # Ok(()) }
//! ```

mod certwatcher;
mod options;
mod serve;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

pub use self::certwatcher::CertWatcher;
pub use self::options::{
    DEFAULT_CERT_POLL_INTERVAL, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, DEFAULT_READ_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT, Options,
};
pub use self::serve::BoundServer;
use super::Handler;
use crate::metrics::{Metrics, WebhookMetrics};

/// What can go wrong registering a webhook or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A webhook is already registered at this path.
    #[error("a webhook is already registered at {path:?}")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// The path cannot be a webhook path.
    #[error("invalid webhook path {path:?}: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server was already bound (it runs once).
    #[error("the webhook server has already been started")]
    AlreadyStarted,
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr} for webhooks")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read the webhook serving certificate file {}", path.display())]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// A certificate or key file holds no usable certificate or key.
    #[error("invalid webhook serving certificate file {}: {reason}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the certificate's.
    #[error("the private key {} does not match the certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// TLS could not be set up with the certificate.
    #[error("cannot set up TLS for the webhook server: {reason}")]
    Tls {
        /// What rustls said.
        reason: String,
    },
}

/// A registered webhook: its handler and its series.
#[derive(Clone)]
struct Route {
    handler: Arc<dyn Handler>,
    metrics: WebhookMetrics,
}

/// The state every clone of a [`WebhookServer`] shares.
struct Shared {
    options: Options,
    metrics: Metrics,
    routes: RwLock<BTreeMap<String, Route>>,
    started: AtomicBool,
    listening: AtomicBool,
    local_addr: Mutex<Option<SocketAddr>>,
}

// === impl WebhookServer ===

/// The webhook server: a handle to register webhooks on, then to run. Cheap to clone: clones
/// share the handlers, and a handler registered while the server runs is served at once.
#[derive(Clone)]
pub struct WebhookServer {
    shared: Arc<Shared>,
}

impl fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookServer")
            .field("options", &self.shared.options)
            .field("paths", &self.paths())
            .finish_non_exhaustive()
    }
}

impl WebhookServer {
    /// A server with these options, counting requests in `metrics`.
    pub fn new(options: Options, metrics: Metrics) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                metrics,
                routes: RwLock::new(BTreeMap::new()),
                started: AtomicBool::new(false),
                listening: AtomicBool::new(false),
                local_addr: Mutex::new(None),
            }),
        }
    }

    /// The server's options.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Serves `handler` at `path` (exact match; e.g. `/validate-example-com-v1-widget`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPath`] if `path` does not start with `/` or holds a space, control
    /// character, `?` or `#`; [`Error::DuplicatePath`] if a webhook is already registered there.
    pub fn register(&self, path: impl Into<String>, handler: impl Handler) -> Result<(), Error> {
        let path = path.into();
        validate_path(&path)?;
        let mut routes = self.shared.routes.write();
        if routes.contains_key(&path) {
            return Err(Error::DuplicatePath { path });
        }
        let route = Route {
            handler: Arc::new(handler),
            metrics: self.shared.metrics.webhook(&path),
        };
        tracing::info!(%path, "registering webhook");
        routes.insert(path, route);
        Ok(())
    }

    /// The registered paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.shared.routes.read().keys().cloned().collect()
    }

    /// The webhook at `path`, if any.
    fn route(&self, path: &str) -> Option<Route> {
        self.shared.routes.read().get(path).cloned()
    }

    /// Loads the certificate and binds the address now, so that a bad certificate or a taken
    /// port fails at start (port 0 picks a free one, see [`BoundServer::local_addr`]).
    /// Nothing is served until [`BoundServer::serve`].
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] the second time; a certificate error naming the file
    /// ([`Error::ReadCertificate`], [`Error::InvalidCertificate`], [`Error::KeyMismatch`]);
    /// [`Error::Bind`].
    pub async fn bind(&self) -> Result<BoundServer, Error> {
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        let bound = BoundServer::bind(self.clone()).await;
        if bound.is_err() {
            // Nothing runs: a later attempt (e.g. once the certificate is written) may bind.
            self.shared.started.store(false, Ordering::Release);
        }
        bound
    }

    /// [`bind`](Self::bind)s and [`serve`](BoundServer::serve)s until `shutdown` is cancelled
    /// (controller-runtime's `Start`).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub async fn start(&self, shutdown: CancellationToken) -> Result<(), Error> {
        self.bind().await?.serve(shutdown).await
    }

    /// Where the server listens, once bound (with the port picked when binding port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.shared.local_addr.lock()
    }

    /// Whether the server accepts connections now (from [`BoundServer::serve`] until shutdown).
    pub fn is_listening(&self) -> bool {
        self.shared.listening.load(Ordering::Acquire)
    }

    /// A readiness check that fails until the server accepts connections (controller-runtime's
    /// `StartedChecker`); the manager adds it to `/readyz` as `webhook`.
    #[doc(alias = "StartedChecker")]
    pub fn started_checker(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let server = self.clone();
        move || {
            if server.is_listening() {
                Ok(())
            } else {
                Err("the webhook server is not listening yet".to_owned())
            }
        }
    }
}

fn validate_path(path: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return invalid("a webhook path starts with '/'");
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return invalid("spaces, control characters, '?' and '#' are not allowed");
    }
    Ok(())
}
