//! The webhook server over real TLS on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::test_support::{self, TestCert, connect, connector, post, read_answer, send};
use super::*;
use crate::webhook::{Reply, ReplyFuture};

mod certs;

/// Answers with the body it got.
struct Echo;

impl Handler for Echo {
    fn handle(&self, body: Bytes) -> ReplyFuture<'_> {
        Box::pin(async move { Reply::ok(body) })
    }
}

/// Answers with a fixed reply, or panics.
struct Fixed(Option<Reply>);

impl Handler for Fixed {
    fn handle(&self, _body: Bytes) -> ReplyFuture<'_> {
        Box::pin(async move {
            match &self.0 {
                Some(reply) => reply.clone(),
                None => panic!("handler bug"),
            }
        })
    }
}

/// Says when a request came in, and answers once released.
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Handler for Gate {
    fn handle(&self, _body: Bytes) -> ReplyFuture<'_> {
        Box::pin(async move {
            self.entered.notify_one();
            self.release.notified().await;
            Reply::ok("{}")
        })
    }
}

fn write_pair(dir: &Path, cert: &TestCert) {
    std::fs::write(dir.join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.key_pem).unwrap();
}

fn options(dir: &Path) -> Options {
    Options::default()
        .host(Ipv4Addr::LOCALHOST.into())
        .port(0)
        .cert_dir(dir)
        .cert_poll_interval(Duration::from_millis(20))
}

struct Running {
    server: WebhookServer,
    metrics: Metrics,
    addr: SocketAddr,
    certs: CertWatcher,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn start(options: Options, register: impl FnOnce(&WebhookServer)) -> Self {
        let metrics = Metrics::new();
        let server = WebhookServer::new(options, metrics.clone());
        register(&server);
        assert!(!server.is_listening());
        assert!(server.started_checker()().is_err());
        let bound = server.bind().await.unwrap();
        let addr = bound.local_addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(server.local_addr(), Some(addr));
        let certs = bound.cert_watcher().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bound.serve(shutdown.clone()));
        while !server.is_listening() {
            tokio::task::yield_now().await;
        }
        Self {
            server,
            metrics,
            addr,
            certs,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        assert!(!self.server.is_listening());
    }
}

fn samples(metrics: &Metrics, prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = metrics
        .encode()
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
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
}

