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

mod options;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

pub use self::options::{
    DEFAULT_CERT_POLL_INTERVAL, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, DEFAULT_READ_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT, Options,
};
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
}

/// A registered webhook: its handler and its series.
#[derive(Clone)]
#[allow(dead_code)] // read by the serving loop, in the next commit
struct Route {
    handler: Arc<dyn Handler>,
    metrics: WebhookMetrics,
}

/// The state every clone of a [`WebhookServer`] shares.
struct Shared {
    options: Options,
    metrics: Metrics,
    routes: RwLock<BTreeMap<String, Route>>,
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
    #[allow(dead_code)] // used by the serving loop, in the next commit
    fn route(&self, path: &str) -> Option<Route> {
        self.shared.routes.read().get(path).cloned()
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::webhook::{Reply, ReplyFuture};

    struct Echo;

    impl Handler for Echo {
        fn handle(&self, body: Bytes) -> ReplyFuture<'_> {
            Box::pin(async move { Reply::ok(body) })
        }
    }

    #[tokio::test]
    async fn register_checks_paths() {
        let server = WebhookServer::new(Options::default(), Metrics::new());
        server.register("/validate", Echo).unwrap();
        server.clone().register("/mutate", Echo).unwrap();
        assert!(matches!(
            server.register("/validate", Echo),
            Err(Error::DuplicatePath { path }) if path == "/validate"
        ));
        for bad in ["", "validate", "/a b", "/a?b", "/a#b", "/a\n"] {
            assert!(
                matches!(server.register(bad, Echo), Err(Error::InvalidPath { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(server.paths(), ["/mutate", "/validate"]);
        let reply = server
            .route("/validate")
            .unwrap()
            .handler
            .handle(Bytes::from_static(b"{}"))
            .await;
        assert_eq!(reply, Reply::ok(Bytes::from_static(b"{}")));
        assert!(server.route("/validate/").is_none());
    }
}
