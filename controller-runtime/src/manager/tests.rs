//! The manager with its webhook server (no API server needed: no controller, no informer).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Error, Manager, ManagerOptions};
use crate::webhook::server::test_support::{self, connector, post};
use crate::webhook::server::{self as webhook_server, Options as WebhookServerOptions};
use crate::webhook::{Handler, Reply, ReplyFuture};

/// A manager whose client points at a closed port (nothing here calls it).
fn manager(options: ManagerOptions) -> Manager {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URL"));
    let client = kube::Client::try_from(config).expect("a client");
    Manager::from_client(ferrokube_client::Client::from_kube(client), options)
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

/// `GET path` on the manager's plain HTTP server: status and body.
async fn probe(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn webhook_options(dir: &std::path::Path) -> WebhookServerOptions {
    WebhookServerOptions::default()
        .host(Ipv4Addr::LOCALHOST.into())
        .port(0)
        .cert_dir(dir)
}

// Multi-threaded: the client and the server's connection task run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_serves_webhooks_reports_readiness_and_drains_them_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cert = test_support::generate();
    std::fs::write(dir.path().join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &cert.key_pem).unwrap();
    let manager = manager(
        ManagerOptions::default()
            .bind_address(Some(SocketAddr::from(([127, 0, 0, 1], 0))))
            .webhook_server(webhook_options(dir.path()).shutdown_timeout(Duration::from_secs(3600)))
            .graceful_shutdown_timeout(Duration::from_secs(3600)),
    );
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let gate = Gate {
        entered: Arc::clone(&entered),
        release: Arc::clone(&release),
    };
    manager
        .webhook_server()
        .register("/validate-gate", gate)
        .unwrap();
    assert_eq!(manager.webhook_server_address(), None);

    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let manager = manager.clone();
        let shutdown = shutdown.clone();
        async move { manager.start(shutdown).await }
    });
    // Ready once the webhook server listens (and the, empty, caches synced).
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(addr) = manager.server_address()
                && probe(addr, "/readyz/webhook").await.0 == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "never ready");
    let addr = manager.webhook_server_address().expect("bound");
    assert_ne!(addr.port(), 0);
    let verbose = probe(manager.server_address().unwrap(), "/readyz?verbose").await;
    assert!(verbose.1.contains("[+]webhook ok\n"), "{}", verbose.1);

    let in_flight =
        tokio::spawn(async move { post(addr, &connector(&[&cert]), "/validate-gate", "{}").await });
    entered.notified().await;
    shutdown.cancel();
    // The manager waits for the request in flight.
    tokio::time::timeout(Duration::from_secs(60), async {
        while manager.webhook_server().is_listening() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the webhook server stops accepting");
    assert!(!running.is_finished());
    release.notify_one();
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("start returns")
        .unwrap()
        .unwrap();
    let metrics = manager.metrics().encode();
    let line =
        "controller_runtime_webhook_requests_total{code=\"200\",webhook=\"/validate-gate\"} 1";
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn a_missing_certificate_fails_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(
        ManagerOptions::default()
            .bind_address(None)
            .webhook_server(webhook_options(dir.path())),
    );
    let err = manager.start(CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::Webhook(webhook_server::Error::ReadCertificate { ref path, .. }) if path.ends_with("tls.crt")),
        "{err}"
    );
    assert!(err.to_string().contains("tls.crt"), "{err}");
}

#[test]
fn without_options_the_webhook_server_is_created_on_demand_with_defaults() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let manager = manager(ManagerOptions::default());
    assert_eq!(manager.webhook_server_address(), None);
    let server = manager.webhook_server();
    assert_eq!(server.options(), &WebhookServerOptions::default());
    assert_eq!(server.options().bind_address().port(), 9443);
    // The same server every time.
    server
        .register(
            "/a",
            Gate {
                entered: Arc::default(),
                release: Arc::default(),
            },
        )
        .unwrap();
    assert_eq!(manager.webhook_server().paths(), ["/a"]);
}
