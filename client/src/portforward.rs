//! Port forwarding to a pod: client-go's `tools/portforward`, over the API server's
//! WebSocket port-forward protocol (`pods/portforward`, as kube's
//! [`Api::portforward`](kube::Api::portforward), whose [`Portforwarder`] this reuses).
//!
//! Two ways in:
//! - [`Api::portforward`] opens one connection and hands the caller a stream per port;
//! - [`Api::forward_ports`] listens on local TCP ports (`kubectl port-forward`) and forwards
//!   each accepted connection over a connection of its own (the WebSocket protocol carries
//!   one stream per port per connection).
//!
//! ```no_run
//! use ferrokube_client::Client;
//! use ferrokube_client::portforward::{ForwardedPort, PortForwardOptions};
//! use k8s_openapi::api::core::v1::Pod;
//!
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let pods = client.namespaced::<Pod>("default");
//! // `kubectl port-forward web-0 :8080`: a free local port to the pod's 8080.
//! let ports = ["8080".parse::<ForwardedPort>()?.with_local(0)];
//! let forwarder = pods.forward_ports("web-0", &ports, &PortForwardOptions::default()).await?;
//! println!("forwarding {:?}", forwarder.ports());
//! // … connect to forwarder.local_addr(8080) …
//! forwarder.stop();
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use http::Method;
use k8s_openapi::api::core::v1::Pod;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use kube::api::Portforwarder;

use crate::api::Api;
use crate::error::{ApiError, Error, Result};

/// A local port forwarded to a remote one (client-go's `ForwardedPort`). `local` 0 asks for
/// a free port; [`PortForwarder::ports`] reports the one chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ForwardedPort {
    /// The local port (0: any free one).
    pub local: u16,
    /// The pod's port.
    pub remote: u16,
}

impl ForwardedPort {
    /// `local` → `remote`.
    pub fn new(local: u16, remote: u16) -> Self {
        Self { local, remote }
    }

    /// The same remote port from another local one.
    #[must_use]
    pub fn with_local(self, local: u16) -> Self {
        Self { local, ..self }
    }
}

impl FromStr for ForwardedPort {
    type Err = PortForwardError;

    /// client-go's port specs: `5000` (same port locally), `8888:5000`, and `:5000` or
    /// `0:5000` (a free local port).
    fn from_str(spec: &str) -> std::result::Result<Self, Self::Err> {
        let invalid = |why: &str| PortForwardError::InvalidPort {
            spec: spec.to_owned(),
            why: why.to_owned(),
        };
        let port = |s: &str| s.parse::<u16>().map_err(|e| invalid(&e.to_string()));
        let (local, remote) = match spec.split_once(':') {
            None => (port(spec)?, port(spec)?),
            Some(("", remote)) => (0, port(remote)?),
            Some((local, remote)) => (port(local)?, port(remote)?),
        };
        if remote == 0 {
            return Err(invalid("the remote port must not be 0"));
        }
        Ok(Self { local, remote })
    }
}

/// Options of [`Api::forward_ports`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForwardOptions {
    addresses: Vec<IpAddr>,
}

impl Default for PortForwardOptions {
    fn default() -> Self {
        Self {
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }
    }
}

impl PortForwardOptions {
    /// The local addresses to listen on (default `127.0.0.1`; client-go's `--address`).
    /// Each local port is bound on every address, and must be free on all of them.
    #[must_use]
    pub fn addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses = addresses.into_iter().collect();
        self
    }
}