#[tokio::test]
async fn routes_checks_methods_and_content_types_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_support::generate();
    write_pair(dir.path(), &cert);
    let running = Running::start(options(dir.path()), |server| {
        server.register("/echo", Echo).unwrap();
        server
            .register("/refuse", Fixed(Some(Reply::bad_request("not a review"))))
            .unwrap();
        server.register("/panic", Fixed(None)).unwrap();
    })
    .await;
    assert!(running.server.is_listening());
    assert!(running.server.started_checker()().is_ok());
    let (addr, client) = (running.addr, connector(&[&cert]));

    let ok = post(addr, &client, "/echo", r#"{"kind":"AdmissionReview"}"#).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, r#"{"kind":"AdmissionReview"}"#)
    );
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let charset = send(
        addr,
        &client,
        "POST",
        "/echo",
        Some("application/json; charset=utf-8"),
        "{}",
    )
    .await;
    assert_eq!(charset.status, 200);

    // A handler's own status is kept.
    let refused = post(addr, &client, "/refuse", "{}").await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (400, r#"{"error":"not a review"}"#)
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));

    let missing = post(addr, &client, "/echo/", "{}").await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, "404 page not found\n")
    );
    assert_eq!(post(addr, &client, "/", "{}").await.status, 404);

    let get = send(addr, &client, "GET", "/echo", None, "").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));

    let text = send(addr, &client, "POST", "/echo", Some("text/plain"), "{}").await;
    assert_eq!(text.status, 400);
    assert_eq!(
        text.body,
        r#"{"error":"contentType=text/plain, expected application/json"}"#
    );
    let none = send(addr, &client, "POST", "/echo", None, "{}").await;
    assert_eq!(none.status, 400);

    // A panicking handler is a 500, and the server goes on.
    let panicked = post(addr, &client, "/panic", "{}").await;
    assert_eq!(panicked.status, 500);
    assert_eq!(post(addr, &client, "/echo", "{}").await.status, 200);

    assert_eq!(
        samples(
            &running.metrics,
            "controller_runtime_webhook_requests_total{code=\""
        )
        .into_iter()
        .filter(|line| line.contains("webhook=\"/echo\""))
        .collect::<Vec<_>>(),
        [
            "controller_runtime_webhook_requests_total{code=\"200\",webhook=\"/echo\"} 3",
            "controller_runtime_webhook_requests_total{code=\"400\",webhook=\"/echo\"} 2",
            "controller_runtime_webhook_requests_total{code=\"405\",webhook=\"/echo\"} 1",
            "controller_runtime_webhook_requests_total{code=\"500\",webhook=\"/echo\"} 0",
        ]
    );
    let text = running.metrics.encode();
    for line in [
        "controller_runtime_webhook_requests_total{code=\"500\",webhook=\"/panic\"} 1",
        "controller_runtime_webhook_latency_seconds_count{webhook=\"/echo\"} 6",
        "controller_runtime_webhook_requests_in_flight{webhook=\"/echo\"} 0",
    ] {
        assert!(
            text.contains(&format!("\n{line}\n")),
            "{line} missing in\n{text}"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_support::generate();
    write_pair(dir.path(), &cert);
    let running = Running::start(options(dir.path()).max_body_bytes(1024), |server| {
        server.register("/echo", Echo).unwrap();
    })
    .await;
    let (addr, client) = (running.addr, connector(&[&cert]));

    let at_limit = "x".repeat(1024);
    assert_eq!(post(addr, &client, "/echo", &at_limit).await.body, at_limit);

    // A declared gigabyte: answered after the headers, the body never sent.
    let mut tls = connect(addr, &client).await;
    tls.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 1073741824\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut tls))
        .await
        .expect("answered without the rest of the body");
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.body,
        r#"{"error":"request entity is too large; limit is 1024 bytes"}"#
    );

    // A chunked body that grows past the limit: refused once it does, the rest never sent.
    let mut tls = connect(addr, &client).await;
    tls.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
    tls.write_all(chunk.as_bytes()).await.unwrap();
    tls.write_all(chunk.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut tls))
        .await
        .expect("answered without the end of the body");
    assert_eq!(answer.status, 413);
    assert!(
        samples(
            &running.metrics,
            "controller_runtime_webhook_requests_total"
        )
        .contains(
            &"controller_runtime_webhook_requests_total{code=\"413\",webhook=\"/echo\"} 2"
                .to_owned()
        )
    );
    running.stop().await;
}

#[tokio::test]
async fn slow_clients_hit_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_support::generate();
    write_pair(dir.path(), &cert);
    let running = Running::start(
        options(dir.path()).read_timeout(Duration::from_secs(1)),
        |server| server.register("/echo", Echo).unwrap(),
    )
    .await;
    let (addr, client) = (running.addr, connector(&[&cert]));

    // A body that stops coming: 408, and the connection is closed.
    let mut tls = connect(addr, &client).await;
    tls.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 10\r\n\r\n{\"a",
    )
    .await
    .unwrap();
    let answer = read_answer(&mut tls).await;
    assert_eq!(answer.status, 408);
    assert_eq!(answer.header("connection"), Some("close"));

    // Headers that stop coming: the connection is closed without an answer.
    let mut tls = connect(addr, &client).await;
    tls.write_all(b"POST /echo HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes the connection");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    running.stop().await;
}

// Multi-threaded: the client and the server's connection task run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_support::generate();
    write_pair(dir.path(), &cert);
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let gate = Gate {
        entered: Arc::clone(&entered),
        release: Arc::clone(&release),
    };
    // A long grace period: shutdown must end because the request ends, not because it ran out.
    let options = options(dir.path()).shutdown_timeout(Duration::from_secs(3600));
    let running = Running::start(options, |server| server.register("/slow", gate).unwrap()).await;
    let (addr, client) = (running.addr, connector(&[&cert]));

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { post(addr, &client, "/slow", "{}").await }
    });
    entered.notified().await;
    running.shutdown.cancel();
    // The server stops accepting while the request is still running.
    tokio::time::timeout(Duration::from_secs(60), async {
        while running.server.is_listening() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("stops listening");
    assert!(
        !running.task.is_finished(),
        "waits for the request in flight"
    );
    release.notify_one();
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
    tokio::time::timeout(Duration::from_secs(60), running.task)
        .await
        .expect("serve returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
