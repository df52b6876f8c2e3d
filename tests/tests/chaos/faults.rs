//! What the chaos tests share: the fault schedule (proxy cuts and refusals, etcd compaction,
//! API server restarts), a writer that creates, updates and deletes objects, and the comparison
//! of caches and handlers with a fresh list.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_informer::EventHandlerFuncs;
use ferrokube_runtime::client::{Api, ListOptions, Patch, WriteOptions};
use ferrokube_runtime::envtest::Environment;
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tests::fault_proxy::{FaultProxy, Refusal};
use tokio::sync::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed by seed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A seed from the clock, printed by the tests.
    pub fn seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

// === faults ===

/// Which faults a [`Chaos`] run injects, every `period`.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The test's short name, at the start of every line it prints.
    pub label: &'static str,
    /// Time between rounds; every round cuts every connection through the proxy.
    pub period: Duration,
    /// Every other round, also refuse new connections this long (alternately accepting and
    /// closing them, and not listening).
    pub refuse_for: Option<Duration>,
    /// Every third round, cap each connection at this many bytes per second and direction,
    /// until the next round.
    pub bandwidth: Option<u64>,
    /// Compact etcd to its current revision every round.
    pub compact: bool,
    /// Restart kube-apiserver on every round whose number is a multiple of this.
    pub restart_every: Option<u32>,
}

/// The faults a [`Chaos`] run injected.
#[derive(Clone, Debug, Default)]
pub struct FaultReport {
    /// Rounds run.
    pub rounds: u32,
    /// Cut commands, and connections they closed.
    pub cuts: u64,
    /// Connections closed by cuts.
    pub connections_cut: u64,
    /// Refusal windows, and connections refused in them.
    pub refusals: u64,
    /// Connections refused.
    pub connections_refused: u64,
    /// Rounds run with a bandwidth cap.
    pub bandwidth_limits: u64,
    /// etcd compactions.
    pub compactions: u64,
    /// kube-apiserver restarts.
    pub restarts: u64,
    /// Connections the proxy accepted.
    pub connections: u64,
}

impl FaultReport {
    /// Whether any fault was injected.
    pub fn any(&self) -> bool {
        self.cuts + self.refusals + self.bandwidth_limits + self.compactions + self.restarts > 0
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rounds={} cuts={} connections_cut={} refusals={} connections_refused={} \
             bandwidth_caps={} compactions={} api_server_restarts={} proxied_connections={}",
            self.rounds,
            self.cuts,
            self.connections_cut,
            self.refusals,
            self.connections_refused,
            self.bandwidth_limits,
            self.compactions,
            self.restarts,
            self.connections,
        )
    }
}

/// Faults injected in the background until [`stop`](Self::stop).
pub struct Chaos {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<FaultReport>>,
}

impl Chaos {
    /// Starts injecting faults through `proxy` (and into `env`'s etcd and kube-apiserver,
    /// when the schedule says so).
    pub fn start(
        proxy: Arc<FaultProxy>,
        env: Option<Arc<RwLock<Environment>>>,
        schedule: Schedule,
    ) -> Self {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let mut report = FaultReport::default();
            let etcd = match &env {
                Some(env) => env.read().await.etcd_url().map(str::to_owned),
                None => None,
            };
            let mut tick =
                tokio::time::interval_at(Instant::now() + schedule.period, schedule.period);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                report.rounds += 1;
                let round = report.rounds;
                proxy.cut_all();
                if let Some(bytes_per_second) = schedule.bandwidth {
                    proxy.limit_bandwidth((round % 3 == 0).then_some(bytes_per_second));
                }
                if let Some(refuse) = schedule.refuse_for
                    && round % 2 == 1
                {
                    // Alternately accept-and-close, and not listening at all.
                    let how = if round % 4 == 1 {
                        Refusal::AcceptAndClose
                    } else {
                        Refusal::NotListening
                    };
                    proxy.refuse(refuse, how);
                }
                if schedule.compact {
                    let etcd = etcd.as_deref().context("compaction needs a started etcd")?;
                    if compact(etcd).await.context("compacting etcd")?.is_some() {
                        report.compactions += 1;
                    }
                }
                if let (Some(every), Some(env)) = (schedule.restart_every, &env)
                    && round % every == 0
                {
                    let started = Instant::now();
                    env.write()
                        .await
                        .restart_api_server()
                        .await
                        .context("restarting kube-apiserver")?;
                    report.restarts += 1;
                    println!(
                        "CHAOS [{}] kube-apiserver restarted in {:?} (round {round})",
                        schedule.label,
                        started.elapsed()
                    );
                }
            }
            proxy.accept_again();
            proxy.limit_bandwidth(None);
            let stats = proxy.stats();
            report.cuts = stats.cuts;
            report.connections_cut = stats.connections_cut;
            report.refusals = stats.refusals;
            report.connections_refused = stats.connections_refused;
            report.bandwidth_limits = stats.bandwidth_limits;
            report.connections = stats.accepted;
            Ok(report)
        });
        Self { cancel, task }
    }

    /// Stops injecting faults and says what was injected.
    pub async fn stop(self) -> anyhow::Result<FaultReport> {
        self.cancel.cancel();
        self.task.await.context("the fault task")?
    }
}

