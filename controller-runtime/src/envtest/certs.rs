//! The test control plane's PKI: a CA, the API server's serving certificate, an admin client
//! certificate in `system:masters`, and the service-account signing key; with a node, also the
//! kubelet's serving and client certificates and the API server's kubelet client certificate.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::error::{Error, Result};

/// PEM-encoded material for one control plane.
pub(crate) struct Pki {
    pub(crate) ca_cert: String,
    pub(crate) serving_cert: String,
    pub(crate) serving_key: String,
    pub(crate) admin_cert: String,
    pub(crate) admin_key: String,
    pub(crate) service_account_key: String,
    pub(crate) service_account_pub: String,
    /// Present when the PKI was generated for a node.
    pub(crate) node: Option<NodePki>,
}

/// The certificates of the node tier, signed by the same CA.
pub(crate) struct NodePki {
    /// The kubelet's serving certificate (SANs: the node name and IP, `localhost`).
    pub(crate) kubelet_serving_cert: String,
    pub(crate) kubelet_serving_key: String,
    /// The kubelet's client certificate: `system:node:<name>` in `system:nodes`.
    pub(crate) kubelet_client_cert: String,
    pub(crate) kubelet_client_key: String,
    /// The API server's client certificate for kubelets (`system:masters`).
    pub(crate) apiserver_kubelet_client_cert: String,
    pub(crate) apiserver_kubelet_client_key: String,
}

/// The node a PKI is generated for.
pub(crate) struct NodeIdentity<'a> {
    pub(crate) name: &'a str,
    pub(crate) ip: std::net::IpAddr,
}

impl Pki {
    /// Generates fresh keys and certificates (ECDSA P-256) valid for `127.0.0.1` and
    /// `localhost`, and the node's certificates when there is a node.
    pub(crate) fn generate(node: Option<&NodeIdentity<'_>>) -> Result<Self> {
        Self::try_generate(node).map_err(Error::Certificates)
    }

    fn try_generate(node: Option<&NodeIdentity<'_>>) -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferrokube-envtest-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        let (admin_cert, admin_key) = client_cert(&ca, "admin", "system:masters")?;
        let node = node.map(|node| node_pki(&ca, node)).transpose()?;

        let service_account = KeyPair::generate()?;
        Ok(Self {
            ca_cert: ca.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert,
            admin_key,
            service_account_key: service_account.serialize_pem(),
            service_account_pub: service_account.public_key_pem(),
            node,
        })
    }
}

/// A client certificate and key (PEM) for `user` in `group`.
fn client_cert(
    ca: &CertifiedIssuer<'_, KeyPair>,
    user: &str,
    group: &str,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    params
        .distinguished_name
        .push(DnType::OrganizationName, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn node_pki(
    ca: &CertifiedIssuer<'_, KeyPair>,
    node: &NodeIdentity<'_>,
) -> Result<NodePki, rcgen::Error> {
    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        node.name.to_owned(),
        node.ip.to_string(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, node.name);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, ca)?;
    let (kubelet_client_cert, kubelet_client_key) =
        client_cert(ca, &format!("system:node:{}", node.name), "system:nodes")?;
    let (apiserver_kubelet_client_cert, apiserver_kubelet_client_key) =
        client_cert(ca, "kube-apiserver-kubelet-client", "system:masters")?;
    Ok(NodePki {
        kubelet_serving_cert: serving_cert.pem(),
        kubelet_serving_key: serving_key.serialize_pem(),
        kubelet_client_cert,
        kubelet_client_key,
        apiserver_kubelet_client_cert,
        apiserver_kubelet_client_key,
    })
}

/// The CA of a webhook installation: issues the webhook server's serving certificates, again
/// for a rotation, so the API server (which trusts the CA) accepts each of them.
pub(crate) struct WebhookCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
}

impl std::fmt::Debug for WebhookCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCa")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// A serving certificate and its key, PEM-encoded.
pub(crate) struct ServingPair {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl WebhookCa {
    /// A fresh CA issuing serving certificates for `names` (DNS names or IP addresses).
    pub(crate) fn generate(names: Vec<String>) -> Result<Self> {
        let generate = || -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "ferrokube-envtest-webhook-ca");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            CertifiedIssuer::self_signed(params, KeyPair::generate()?)
        };
        Ok(Self {
            issuer: generate().map_err(Error::Certificates)?,
            names,
        })
    }

    /// The CA certificate (PEM): the `caBundle` of the webhook configurations.
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A new serving certificate and key (ECDSA P-256) for the CA's names.
    pub(crate) fn issue(&self) -> Result<ServingPair> {
        let issue = || -> Result<ServingPair, rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(self.names.clone())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "ferrokube-envtest-webhook");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let cert = params.signed_by(&key, &self.issuer)?;
            Ok(ServingPair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            })
        };
        issue().map_err(Error::Certificates)
    }
}