/// Why port forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    /// A port spec could not be parsed.
    #[error("invalid port {spec:?}: {why}")]
    InvalidPort {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// There was nothing to forward (no ports, or no local addresses).
    #[error("nothing to forward: {0}")]
    Nothing(&'static str),
    /// The pod cannot be forwarded to (kubectl's check): it is not running.
    #[error("pod {pod} is {phase}, not Running")]
    PodNotRunning {
        /// The pod's name.
        pod: String,
        /// Its phase.
        phase: String,
    },
    /// Listening on a local address failed.
    #[error("listening on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Opening the port-forward connection through the API server failed.
    #[error("connecting to the pod")]
    Connect(#[source] Error),
    /// The server reported an error on the port's error stream (e.g. nothing listens there).
    #[error("forwarding {local} -> {remote}: {message}")]
    Remote {
        /// The local port.
        local: u16,
        /// The pod's port.
        remote: u16,
        /// The server's message.
        message: String,
    },
    /// Copying between the local connection and the pod failed.
    #[error("forwarding {local} -> {remote}")]
    Copy {
        /// The local port.
        local: u16,
        /// The pod's port.
        remote: u16,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

// === impl Api<Pod> ===

impl Api<Pod> {
    /// Opens one port-forward connection to `ports` of the pod; take a stream per port from
    /// the returned [`Portforwarder`] (each port carries one stream per connection).
    #[doc(alias = "portforward.New")]
    pub async fn portforward(&self, name: &str, ports: &[u16]) -> Result<Portforwarder> {
        if name.is_empty() {
            return Err(Error::InvalidRequest("a pod name must not be empty".into()));
        }
        if ports.is_empty() {
            return Err(Error::InvalidRequest("port forwarding needs a port".into()));
        }
        let url = self.portforward_url(name, ports);
        let kube = match self.namespace() {
            Some(ns) => kube::Api::<Pod>::namespaced(self.client().kube().clone(), ns),
            None => kube::Api::<Pod>::default_namespaced(self.client().kube().clone()),
        };
        kube.portforward(name, ports).await.map_err(|e| match e {
            kube::Error::Api(status) => Error::Api(Box::new(ApiError {
                verb: Method::GET,
                url,
                status: *status,
                retry_after: None,
            })),
            source => Error::Transport {
                verb: Method::GET,
                url,
                source,
            },
        })
    }

    fn portforward_url(&self, name: &str, ports: &[u16]) -> String {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        self.object_request(Method::GET, name)
            .subresource("portforward")
            .param("ports", ports.join(","))
            .url()
    }

    /// Listens on local TCP ports and forwards every connection to the pod (`kubectl
    /// port-forward`), until the returned [`PortForwarder`] is stopped or dropped. The pod
    /// must be Running. Each connection opens a port-forward connection of its own.
    #[doc(alias = "ForwardPorts")]
    pub async fn forward_ports(
        &self,
        name: &str,
        ports: &[ForwardedPort],
        options: &PortForwardOptions,
    ) -> std::result::Result<PortForwarder, PortForwardError> {
        if ports.is_empty() {
            return Err(PortForwardError::Nothing("no ports"));
        }
        if options.addresses.is_empty() {
            return Err(PortForwardError::Nothing("no local addresses"));
        }
        let pod = self.get(name).await.map_err(PortForwardError::Connect)?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        if phase != "Running" {
            return Err(PortForwardError::PodNotRunning {
                pod: name.to_owned(),
                phase,
            });
        }
        let mut listeners = Vec::new();
        let mut forwarded = Vec::new();
        for port in ports {
            let mut local = port.local;
            for ip in &options.addresses {
                let addr = SocketAddr::new(*ip, local);
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| PortForwardError::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| PortForwardError::Listen { addr, source })?;
                // A free port chosen on the first address is used on the others too.
                local = bound.port();
                listeners.push((listener, port.remote));
            }
            forwarded.push(ForwardedPort::new(local, port.remote));
        }
        let (errors_tx, errors) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        for (listener, remote) in listeners {
            tasks.spawn(accept_loop(
                self.clone(),
                name.to_owned(),
                listener,
                remote,
                errors_tx.clone(),
                stop.clone(),
                tasks.clone(),
            ));
        }
        tasks.close();
        Ok(PortForwarder {
            ports: forwarded,
            addresses: options.addresses.clone(),
            errors,
            stop,
            tasks,
        })
    }
}

/// Accepts connections on `listener` and forwards each on a task of its own.
async fn accept_loop(
    pods: Api<Pod>,
    name: String,
    listener: TcpListener,
    remote: u16,
    errors: mpsc::UnboundedSender<PortForwardError>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let local = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((connection, peer)) => {
                tracing::debug!(%peer, local, remote, pod = %name, "forwarding a connection");
                let (pods, name, errors, stop) =
                    (pods.clone(), name.clone(), errors.clone(), stop.clone());
                tasks.spawn(async move {
                    let forward = forward_connection(&pods, &name, connection, local, remote);
                    let result = tokio::select! {
                        () = stop.cancelled() => return,
                        result = forward => result,
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "port forwarding a connection failed");
                        let _ = errors.send(e);
                    }
                });
            }
            Err(source) => {
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), local);
                let _ = errors.send(PortForwardError::Listen { addr, source });
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Forwards one local connection over a port-forward connection of its own.
async fn forward_connection(
    pods: &Api<Pod>,
    name: &str,
    mut connection: TcpStream,
    local: u16,
    remote: u16,
) -> std::result::Result<(), PortForwardError> {
    let mut forwarder = pods
        .portforward(name, &[remote])
        .await
        .map_err(PortForwardError::Connect)?;
    let (Some(mut upstream), Some(remote_error)) =
        (forwarder.take_stream(remote), forwarder.take_error(remote))
    else {
        return Err(PortForwardError::Nothing(
            "the connection has no stream for the port",
        ));
    };
    let copy = tokio::io::copy_bidirectional(&mut connection, &mut upstream);
    // The error stream closing without a message says nothing: the copy finishes on its own.
    let remote_error = async {
        match remote_error.await {
            Some(message) => message,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        copied = copy => copied
            .map(drop)
            .map_err(|source| PortForwardError::Copy { local, remote, source }),
        message = remote_error => Err(PortForwardError::Remote { local, remote, message }),
    };
    drop(upstream);
    forwarder.abort();
    outcome
}

/// Local ports forwarded to a pod by [`Api::forward_ports`]; stops forwarding when dropped.
#[derive(Debug)]
#[must_use = "dropping the PortForwarder stops forwarding"]
pub struct PortForwarder {
    ports: Vec<ForwardedPort>,
    addresses: Vec<IpAddr>,
    errors: mpsc::UnboundedReceiver<PortForwardError>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl PortForwarder {
    /// The forwarded ports, with the local ports actually bound (client-go's `GetPorts`).
    pub fn ports(&self) -> &[ForwardedPort] {
        &self.ports
    }

    /// The first local address forwarding to `remote`.
    pub fn local_addr(&self, remote: u16) -> Option<SocketAddr> {
        let port = self.ports.iter().find(|p| p.remote == remote)?;
        Some(SocketAddr::new(*self.addresses.first()?, port.local))
    }

    /// The next failure of a forwarded connection (a connection failing does not stop the
    /// others); `None` once forwarding stopped.
    pub async fn next_error(&mut self) -> Option<PortForwardError> {
        tokio::select! {
            error = self.errors.recv() => error,
            () = self.stop.cancelled() => None,
        }
    }

    /// Stops listening and closes every forwarded connection.
    pub fn stop(self) {}

    /// Stops, and waits until every listener and connection task has ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for PortForwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_as_client_go() {
        let p = |s: &str| s.parse::<ForwardedPort>();
        assert_eq!(p("5000").unwrap(), ForwardedPort::new(5000, 5000));
        assert_eq!(p("8888:5000").unwrap(), ForwardedPort::new(8888, 5000));
        assert_eq!(p(":5000").unwrap(), ForwardedPort::new(0, 5000));
        assert_eq!(p("0:5000").unwrap(), ForwardedPort::new(0, 5000));
        for bad in ["", "x", "5000:", "70000", "1:2:3", "8080:0", "0"] {
            assert!(p(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[tokio::test]
    async fn nothing_to_forward_is_refused_before_any_request() {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other(
                "no request expected",
            ))
        });
        let client = crate::Client::from_kube(kube::Client::new(service, "default"));
        let pods = client.namespaced::<Pod>("ns");
        let none = pods
            .forward_ports("web", &[], &PortForwardOptions::default())
            .await;
        assert!(matches!(none, Err(PortForwardError::Nothing(_))));
        let nowhere = pods
            .forward_ports(
                "web",
                &[ForwardedPort::new(0, 80)],
                &PortForwardOptions::default().addresses([]),
            )
            .await;
        assert!(matches!(nowhere, Err(PortForwardError::Nothing(_))));
        assert!(matches!(
            pods.portforward("web", &[]).await,
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            pods.portforward("", &[80]).await,
            Err(Error::InvalidRequest(_))
        ));
        assert_eq!(
            pods.portforward_url("web", &[80, 8080]),
            "/api/v1/namespaces/ns/pods/web/portforward?ports=80%2C8080"
        );
    }
}
