//! The serving certificate over real TLS: rotation, bad files, start errors.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::super::test_support::{self, TestCert, connect, connector, peer_cert, read_answer};
use super::{Running, options, write_pair};
use crate::metrics::Metrics;
use crate::webhook::server::{Error, WebhookServer};

/// Rotates the pair as the kubelet updates a mounted secret (and cert-manager through it):
/// the files are symlinks into `..data`, itself a symlink swapped atomically to a new directory.
fn rotate(dir: &Path, cert: &TestCert, generation: u32) {
    let data = dir.join(format!("..gen{generation}"));
    std::fs::create_dir(&data).unwrap();
    write_pair(&data, cert);
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
    }
}

#[tokio::test]
async fn rotated_certificates_are_served_to_new_connections_and_bad_ones_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (test_support::generate(), test_support::generate());
    rotate(dir.path(), &first, 1);
    let running = Running::start(options(dir.path()), |_| {}).await;
    let (addr, client) = (running.addr, connector(&[&first, &second]));
    assert_eq!(peer_cert(addr, &client).await, first.der);
    let mut open = connect(addr, &client).await;

    rotate(dir.path(), &second, 2);
    // The watcher polls every 20 ms; new connections get the new certificate once it has.
    let rotated = tokio::time::timeout(Duration::from_secs(60), async {
        while peer_cert(addr, &client).await != second.der {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(rotated.is_ok(), "the new certificate was never served");

    // The connection opened before goes on with its certificate.
    assert_eq!(
        open.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
        first.der
    );
    open.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut open).await.status, 404);

    // A broken pair (the first key with the second certificate): the second pair stays.
    let broken = TestCert {
        cert_pem: second.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
        der: second.der.clone(),
    };
    rotate(dir.path(), &broken, 3);
    assert!(matches!(
        running.certs.reload(),
        Err(Error::KeyMismatch { .. })
    ));
    assert_eq!(peer_cert(addr, &client).await, second.der);
    std::fs::write(dir.path().join("..gen3/tls.crt"), "garbage").unwrap();
    assert!(running.certs.reload().is_err());
    assert_eq!(peer_cert(addr, &client).await, second.der);
    running.stop().await;
}

#[tokio::test]
async fn bind_errors_are_clear_and_bind_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = WebhookServer::new(options(dir.path()), Metrics::new());
    let err = server.bind().await.unwrap_err();
    assert!(
        matches!(err, Error::ReadCertificate { ref path, .. } if path.ends_with("tls.crt")),
        "{err}"
    );
    assert!(!server.is_listening() && server.local_addr().is_none());

    // Once the certificate is there, it binds (a failed bind does not count as started).
    let cert = test_support::generate();
    write_pair(dir.path(), &cert);
    let bound = server.bind().await.unwrap();
    assert!(matches!(server.bind().await, Err(Error::AlreadyStarted)));

    let taken = WebhookServer::new(
        options(dir.path()).port(bound.local_addr().port()),
        Metrics::new(),
    );
    let err = taken.bind().await.unwrap_err();
    assert!(
        matches!(err, Error::Bind { addr, .. } if addr == bound.local_addr()),
        "{err}"
    );
}
