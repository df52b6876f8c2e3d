//! A TCP proxy on loopback that injects network faults between a client and kube-apiserver.
//!
//! TLS passes through untouched: the client talks TLS to the API server through the proxy,
//! whose certificate covers `127.0.0.1`. Point a client at the proxy with
//! [`FaultProxy::client_config`]; then, on command, the proxy
//! - [cuts](FaultProxy::cut_all) every open connection,
//! - [stalls](FaultProxy::stall) every connection (no bytes either way, connections stay open),
//! - [caps the bandwidth](FaultProxy::limit_bandwidth) of each connection, per direction,
//! - [refuses new connections](FaultProxy::refuse) for a while (accept-and-close, or not
//!   listening at all),
//!
//! and counts what it did ([`FaultProxy::stats`]) so a test can report the faults it injected.
//!
//! ```no_run
//! # async fn demo(env: &ferrokube_runtime::envtest::Environment) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use tests::fault_proxy::FaultProxy;
//!
//! let proxy = FaultProxy::in_front_of(env.config()).await?;
//! let client = kube::Client::try_from(proxy.client_config(env.config())?)?;
//! // … start informers with `client` …
//! proxy.cut_all();
//! proxy.stall(Duration::from_secs(3));
//! println!("{}", proxy.stats());
//! # drop(client); Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the proxy waits to connect to the upstream before giving up on a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest chunk forwarded at once.
const CHUNK: usize = 16 * 1024;

/// How the proxy refuses new connections during [`FaultProxy::refuse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Accept each connection and close it at once (the client sees an EOF or reset).
    AcceptAndClose,
    /// Stop listening: connecting fails with "connection refused".
    NotListening,
}

/// What the proxy did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded to the upstream.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections whose upstream could not be reached (closed at once).
    pub upstream_failures: u64,
    /// [`FaultProxy::cut_all`] commands.
    pub cuts: u64,
    /// Connections closed by those commands.
    pub connections_cut: u64,
    /// [`FaultProxy::stall`] commands.
    pub stalls: u64,
    /// Total time stalled (sum of the stall durations commanded).
    pub stalled: Duration,
    /// [`FaultProxy::refuse`] commands.
    pub refusals: u64,
    /// Connections refused: accepted and closed at once, or not accepted while not listening
    /// (those are counted only if the client retried and the proxy saw the retry).
    pub connections_refused: u64,
    /// [`FaultProxy::limit_bandwidth`] commands that set a limit.
    pub bandwidth_limits: u64,
    /// Bytes forwarded client → server.
    pub bytes_to_server: u64,
    /// Bytes forwarded server → client.
    pub bytes_to_client: u64,
}

impl ProxyStats {
    /// Fault commands issued (cuts, stalls, refusals, bandwidth limits).
    pub fn faults(&self) -> u64 {
        self.cuts + self.stalls + self.refusals + self.bandwidth_limits
    }
}

impl fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} open={} upstream_failures={} cuts={} connections_cut={} stalls={} \
             stalled={:?} refusals={} connections_refused={} bandwidth_limits={} \
             bytes_to_server={} bytes_to_client={}",
            self.accepted,
            self.open,
            self.upstream_failures,
            self.cuts,
            self.connections_cut,
            self.stalls,
            self.stalled,
            self.refusals,
            self.connections_refused,
            self.bandwidth_limits,
            self.bytes_to_server,
            self.bytes_to_client,
        )
    }
}

/// The faults in force, as the connection tasks read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    /// No bytes move, either way, until then.
    stalled_until: Option<Instant>,
    /// New connections are refused until then, this way.
    refused_until: Option<(Instant, Refusal)>,
    /// Bytes per second, per connection and direction.
    bandwidth: Option<u64>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    upstream_failures: AtomicU64,
    cuts: AtomicU64,
    connections_cut: AtomicU64,
    stalls: AtomicU64,
    stalled_ms: AtomicU64,
    refusals: AtomicU64,
    connections_refused: AtomicU64,
    bandwidth_limits: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Open connections: id → the token that cuts it.
    connections: Mutex<HashMap<u64, CancellationToken>>,
    next_id: AtomicU64,
    counters: Counters,
}

