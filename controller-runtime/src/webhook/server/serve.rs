//! [`BoundServer`]: the accept loop, TLS, one HTTP/1 connection per client, and routing.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use super::{CertWatcher, Error, Route, WebhookServer};
use crate::controller::panic_message;
use crate::server::{accept_until, serve_http1};
use crate::webhook::Reply;

type Body = Full<Bytes>;

/// A [`WebhookServer`] with its certificate loaded and its address bound, ready to serve.
pub struct BoundServer {
    server: WebhookServer,
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    certs: CertWatcher,
}

impl fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundServer")
            .field("local_addr", &self.local_addr)
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

impl BoundServer {
    pub(super) async fn bind(server: WebhookServer) -> Result<Self, Error> {
        let options = server.options();
        let certs = CertWatcher::with_metrics(
            options.cert_path(),
            options.key_path(),
            server.shared.metrics.clone(),
        )?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls {
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(certs.clone()));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No session resumption: a resumed session would keep the certificate it began with,
        // and every new connection must get the current one. Webhook connections are few.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let addr = options.bind_address();
        let bind_error = |source| Error::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        *server.shared.local_addr.lock() = Some(local_addr);
        Ok(Self {
            server,
            listener,
            local_addr,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certs,
        })
    }

    /// The address the server listens on (with the port picked when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The serving certificate, as loaded and reloaded.
    pub fn cert_watcher(&self) -> &CertWatcher {
        &self.certs
    }

    /// Serves until `shutdown` is cancelled, re-reading the certificate files every
    /// [`Options::cert_poll_interval`](super::Options::cert_poll_interval); then stops
    /// accepting, closes idle connections and lets in-flight requests finish for up to
    /// [`Options::shutdown_timeout`](super::Options::shutdown_timeout) before closing the rest.
    ///
    /// # Errors
    ///
    /// None so far: failed connections are logged, the server goes on.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Self {
            server,
            listener,
            local_addr,
            acceptor,
            certs,
        } = self;
        let options = server.options().clone();
        let watch_stop = CancellationToken::new();
        let _stop_watching = watch_stop.clone().drop_guard();
        tokio::spawn(certs.watch(options.cert_poll_interval, watch_stop));

        let shared = Arc::clone(&server.shared);
        shared.listening.store(true, Ordering::Release);
        tracing::info!(addr = %local_addr, paths = ?server.paths(), "serving webhooks");
        let serve =
            |stream| serve_connection(stream, acceptor.clone(), server.clone(), shutdown.clone());
        accept_until(
            listener,
            &shutdown,
            options.shutdown_timeout,
            "webhook",
            serve,
            || shared.listening.store(false, Ordering::Release),
        )
        .await;
        tracing::info!(addr = %local_addr, "webhook server stopped");
        Ok(())
    }
}

/// Serves one connection: the TLS handshake, then HTTP/1 until the client closes it or, on
/// shutdown, the request in flight is answered.
async fn serve_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    server: WebhookServer,
    shutdown: CancellationToken,
) {
    let read_timeout = server.options().read_timeout;
    let handshake = tokio::time::timeout(read_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        () = shutdown.cancelled() => return,
        tls = handshake => match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%error, "webhook TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(timeout = ?read_timeout, "webhook TLS handshake timed out");
                return;
            }
        },
    };
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.answer(req).await) }
    });
    serve_http1(tls, service, read_timeout, &shutdown, "webhook").await;
}

// === routing ===

impl WebhookServer {
    /// Answers one request: routing, then the registered webhook's checks and handler.
    async fn answer(&self, req: http::Request<Incoming>) -> Response<Body> {
        let Some(route) = self.route(req.uri().path()) else {
            return not_found();
        };
        let in_flight = route.metrics.start();
        let response = self.answer_route(&route, req).await;
        in_flight.done(response.status().as_u16());
        response
    }

    async fn answer_route(&self, route: &Route, req: http::Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_json(&content_type) {
            return reply(Reply::bad_request(format!(
                "contentType={content_type}, expected application/json"
            )));
        }
        let options = self.options();
        let limit = options.max_body_bytes;
        let too_large = || {
            closing(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request entity is too large; limit is {limit} bytes"),
            ))
        };
        // A declared length over the limit is refused before reading any of it.
        let declared = req.body().size_hint().lower();
        if usize::try_from(declared).map_or(true, |declared| declared > limit) {
            return too_large();
        }
        let body = Limited::new(req.into_body(), limit).collect();
        let body = match tokio::time::timeout(options.read_timeout, body).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
            Ok(Err(e)) => {
                return closing(error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                ));
            }
            Err(_) => {
                return closing(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "timed out reading the request body",
                ));
            }
        };
        match AssertUnwindSafe(route.handler.handle(body))
            .catch_unwind()
            .await
        {
            Ok(answer) => reply(answer),
            Err(payload) => {
                let message = panic_message(&*payload);
                tracing::error!(webhook = %route.metrics.path(), panic = %message, "webhook handler panicked");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the webhook handler panicked",
                )
            }
        }
    }
}

/// Whether a `Content-Type` is `application/json` (parameters such as `charset` allowed).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A handler's reply as an `application/json` response.
fn reply(reply: Reply) -> Response<Body> {
    let mut response = Response::new(Body::new(reply.body));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl fmt::Display) -> Response<Body> {
    let mut answer = Reply::bad_request(message);
    answer.status = status;
    reply(answer)
}

/// Asks hyper to close the connection after this response (its request was not read whole).
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Go's `http.NotFound`, as controller-runtime's mux answers an unknown path.
fn not_found() -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(b"404 page not found\n")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/jsonx",
            "application/json-patch+json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
