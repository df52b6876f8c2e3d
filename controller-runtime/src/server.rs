//! The manager's one HTTP server: `/metrics`, `/healthz` and `/readyz` (controller-runtime's
//! metrics server, `pkg/healthz` and the manager's health probe server, on one port).
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | the [`Metrics`] registry, OpenMetrics text |
//! | `GET /healthz`, `GET /readyz` | `200 ok` when every check passes; otherwise `500` and one line per check |
//! | `…?verbose` | one line per check (`[+]name ok`, `[-]name failed: reason withheld`) even on success |
//! | `…?exclude=name` (repeatable) | skips that check (`[+]name excluded: ok`) |
//! | `GET /healthz/<name>`, `GET /readyz/<name>` | runs that one check: `200 ok`, `500` with its error, `404` if unknown |
//! | anything else | `404`; methods other than `GET` and `HEAD` get `405` |
//!
//! With no check registered, a set answers as if it held one check `ping` that always passes
//! (controller-runtime installs `healthz.Ping` the same way).
//!
//! ```no_run
//! use std::sync::Arc;
//! use ferrokube_runtime::metrics::Metrics;
//! use ferrokube_runtime::server::{HealthChecks, Server};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), ferrokube_runtime::server::Error> {
//! let (healthz, readyz) = (HealthChecks::default(), HealthChecks::default());
//! healthz.add("ping", Arc::new(|| Ok(())))?;
//! readyz.add("cache-synced", Arc::new(|| Err("caches are still syncing".to_owned())))?;
//!
//! let server = Server::bind(([0, 0, 0, 0], 8080).into(), Metrics::new(), healthz, readyz).await?;
//! let shutdown = CancellationToken::new();
//! tokio::spawn(server.serve(shutdown.clone()));
//! // … later: stop accepting, let in-flight requests finish.
//! shutdown.cancel();
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};

/// How long [`Server::serve`] lets in-flight requests finish after shutdown, by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A health check: `Ok` when healthy, `Err(reason)` otherwise. Runs on the server's task for
/// each probe, so keep it quick and non-blocking.
pub type CheckFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What can go wrong setting up or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr} for metrics and health probes")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// A check of that name is already registered in this set.
    #[error("health check {name:?} is already registered")]
    DuplicateCheck {
        /// The check's name.
        name: String,
    },
    /// The name cannot be a check name (it is also a URL path segment).
    #[error("invalid health check name {name:?}: {reason}")]
    InvalidCheckName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

// === impl HealthChecks ===

/// A set of named health checks (`/healthz` or `/readyz`). Cheap to clone: clones share the
/// set, and checks added after the server started are served at once.
#[derive(Clone, Default)]
pub struct HealthChecks {
    checks: Arc<RwLock<BTreeMap<String, CheckFn>>>,
}

impl HealthChecks {
    /// Adds the check `name`, served at `<path>/<name>` and included in `<path>`.
    ///
    /// A name is non-empty and made of ASCII letters, digits, `-`, `_`, `.`, `~` and `:`
    /// (characters a URL path segment carries unescaped), and is not `.` or `..`.
    pub fn add(&self, name: &str, check: CheckFn) -> Result<(), Error> {
        validate_name(name)?;
        let mut checks = self.checks.write();
        if checks.contains_key(name) {
            return Err(Error::DuplicateCheck {
                name: name.to_owned(),
            });
        }
        checks.insert(name.to_owned(), check);
        Ok(())
    }

    /// The names of the registered checks, sorted.
    pub fn names(&self) -> Vec<String> {
        self.checks.read().keys().cloned().collect()
    }

    /// Whether no check is registered.
    pub fn is_empty(&self) -> bool {
        self.checks.read().is_empty()
    }