/// A fault-injecting TCP proxy on `127.0.0.1` in front of one upstream address.
///
/// Dropping it stops listening and closes every connection.
#[must_use = "dropping the proxy closes every connection through it"]
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

// === impl FaultProxy ===

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            faults: watch::Sender::new(Faults::default()),
            connections: Mutex::default(),
            next_id: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            address,
            Arc::clone(&shared),
            cancel.clone(),
        ));
        Ok(Self {
            address,
            shared,
            cancel,
        })
    }

    /// Starts a proxy in front of the API server `config` points at.
    pub async fn in_front_of(config: &kube::Config) -> anyhow::Result<Self> {
        let url = &config.cluster_url;
        let host = url.host().context("the cluster URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_u16().unwrap_or(443);
        let upstream = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {url}"))?
            .next()
            .with_context(|| format!("{url} resolves to no address"))?;
        Ok(Self::start(upstream).await?)
    }

    /// `config` with its cluster URL pointing at the proxy (same scheme and path; TLS and
    /// credentials unchanged). The server's certificate is still checked against the original
    /// host: envtest's covers `127.0.0.1`; for another host the config's `tls_server_name` is
    /// set to it, unless it was set already.
    pub fn client_config(&self, config: &kube::Config) -> anyhow::Result<kube::Config> {
        let original = config
            .cluster_url
            .host()
            .context("the cluster URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut parts = config.cluster_url.clone().into_parts();
        parts.authority = Some(self.address.to_string().parse()?);
        let mut proxied = config.clone();
        proxied.cluster_url = http::Uri::from_parts(parts)?;
        if proxied.tls_server_name.is_none() && original != self.address.ip().to_string() {
            proxied.tls_server_name = Some(original);
        }
        Ok(proxied)
    }

    /// The address the proxy listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Closes every open connection at once; returns how many.
    pub fn cut_all(&self) -> usize {
        let cut: Vec<CancellationToken> = self
            .shared
            .connections
            .lock()
            .drain()
            .map(|(_, token)| token)
            .collect();
        for token in &cut {
            token.cancel();
        }
        let counters = &self.shared.counters;
        counters.cuts.fetch_add(1, Ordering::Relaxed);
        counters
            .connections_cut
            .fetch_add(cut.len() as u64, Ordering::Relaxed);
        cut.len()
    }

    /// Stops every byte, either way, on every connection (open or opened meanwhile) for
    /// `duration`; connections stay open. A longer stall in force is not shortened.
    pub fn stall(&self, duration: Duration) {
        let until = Instant::now() + duration;
        self.shared.faults.send_modify(|f| {
            f.stalled_until = Some(f.stalled_until.map_or(until, |u| u.max(until)));
        });
        let counters = &self.shared.counters;
        counters.stalls.fetch_add(1, Ordering::Relaxed);
        counters
            .stalled_ms
            .fetch_add(duration.as_millis() as u64, Ordering::Relaxed);
    }

    /// Ends a stall now.
    pub fn unstall(&self) {
        self.shared.faults.send_modify(|f| f.stalled_until = None);
    }

    /// Caps each connection at `bytes_per_second` in each direction; `None` lifts the cap.
    pub fn limit_bandwidth(&self, bytes_per_second: Option<u64>) {
        let bandwidth = bytes_per_second.map(|b| b.max(1));
        self.shared.faults.send_modify(|f| f.bandwidth = bandwidth);
        if bandwidth.is_some() {
            self.shared
                .counters
                .bandwidth_limits
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refuses new connections for `duration`, the way `how` says; open connections are
    /// left alone.
    pub fn refuse(&self, duration: Duration, how: Refusal) {
        let until = Instant::now() + duration;
        self.shared
            .faults
            .send_modify(|f| f.refused_until = Some((until, how)));
        self.shared
            .counters
            .refusals
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Accepts new connections again now.
    pub fn accept_again(&self) {
        self.shared.faults.send_modify(|f| f.refused_until = None);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().len()
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            accepted: load(&c.accepted),
            open: self.open_connections() as u64,
            upstream_failures: load(&c.upstream_failures),
            cuts: load(&c.cuts),
            connections_cut: load(&c.connections_cut),
            stalls: load(&c.stalls),
            stalled: Duration::from_millis(load(&c.stalled_ms)),
            refusals: load(&c.refusals),
            connections_refused: load(&c.connections_refused),
            bandwidth_limits: load(&c.bandwidth_limits),
            bytes_to_server: load(&c.bytes_to_server),
            bytes_to_client: load(&c.bytes_to_client),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A listener on `address` with `SO_REUSEADDR`, so the proxy can listen again on its port
/// after [`Refusal::NotListening`].
fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    loop {
        let current = *faults.borrow_and_update();
        let refusing = current
            .refused_until
            .filter(|(until, _)| *until > Instant::now());
        match (refusing, listener.as_ref()) {
            (Some((until, Refusal::NotListening)), _) => {
                listener = None;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(until) => {}
                    _ = faults.changed() => {}
                }
            }
            (_, None) => match bind(address) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(%address, error = %e, "fault proxy: cannot listen again; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
            (refusing, Some(l)) => {
                let wake = refusing.map(|(until, _)| until);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = faults.changed() => {}
                    () = sleep_until_opt(wake) => {}
                    accepted = l.accept() => match accepted {
                        Ok((stream, _)) => {
                            if refusing.is_some() {
                                shared.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                                drop(stream);
                            } else {
                                accept(stream, &shared, &cancel);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "fault proxy: accept failed");
                        }
                    },
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn accept(client: TcpStream, shared: &Arc<Shared>, cancel: &CancellationToken) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let token = cancel.child_token();
    shared.connections.lock().insert(id, token.clone());
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            () = connection(client, &shared) => {}
        }
        shared.connections.lock().remove(&id);
    });
}

/// Forwards one connection both ways until both sides are done or one fails.
async fn connection(client: TcpStream, shared: &Arc<Shared>) {
    let upstream = match tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => {
            shared
                .counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let up = pump(
        client_read,
        upstream_write,
        shared,
        &shared.counters.bytes_to_server,
    );
    let down = pump(
        upstream_read,
        client_write,
        shared,
        &shared.counters.bytes_to_client,
    );
    // Either side failing ends both; an orderly close (EOF) is forwarded as a half-close.
    let _ = tokio::try_join!(up, down);
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    let mut faults = shared.faults.subscribe();
    let mut buf = vec![0u8; CHUNK];
    // Bandwidth pacing: when the next byte may be sent.
    let mut next_send = Instant::now();
    loop {
        wait_while_stalled(&mut faults).await;
        let limit = faults.borrow().bandwidth;
        // Under a cap, forward at most a tenth of a second's worth at once.
        let max = limit.map_or(CHUNK, |b| (b / 10).clamp(1, CHUNK as u64) as usize);
        let n = from.read(&mut buf[..max]).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        wait_while_stalled(&mut faults).await;
        let bandwidth = faults.borrow().bandwidth;
        if let Some(bytes_per_second) = bandwidth {
            let now = Instant::now();
            next_send = next_send.max(now);
            tokio::time::sleep_until(next_send).await;
            next_send += Duration::from_secs_f64(n as f64 / bytes_per_second as f64);
        }
        // Counted before the write, so a peer that got the bytes sees them counted.
        forwarded.fetch_add(n as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await?;
    }
}

async fn wait_while_stalled(faults: &mut watch::Receiver<Faults>) {
    loop {
        let until = faults.borrow_and_update().stalled_until;
        match until {
            Some(until) if until > Instant::now() => {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    _ = faults.changed() => {}
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(data).await?;
        let mut back = vec![0; data.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        let stats = proxy.stats();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.open, 1);
        assert_eq!(stats.bytes_to_server, 5);
        assert_eq!(stats.bytes_to_client, 5);
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_new_ones_work() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut a = TcpStream::connect(proxy.address()).await.unwrap();
        let mut b = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut a, b"x").await.unwrap();
        round_trip(&mut b, b"y").await.unwrap();
        assert_eq!(proxy.cut_all(), 2);
        let mut buf = [0u8; 1];
        // The client sees the end of the stream (or a reset).
        assert!(matches!(a.read(&mut buf).await, Ok(0) | Err(_)));
        let mut c = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut c, b"z").await.unwrap(), b"z");
        let stats = proxy.stats();
        assert_eq!((stats.cuts, stats.connections_cut), (1, 2));
    }

    #[tokio::test]
    async fn stall_holds_bytes_until_it_ends() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut s, b"a").await.unwrap();
        proxy.stall(Duration::from_secs(3600));
        s.write_all(b"b").await.unwrap();
        let mut buf = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(early.is_err(), "a byte went through the stall");
        assert_eq!(
            proxy.open_connections(),
            1,
            "the stalled connection was closed"
        );
        proxy.unstall();
        let late = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await;
        assert_eq!(late.unwrap().unwrap(), 1);
        assert_eq!(&buf, b"b");
        assert_eq!(proxy.stats().stalls, 1);
    }

    #[tokio::test]
    async fn unstall_releases_at_once() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        proxy.stall(Duration::from_secs(3600));
        s.write_all(b"b").await.unwrap();
        proxy.unstall();
        let mut buf = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"b");
    }

    #[tokio::test]
    async fn refuse_accept_and_close_then_accept_again() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.refuse(Duration::from_secs(3600), Refusal::AcceptAndClose);
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        proxy.accept_again();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"ok").await.unwrap(), b"ok");
        let stats = proxy.stats();
        assert_eq!((stats.refusals, stats.connections_refused), (1, 1));
    }

    #[tokio::test]
    async fn refuse_by_not_listening_then_listen_again() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.refuse(Duration::from_secs(3600), Refusal::NotListening);
        let refused = async {
            loop {
                match TcpStream::connect(proxy.address()).await {
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                    // Until the accept loop has dropped its listener.
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), refused)
            .await
            .unwrap();
        proxy.accept_again();
        let connected = async {
            loop {
                if let Ok(mut s) = TcpStream::connect(proxy.address()).await
                    && let Ok(back) = round_trip(&mut s, b"ok").await
                {
                    return back;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let back = tokio::time::timeout(Duration::from_secs(10), connected)
            .await
            .unwrap();
        assert_eq!(back, b"ok");
    }

    #[tokio::test]
    async fn bandwidth_cap_paces_bytes() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        proxy.limit_bandwidth(Some(1000));
        let start = Instant::now();
        let back = round_trip(&mut s, &[7u8; 300]).await.unwrap();
        assert_eq!(back, [7u8; 300]);
        // 300 bytes at 1000 B/s go in chunks of 100 bytes, the first at once and the others
        // 100 ms apart: a lower bound the pacing guarantees, not a measurement.
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        proxy.limit_bandwidth(None);
        assert_eq!(proxy.stats().bandwidth_limits, 1);
    }

    #[tokio::test]
    async fn client_config_points_at_the_proxy_and_keeps_the_server_name() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut config = kube::Config::new("https://127.0.0.1:6443/prefix".parse().unwrap());
        let proxied = proxy.client_config(&config).unwrap();
        assert_eq!(
            proxied.cluster_url.to_string(),
            format!("https://{}/prefix", proxy.address())
        );
        assert_eq!(
            proxied.tls_server_name, None,
            "127.0.0.1 is the proxy's host too"
        );
        config.cluster_url = "https://api.example.test:443".parse().unwrap();
        let proxied = proxy.client_config(&config).unwrap();
        assert_eq!(proxied.tls_server_name.as_deref(), Some("api.example.test"));
        config.tls_server_name = Some("kubernetes".to_owned());
        let proxied = proxy.client_config(&config).unwrap();
        assert_eq!(proxied.tls_server_name.as_deref(), Some("kubernetes"));
    }

    #[tokio::test]
    async fn unreachable_upstream_closes_the_connection() {
        // A port nothing listens on: bind one, then drop it.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = FaultProxy::start(address).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        assert_eq!(proxy.stats().upstream_failures, 1);
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_connections() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut s, b"x").await.unwrap();
        drop(proxy);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))));
    }
}