/// POST to etcd's JSON gateway (plain HTTP on loopback); returns the response body.
async fn etcd_post(etcd_url: &str, path: &str, body: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = etcd_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .context("etcd did not answer")??;
    ensure!(response.starts_with("HTTP/1.1 200"), "etcd said {response}");
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// Compacts etcd to its current revision (physically): every older resourceVersion is gone.
/// Returns the revision, or `None` if it was compacted already (nothing written since).
pub async fn compact(etcd_url: &str) -> anyhow::Result<Option<u64>> {
    // A range read of any key answers with the store's current revision in its header.
    let body = etcd_post(etcd_url, "/v3/kv/range", r#"{"key":"AA=="}"#).await?;
    let revision = revision_in(&body).with_context(|| format!("no revision in {body}"))?;
    let request = format!(r#"{{"revision":"{revision}","physical":true}}"#);
    match etcd_post(etcd_url, "/v3/kv/compaction", &request).await {
        Ok(_) => Ok(Some(revision)),
        Err(e)
            if e.to_string()
                .contains("required revision has been compacted") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The header revision in an etcd gateway answer: `"revision":"123"`.
fn revision_in(body: &str) -> Option<u64> {
    let start = body.find("\"revision\":\"")? + "\"revision\":\"".len();
    let digits: String = body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

// === writer ===

/// What the writer did.
#[derive(Clone, Debug, Default)]
pub struct WriterReport {
    /// Objects created.
    pub creates: u64,
    /// Objects updated.
    pub updates: u64,
    /// Objects deleted.
    pub deletes: u64,
    /// Requests the server rejected because the object did (not) exist: 404 or 409.
    pub rejected: u64,
    /// Requests that failed otherwise (the server was down or restarting).
    pub failures: u64,
}

impl WriterReport {
    /// Writes that succeeded.
    pub fn writes(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }
}

impl fmt::Display for WriterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "creates={} updates={} deletes={} rejected(404/409)={} failed={}",
            self.creates, self.updates, self.deletes, self.rejected, self.failures
        )
    }
}

/// How a writer changes objects of one type.
pub struct Writes<K> {
    /// The objects' API (a direct client: the writer is not what is under test).
    pub api: Api<K>,
    /// Object names are `{prefix}{0..keys}`.
    pub prefix: &'static str,
    /// How many names.
    pub keys: u64,
    /// A new object with this name and value.
    pub make: fn(&str, i64) -> K,
    /// A merge patch setting the value.
    pub patch: fn(i64) -> serde_json::Value,
}

/// Creates (3 in 10), deletes (2 in 10) and updates (5 in 10) objects at random, one request
/// every `pace` at most, until `duration` has passed or `max_requests` were made; says what it
/// did.
pub async fn write<K>(
    writes: Writes<K>,
    seed: u64,
    (duration, pace): (Duration, Duration),
    max_requests: u64,
) -> WriterReport
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut rng = Rng::new(seed);
    let mut report = WriterReport::default();
    let deadline = Instant::now() + duration;
    let mut requests = 0;
    let mut tick = tokio::time::interval(pace);
    while requests < max_requests {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        requests += 1;
        let name = format!("{}{}", writes.prefix, rng.below(writes.keys));
        let value = rng.below(1_000_000) as i64;
        let outcome = match rng.below(10) {
            0..=2 => writes
                .api
                .create(&(writes.make)(&name, value), &WriteOptions::default())
                .await
                .map(|_| report.creates += 1),
            3 | 4 => writes
                .api
                .delete(&name, &Default::default())
                .await
                .map(|_| report.deletes += 1),
            _ => writes
                .api
                .patch(
                    &name,
                    &Patch::Merge((writes.patch)(value)),
                    &Default::default(),
                )
                .await
                .map(|_| report.updates += 1),
        };
        if let Err(e) = outcome {
            if e.is_not_found() || e.is_already_exists() || e.is_conflict() {
                report.rejected += 1;
                continue;
            }
            report.failures += 1;
            // The server may be restarting: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    report
}

// === comparison ===

/// name → resourceVersion of a fresh list.
pub async fn fresh_list<K>(api: &Api<K>) -> anyhow::Result<BTreeMap<String, String>>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let list = api
        .list(&ListOptions::default())
        .await
        .context("a fresh list")?;
    Ok(versions(list.items.iter()))
}

/// name → resourceVersion.
pub fn versions<'a, K: Resource + 'a>(
    items: impl Iterator<Item = &'a K>,
) -> BTreeMap<String, String> {
    items
        .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
        .collect()
}

/// What a handler saw last of each key: `Some(resourceVersion)`, or `None` once deleted.
#[derive(Clone, Default)]
pub struct Seen {
    last: Arc<Mutex<HashMap<String, Option<String>>>>,
    events: Arc<AtomicU64>,
}

impl Seen {
    /// A handler that records what it sees here.
    pub fn handler<K: Resource + Send + Sync + 'static>(&self) -> EventHandlerFuncs<K> {
        let (add, update, delete) = (self.clone(), self.clone(), self.clone());
        EventHandlerFuncs::default()
            .on_add(move |o: Arc<K>, _| add.saw(o.name_any(), Some(o.resource_version())))
            .on_update(move |_, n: Arc<K>| update.saw(n.name_any(), Some(n.resource_version())))
            .on_delete(move |o| delete.saw(o.object().name_any(), None))
    }

    fn saw(&self, name: String, rv: Option<Option<String>>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.last
            .lock()
            .insert(name, rv.map(Option::unwrap_or_default));
    }

    /// Notifications received.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The keys the handler believes exist, with their last resourceVersion.
    pub fn live(&self) -> BTreeMap<String, String> {
        self.last
            .lock()
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect()
    }
}

/// The keys where `got` differs from `want` (at most a few, for an error message).
pub fn differences(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => out.push(format!("{k}: rv {g}, server has {v}")),
            None => out.push(format!("{k}: missing (server has rv {v})")),
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push(format!("{k}: rv {g}, deleted on the server"));
        }
    }
    out.truncate(5);
    out
}