    /// The checks, sorted by name; the implicit `ping` when there are none. Cloned out so that
    /// no lock is held while checks run.
    fn snapshot(&self) -> Vec<(String, CheckFn)> {
        let checks = self.checks.read();
        if checks.is_empty() {
            return vec![("ping".to_owned(), Arc::new(|| Ok(())))];
        }
        checks
            .iter()
            .map(|(name, check)| (name.clone(), Arc::clone(check)))
            .collect()
    }

    /// One check by name (the implicit `ping` when there are none).
    fn get(&self, name: &str) -> Option<CheckFn> {
        self.snapshot()
            .into_iter()
            .find_map(|(n, check)| (n == name).then_some(check))
    }
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.checks.read().keys()).finish()
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidCheckName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("a relative path segment");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | ':');
    if !name.chars().all(allowed) {
        return invalid("only ASCII letters, digits, '-', '_', '.', '~' and ':' are allowed");
    }
    Ok(())
}

// === impl Server ===

/// The manager's HTTP/1 server for metrics and health probes, bound and ready to serve.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: Arc<Routes>,
    shutdown_timeout: Duration,
}

struct Routes {
    metrics: Metrics,
    healthz: HealthChecks,
    readyz: HealthChecks,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("healthz", &self.routes.healthz)
            .field("readyz", &self.routes.readyz)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` now, so that a taken port fails at start (and port 0 picks a free one, see
    /// [`Server::local_addr`]). Nothing is served until [`Server::serve`].
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        healthz: HealthChecks,
        readyz: HealthChecks,
    ) -> Result<Self, Error> {
        let bind_error = |source| Error::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            routes: Arc::new(Routes {
                metrics,
                healthz,
                readyz,
            }),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        })
    }

    /// How long [`Server::serve`] waits for in-flight requests after shutdown before closing
    /// their connections ([`DEFAULT_SHUTDOWN_TIMEOUT`] unless set).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The address the server listens on (with the port picked when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, closes idle connections and
    /// lets in-flight requests finish for up to the shutdown timeout before closing the rest.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Self {
            listener,
            local_addr,
            routes,
            shutdown_timeout,
        } = self;
        tracing::info!(addr = %local_addr, "serving metrics and health probes");
        let serve = |stream| serve_connection(stream, Arc::clone(&routes), shutdown.clone());
        accept_until(
            listener,
            &shutdown,
            shutdown_timeout,
            "metrics/health",
            serve,
            || (),
        )
        .await;
        tracing::info!(addr = %local_addr, "metrics and health probe server stopped");
        Ok(())
    }
}

/// Serves one connection; on shutdown, finishes the request in flight and closes.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let response = routes.handle(&req);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    serve_http1(
        stream,
        service,
        HEADER_READ_TIMEOUT,
        &shutdown,
        "metrics/health",
    )
    .await;
}

/// Accepts connections until `shutdown` is cancelled, each served by a task from `serve`; then
/// stops accepting, calls `stopped_accepting`, and lets the connections finish for up to
/// `timeout` before closing the rest. `what` names the server in logs. Shared by this server
/// and the webhook server.
pub(crate) async fn accept_until<F, Fut>(
    listener: TcpListener,
    shutdown: &CancellationToken,
    timeout: Duration,
    what: &'static str,
    mut serve: F,
    stopped_accepting: impl FnOnce(),
) where
    F: FnMut(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::trace!(%peer, "{what} connection");
                    connections.spawn(serve(stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a {what} connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    stopped_accepting();
    let drained = tokio::time::timeout(timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            ?timeout,
            "{what} requests still running at shutdown; closing their connections"
        );
        connections.shutdown().await;
    }
}

/// Serves HTTP/1 on one connection until the client closes it or, once `shutdown` is
/// cancelled, the request in flight is answered.
pub(crate) async fn serve_http1<I, S>(
    io: I,
    service: S,
    header_read_timeout: Duration,
    shutdown: &CancellationToken,
    what: &'static str,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "{what} connection ended with an error");
    }
}

// === routing ===

type Body = Full<Bytes>;

impl Routes {
    fn handle<B>(&self, req: &http::Request<B>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = req.uri().path();
        let query = Query::parse(req.uri().query());
        if path == "/metrics" {
            return self.metrics();
        }
        for (prefix, checks) in [("/healthz", &self.healthz), ("/readyz", &self.readyz)] {
            let Some(rest) = path.strip_prefix(prefix) else {
                continue;
            };
            if rest.is_empty() || rest == "/" {
                return aggregated(checks, &query);
            }
            if let Some(name) = rest.strip_prefix('/') {
                return single(checks, name.strip_suffix('/').unwrap_or(name));
            }
        }
        not_found()
    }

    fn metrics(&self) -> Response<Body> {
        match self.metrics.try_encode() {
            Ok(body) => {
                let mut response = Response::new(Body::from(body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                response
            }
            Err(error) => {
                // promhttp's HTTPErrorOnError, as controller-runtime configures it.
                tracing::warn!(%error, "serving /metrics");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("An error has occurred while serving metrics:\n\n{error}\n"),
                )
            }
        }
    }
}

/// The query parameters the health endpoints read.
#[derive(Debug, Default)]
struct Query {
    verbose: bool,
    exclude: BTreeSet<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self::default();
        let pairs = query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty());
        for pair in pairs {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match &*percent_decode(key) {
                "verbose" => parsed.verbose = true,
                "exclude" => {
                    parsed.exclude.insert(percent_decode(value));
                }
                _ => {}
            }
        }
        parsed
    }
}

/// Decodes a query component like Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte;
/// malformed escapes are kept as written and invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/healthz`: every check (bar the excluded), controller-runtime's text format.
fn aggregated(checks: &HealthChecks, query: &Query) -> Response<Body> {
    let mut unknown_excludes = query.exclude.clone();
    let mut out = String::new();
    let mut failed = false;
    for (name, check) in checks.snapshot() {
        if unknown_excludes.remove(&name) {
            let _ = writeln!(out, "[+]{name} excluded: ok");
            continue;
        }
        match check() {
            Ok(()) => {
                let _ = writeln!(out, "[+]{name} ok");
            }
            Err(reason) => {
                // The reason stays out of the public answer; `/<path>/<name>` gives it.
                tracing::debug!(check = %name, %reason, "health check failed");
                let _ = writeln!(out, "[-]{name} failed: reason withheld");
                failed = true;
            }
        }
    }
    if !failed && !query.verbose {
        return text(StatusCode::OK, "ok");
    }
    if !unknown_excludes.is_empty() {
        let quoted: Vec<String> = unknown_excludes.iter().map(|n| format!("{n:?}")).collect();
        let _ = writeln!(
            out,
            "warn: some health checks cannot be excluded: no matches for {}",
            quoted.join(",")
        );
    }
    if failed {
        tracing::info!(statuses = %out.trim_end(), "health check failed");
        out.push_str("healthz check failed\n");
        text(StatusCode::INTERNAL_SERVER_ERROR, out)
    } else {
        out.push_str("healthz check passed\n");
        text(StatusCode::OK, out)
    }
}

/// `/healthz/<name>`: that one check, with its reason on failure.
fn single(checks: &HealthChecks, name: &str) -> Response<Body> {
    let Some(check) = checks.get(name) else {
        return not_found();
    };
    match check() {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(reason) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {reason}\n"),
        ),
    }
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// A plain-text response, with the headers Go's `http.Error` and healthz set.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A status code, the headers (lower-cased names) and the body of one response.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find_map(|(n, v)| (n == name).then_some(v.as_str()))
        }
    }

    /// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer.
    async fn send(addr: SocketAddr, method: &str, target: &str) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect();
        Answer {
            status: status.parse().unwrap(),
            headers,
            body: body.to_owned(),
        }
    }

    async fn get(addr: SocketAddr, target: &str) -> Answer {
        send(addr, "GET", target).await
    }

    struct Running {
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), Error>>,
    }

    async fn start(metrics: Metrics, healthz: HealthChecks, readyz: HealthChecks) -> Running {
        let server = Server::bind(([127, 0, 0, 1], 0).into(), metrics, healthz, readyz)
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    fn check(ok: bool) -> CheckFn {
        Arc::new(move || {
            if ok {
                Ok(())
            } else {
                Err("cache not synced".to_owned())
            }
        })
    }

    #[tokio::test]
    async fn health_endpoints_follow_controller_runtime() {
        let healthz = HealthChecks::default();
        healthz.add("ping", check(true)).unwrap();
        let readyz = HealthChecks::default();
        readyz.add("informers", check(true)).unwrap();
        readyz.add("cache", check(false)).unwrap();
        let server = start(Metrics::new(), healthz.clone(), readyz.clone()).await;
        let addr = server.addr;

        let ok = get(addr, "/healthz").await;
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
        assert_eq!(ok.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(get(addr, "/healthz/").await.body, "ok");

        let verbose = get(addr, "/healthz?verbose").await;
        assert_eq!(verbose.status, 200);
        assert_eq!(verbose.body, "[+]ping ok\nhealthz check passed\n");

        // A failing check: always verbose, sorted by name, reason withheld.
        let failing = get(addr, "/readyz").await;
        assert_eq!(failing.status, 500);
        assert_eq!(
            failing.body,
            "[-]cache failed: reason withheld\n[+]informers ok\nhealthz check failed\n"
        );

        // Excluding the failing check (and one that does not exist).
        let excluded = get(addr, "/readyz?exclude=cache&exclude=nope&verbose=1").await;
        assert_eq!(excluded.status, 200);
        assert_eq!(
            excluded.body,
            "[+]cache excluded: ok\n[+]informers ok\n\
             warn: some health checks cannot be excluded: no matches for \"nope\"\n\
             healthz check passed\n"
        );
        let quiet = get(addr, "/readyz?exclude=cache").await;
        assert_eq!((quiet.status, quiet.body.as_str()), (200, "ok"));

        // One check by name: its reason is given.
        let one = get(addr, "/readyz/informers").await;
        assert_eq!((one.status, one.body.as_str()), (200, "ok"));
        let one = get(addr, "/readyz/cache").await;
        assert_eq!(one.status, 500);
        assert_eq!(one.body, "internal server error: cache not synced\n");
        assert_eq!(get(addr, "/readyz/unknown").await.status, 404);
        assert_eq!(get(addr, "/readyz/cache/deeper").await.status, 404);

        // Checks added while serving are served at once.
        healthz.add("late", check(false)).unwrap();
        assert_eq!(get(addr, "/healthz").await.status, 500);
        assert_eq!(get(addr, "/healthz/late").await.status, 500);

        server.shutdown.cancel();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn no_checks_means_ping() {
        let server = start(
            Metrics::new(),
            HealthChecks::default(),
            HealthChecks::default(),
        )
        .await;
        let verbose = get(server.addr, "/readyz?verbose").await;
        assert_eq!(
            (verbose.status, verbose.body.as_str()),
            (200, "[+]ping ok\nhealthz check passed\n")
        );
        assert_eq!(get(server.addr, "/healthz/ping").await.body, "ok");
        assert_eq!(get(server.addr, "/healthz/other").await.status, 404);
        server.shutdown.cancel();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn metrics_other_paths_and_methods() {
        let metrics = Metrics::new();
        metrics
            .controller("pods")
            .reconcile(metrics::ReconcileResult::Success);
        let server = start(metrics, HealthChecks::default(), HealthChecks::default()).await;
        let addr = server.addr;

        let scraped = get(addr, "/metrics").await;
        assert_eq!(scraped.status, 200);
        assert_eq!(scraped.header("content-type"), Some(metrics::CONTENT_TYPE));
        assert!(
            scraped.body.contains(
                "\ncontroller_runtime_reconcile_total{controller=\"pods\",result=\"success\"} 1\n"
            ),
            "{}",
            scraped.body
        );
        assert!(scraped.body.ends_with("# EOF\n"));

        let head = send(addr, "HEAD", "/metrics").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.body, "", "HEAD answers carry no body");

        for path in ["/", "/metric", "/metrics/x", "/healthzz", "/readyzfoo"] {
            let answer = get(addr, path).await;
            assert_eq!(answer.status, 404, "{path}");
            assert_eq!(answer.body, "404 page not found\n");
        }
        let post = send(addr, "POST", "/healthz").await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_eq!(send(addr, "DELETE", "/metrics").await.status, 405);

        server.shutdown.cancel();
        server.task.await.unwrap().unwrap();
    }

    /// Opens a keep-alive connection and completes one request on it, so that the server
    /// holds it as an idle connection.
    async fn idle_connection(addr: SocketAddr) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        while !raw.ends_with(b"\r\n\r\nok") {
            let mut buf = [0; 512];
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed early: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        }
        stream
    }

    // Multi-threaded: the slow check blocks the worker running the server's connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_the_request_in_flight_finish_and_closes_idle_connections() {
        let entered = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(AtomicBool::new(false));
        let readyz = HealthChecks::default();
        let (e, r) = (Arc::clone(&entered), Arc::clone(&release));
        readyz
            .add(
                "slow",
                Arc::new(move || {
                    e.notify_one();
                    while !r.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    Ok(())
                }),
            )
            .unwrap();
        // A long grace period: shutdown must end because connections end, not because it ran out.
        let server = Server::bind(
            ([127, 0, 0, 1], 0).into(),
            Metrics::new(),
            HealthChecks::default(),
            readyz,
        )
        .await
        .unwrap()
        .shutdown_timeout(Duration::from_secs(3600));
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));

        let mut idle = idle_connection(addr).await;
        let in_flight = tokio::spawn(async move { get(addr, "/readyz").await });
        entered.notified().await;
        shutdown.cancel();
        release.store(true, Ordering::Release);
        let answer = in_flight.await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));

        let stopped = tokio::time::timeout(Duration::from_secs(60), task).await;
        stopped
            .expect("serve returns once connections are done")
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "the idle connection was closed without an answer"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let first = Server::bind(
            ([127, 0, 0, 1], 0).into(),
            Metrics::new(),
            HealthChecks::default(),
            HealthChecks::default(),
        )
        .await
        .unwrap();
        let addr = first.local_addr();
        let second = Server::bind(
            addr,
            Metrics::new(),
            HealthChecks::default(),
            HealthChecks::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(second, Error::Bind { addr: a, .. } if a == addr));
        assert!(second.to_string().contains(&addr.to_string()), "{second}");
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("exclude=a%2Db&verbose&exclude=c+d&exclude=%zz&x=1&&"));
        assert!(q.verbose);
        assert_eq!(
            q.exclude.iter().map(String::as_str).collect::<Vec<_>>(),
            ["%zz", "a-b", "c d"]
        );
        let q = Query::parse(None);
        assert!(!q.verbose && q.exclude.is_empty());
        assert_eq!(percent_decode("%41%"), "A%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn check_names_are_validated_and_unique() {
        let checks = HealthChecks::default();
        checks.add("informer-sync", check(true)).unwrap();
        checks.add("webhook_v1.cert:ok~", check(true)).unwrap();
        assert!(matches!(
            checks.add("informer-sync", check(true)),
            Err(Error::DuplicateCheck { name }) if name == "informer-sync"
        ));
        for bad in ["", ".", "..", "a/b", "a b", "a?b", "é", "a%2F"] {
            assert!(
                matches!(
                    checks.add(bad, check(true)),
                    Err(Error::InvalidCheckName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert_eq!(checks.names(), ["informer-sync", "webhook_v1.cert:ok~"]);
        assert!(!checks.is_empty());
    }
}
