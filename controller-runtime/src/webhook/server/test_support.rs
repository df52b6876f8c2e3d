//! For tests of the webhook server (here and in the manager): self-signed serving
//! certificates, and a TLS client speaking raw HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A self-signed certificate for `localhost` and `127.0.0.1`, and its key.
pub(crate) struct TestCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    /// The certificate, DER: what a client sees as the peer certificate.
    pub(crate) der: Vec<u8>,
}

/// A fresh certificate and key (a new key pair every call).
pub(crate) fn generate() -> TestCert {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("generate a test certificate");
    TestCert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        der: certified.cert.der().to_vec(),
    }
}

pub(crate) fn connector(trusted: &[&TestCert]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(CertificateDer::from(cert.der.clone())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub(crate) async fn connect(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The certificate a new connection is served.
pub(crate) async fn peer_cert(addr: SocketAddr, connector: &TlsConnector) -> Vec<u8> {
    let tls = connect(addr, connector).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v.as_str()))
    }
}

/// Reads one answer to the end of the connection.
pub(crate) async fn read_answer(tls: &mut TlsStream<TcpStream>) -> Answer {
    let mut raw = Vec::new();
    // A peer that closes without close_notify still gave its whole answer.
    if let Err(error) = tls.read_to_end(&mut raw).await {
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
    }
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{raw:?}"));
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

/// Sends one request (`Connection: close`) and reads its answer.
pub(crate) async fn send(
    addr: SocketAddr,
    connector: &TlsConnector,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Answer {
    let mut tls = connect(addr, connector).await;
    let content_type = content_type
        .map(|ct| format!("Content-Type: {ct}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{content_type}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut tls).await
}

pub(crate) async fn post(
    addr: SocketAddr,
    connector: &TlsConnector,
    path: &str,
    body: &str,
) -> Answer {
    send(
        addr,
        connector,
        "POST",
        path,
        Some("application/json"),
        body,
    )
    .await
}
