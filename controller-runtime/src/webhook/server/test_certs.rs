//! Self-signed serving certificates for the webhook server's tests.

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
