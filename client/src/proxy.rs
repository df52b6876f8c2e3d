//! The API server's proxy subresources: `pods/proxy`, `services/proxy` and `nodes/proxy`,
//! as client-go's `ProxyGet` — an HTTP request to a port of a pod, a service or a node's
//! kubelet, relayed by the API server. Each returns a raw [`Request`] to add query
//! parameters or a body to and finish as bytes, lines or a response.
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use k8s_openapi::api::core::v1::Pod;
//!
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let pods = client.namespaced::<Pod>("default");
//! // GET http://web-0:8080/healthz?verbose=1, through the API server.
//! let body = pods
//!     .proxy_get("", "web-0", "8080", "/healthz")
//!     .param("verbose", "1")
//!     .bytes()
//!     .await?;
//! println!("{}", String::from_utf8_lossy(&body));
//! # Ok(()) }
//! ```
//!
//! A service is proxied to one of its ready endpoints (the API server dials the pod IP
//! itself, so no kube-proxy is needed).

use http::Method;
use k8s_openapi::api::core::v1::{Node, Pod, Service};

use crate::api::Api;
use crate::request::Request;

/// Resources with a `proxy` subresource.
pub trait Proxy: kube::Resource {}

impl Proxy for Pod {}
impl Proxy for Service {}
impl Proxy for Node {}

// === impl Api<K: Proxy> ===

impl<K: Proxy> Api<K> {
    /// A request with `verb` to `path` on `port` of `name`, through the API server's
    /// proxy (`…/{scheme:}{name}{:port}/proxy/{path}`). `scheme` (`http` or `https`; empty
    /// for the default) and `port` (a number or a port name; empty for the default) follow
    /// client-go's `net.JoinSchemeNamePort`.
    pub fn proxy(&self, verb: Method, scheme: &str, name: &str, port: &str, path: &str) -> Request {
        let target = join_scheme_name_port(scheme, name, port);
        let base = self
            .object_request(verb.clone(), &target)
            .subresource("proxy")
            .url();
        let request = self.client().request(verb);
        if name.is_empty() {
            // Let the builder report it: a proxy needs an object.
            return request.abs_path(&base).name("");
        }
        request.abs_path(&proxy_url(&base, path))
    }

    /// A GET through the proxy, as client-go's `ProxyGet(scheme, name, port, path, params)`
    /// (add the parameters with [`Request::param`]).
    pub fn proxy_get(&self, scheme: &str, name: &str, port: &str, path: &str) -> Request {
        self.proxy(Method::GET, scheme, name, port, path)
    }
}

/// client-go's `net.JoinSchemeNamePort`: `name`, `name:port`, `scheme:name:` or
/// `scheme:name:port`.
pub fn join_scheme_name_port(scheme: &str, name: &str, port: &str) -> String {
    match (scheme.is_empty(), port.is_empty()) {
        (true, true) => name.to_owned(),
        (true, false) => format!("{name}:{port}"),
        (false, _) => format!("{scheme}:{name}:{port}"),
    }
}

/// `base` (ending in `/proxy`) followed by `path`, each segment percent-encoded; an empty
/// path proxies to the root, and a trailing slash is kept.
fn proxy_url(base: &str, path: &str) -> String {
    let mut url = base.to_owned();
    let path = path.strip_prefix('/').unwrap_or(path);
    url.push('/');
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            url.push('/');
        }
        url.push_str(&encode_segment(segment));
    }
    url
}

/// Percent-encodes a path segment, keeping RFC 3986's unreserved characters and the
/// sub-delimiters, `:` and `@` that a segment may hold.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;

    /// A client whose requests are never answered usefully (only URLs are tested here).
    fn client() -> Client {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::empty()))
        });
        Client::from_kube(kube::Client::new(service, "default"))
    }

    #[test]
    fn scheme_name_and_port_join_as_client_go() {
        assert_eq!(join_scheme_name_port("", "web", ""), "web");
        assert_eq!(join_scheme_name_port("", "web", "8080"), "web:8080");
        assert_eq!(join_scheme_name_port("https", "web", ""), "https:web:");
        assert_eq!(
            join_scheme_name_port("https", "web", "443"),
            "https:web:443"
        );
    }

    #[tokio::test]
    async fn pod_service_and_node_proxy_urls() {
        let client = client();
        let pods = client.namespaced::<Pod>("ns");
        assert_eq!(
            pods.proxy_get("", "web", "8080", "/a b/c?d").url(),
            "/api/v1/namespaces/ns/pods/web%3A8080/proxy/a%20b/c%3Fd"
        );
        assert_eq!(
            pods.proxy_get("", "web", "", "").param("x", "1").url(),
            "/api/v1/namespaces/ns/pods/web/proxy/?x=1"
        );
        assert_eq!(
            pods.proxy_get("", "web", "http", "dir/").url(),
            "/api/v1/namespaces/ns/pods/web%3Ahttp/proxy/dir/"
        );
        let services = client.namespaced::<Service>("ns");
        assert_eq!(
            services
                .proxy(Method::POST, "https", "api", "443", "/v1/x")
                .url(),
            "/api/v1/namespaces/ns/services/https%3Aapi%3A443/proxy/v1/x"
        );
        let nodes = client.all::<Node>();
        assert_eq!(
            nodes.proxy_get("", "n1", "10250", "healthz").url(),
            "/api/v1/nodes/n1%3A10250/proxy/healthz"
        );
    }

    #[tokio::test]
    async fn an_empty_name_fails_before_sending() {
        let pods = client().namespaced::<Pod>("ns");
        let err = pods.proxy_get("", "", "80", "/").bytes().await.unwrap_err();
        assert!(matches!(err, crate::Error::InvalidRequest(_)), "{err}");
    }
}
