//! Chaos: slow consumers on a shared informer.
//!
//! One informer, five registrations: a handler that blocks its thread for seconds per
//! notification (`std::thread::sleep`, what the docs tell handlers not to do), an event stream
//! whose consumer awaits seconds per event, and three fast handlers. A writer produces
//! thousands of events with a sizeable payload.
//!
//! Asserted: the fast handlers see every event promptly (for every write, the lag from the
//! writer's answer to the handler's call, and from the reflector decoding it — a transform
//! notes the time — to the call) and reach every key's final state long before the slow
//! consumers; the slow consumers' backlog (exactly: notifications the fast
//! handlers got minus those the slow one handled) is bounded by the events written, and the
//! process's memory growth is bounded by that backlog times the size of one object version.
//!
//! Each registration has an unbounded buffer (as client-go's `processorListener` ring buffer),
//! so a consumer that never catches up holds every notification it has not handled yet:
//! memory grows with the backlog, linearly, and the objects are shared (`Arc`), not copied per
//! consumer. That is the bound this test documents, not a constant one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use ferrokube_informer::{Event, EventHandlerFuncs, InformerConfig, SharedIndexInformer};
use ferrokube_runtime::client::{Client, WriteOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use tests::{Context, Test, eventually};
use tokio_util::sync::CancellationToken;

/// ConfigMaps written; each is created, updated `UPDATES` times and deleted.
const OBJECTS: usize = 200;
const UPDATES: usize = 9;
/// Bytes of data in each version of an object.
const PAYLOAD: usize = 16 * 1024;
/// Concurrent writer tasks.
const WRITERS: usize = 8;
/// How long the slow consumers take per notification.
const SLOW: Duration = Duration::from_secs(2);
const FAST_HANDLERS: usize = 3;

pub fn tests() -> Vec<Test> {
    vec![Test::new(
        "chaos::slow_consumers::blocking_handler_stalls_no_one_and_memory_follows_its_backlog",
        slow_consumers,
    )]
}

/// `(name, resourceVersion)` of an event, or of a write.
type Version = (String, String);

/// The resident set size of this process, from `/proc/self/status` (`VmRSS`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn version(cm: &ConfigMap) -> Version {
    (
        cm.metadata.name.clone().unwrap_or_default(),
        cm.metadata.resource_version.clone().unwrap_or_default(),
    )
}

fn configmap(name: &str, round: usize) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    let filler = char::from(b'a' + (round % 26) as u8);
    cm.data = Some(
        [
            ("round".to_owned(), round.to_string()),
            ("payload".to_owned(), filler.to_string().repeat(PAYLOAD)),
        ]
        .into(),
    );
    cm
}

/// What a fast handler saw: when each version reached it, and each key's last state.
#[derive(Default)]
struct Fast {
    seen_at: Mutex<HashMap<Version, Instant>>,
    last: Mutex<HashMap<String, Option<String>>>,
    notifications: AtomicU64,
}

fn fast_handler(fast: &Arc<Fast>) -> EventHandlerFuncs<ConfigMap> {
    let (a, u, d) = (Arc::clone(fast), Arc::clone(fast), Arc::clone(fast));
    let saw = |f: &Fast, cm: &ConfigMap| {
        let v = version(cm);
        f.notifications.fetch_add(1, Ordering::Relaxed);
        f.last.lock().insert(v.0.clone(), Some(v.1.clone()));
        f.seen_at.lock().insert(v, Instant::now());
    };
    EventHandlerFuncs::default()
        .on_add(move |cm, _| saw(&a, &cm))
        .on_update(move |_, cm| saw(&u, &cm))
        .on_delete(move |cm| {
            let name = version(cm.object()).0;
            d.notifications.fetch_add(1, Ordering::Relaxed);
            d.last.lock().insert(name, None);
        })
}

/// Writes every object's life; returns when each version was acknowledged.
async fn write_all(client: &Client, ns: &str) -> anyhow::Result<Vec<(Version, Instant)>> {
    let api = client.namespaced::<ConfigMap>(ns);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (w..OBJECTS).step_by(WRITERS) {
                let name = format!("cm-{i:03}");
                let created = api
                    .create(&configmap(&name, 0), &WriteOptions::default())
                    .await
                    .with_context(|| format!("creating {name}"))?;
                acked.push((version(&created), Instant::now()));
                let mut current = created;
                for round in 1..=UPDATES {
                    let mut next = configmap(&name, round);
                    next.metadata.resource_version = current.metadata.resource_version.clone();
                    current = api
                        .update(&next, &WriteOptions::default())
                        .await
                        .with_context(|| format!("updating {name}"))?;
                    acked.push((version(&current), Instant::now()));
                }
                api.delete(&name, &Default::default())
                    .await
                    .with_context(|| format!("deleting {name}"))?;
            }
            anyhow::Ok(acked)
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.context("a writer task")??);
    }
    Ok(acked)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn slow_consumers(ctx: Context) -> anyhow::Result<()> {
    let client = Client::from_kube(ctx.client.clone());
    let api = client.namespaced::<ConfigMap>(&ctx.namespace);
    // When the reflector decoded each version: the lag from there to a handler is the
    // informer's own (the API server's watch latency left out).
    let decoded_at: Arc<Mutex<HashMap<Version, Instant>>> = Arc::default();
    let decoded = Arc::clone(&decoded_at);
    let config = InformerConfig::default().transform(Arc::new(move |cm: ConfigMap| {
        decoded.lock().insert(version(&cm), Instant::now());
        cm
    }));
    let informer = SharedIndexInformer::new(api, config);

    // The blocking handler: it holds its worker thread for SLOW per notification.
    let blocking_done = Arc::new(AtomicU64::new(0));
    let done = Arc::clone(&blocking_done);
    let block = move || {
        std::thread::sleep(SLOW);
        done.fetch_add(1, Ordering::Relaxed);
    };
    let (b1, b2, b3) = (block.clone(), block.clone(), block);
    let _blocking = informer.add_event_handler(
        EventHandlerFuncs::default()
            .on_add(move |_, _| b1())
            .on_update(move |_, _| b2())
            .on_delete(move |_| b3()),
    );
    // The slow stream: its consumer awaits SLOW per event.
    let stream_done = Arc::new(AtomicU64::new(0));
    let (_stream_registration, mut stream) = informer.add_event_stream();
    let consumer = {
        let done = Arc::clone(&stream_done);
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                let _: Event<ConfigMap> = event;
                tokio::time::sleep(SLOW).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let fast: Vec<Arc<Fast>> = (0..FAST_HANDLERS).map(|_| Arc::default()).collect();
    let _fast_registrations: Vec<_> = fast
        .iter()
        .map(|f| informer.add_event_handler(fast_handler(f)))
        .collect();

    let cancel = CancellationToken::new();
    let run = {
        let (i, c) = (informer.clone(), cancel.clone());
        tokio::spawn(async move { i.run(c).await })
    };
    ensure!(
        tokio::time::timeout(
            Duration::from_secs(30),
            informer.wait_for_cache_sync(&cancel)
        )
        .await
        .unwrap_or(false),
        "the informer did not sync"
    );
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let rss_before = rss_bytes();

    let started = Instant::now();
    let acked = write_all(&client, &ctx.namespace).await?;
    let writer_took = started.elapsed();
    let events = (OBJECTS * (UPDATES + 2)) as u64;

    // Every fast handler reaches every key's final state (deleted) promptly.
    eventually(
        "every fast handler to see every object deleted",
        Duration::from_secs(30),
        || async {
            fast.iter()
                .all(|f| {
                    let last = f.last.lock();
                    last.len() == OBJECTS && last.values().all(Option::is_none)
                })
                .then_some(())
        },
    )
    .await?;
    let fast_done = started.elapsed();
    let rss_after = rss_bytes();
    let blocking_handled = blocking_done.load(Ordering::Relaxed);
    let stream_handled = stream_done.load(Ordering::Relaxed);

    // Lag from each write's acknowledgement to each fast handler's call, and from the
    // reflector's decoding of that version to the call.
    let mut lags = Vec::new();
    let mut internal = Vec::new();
    let mut missing = 0usize;
    {
        let decoded = decoded_at.lock();
        for f in &fast {
            let seen = f.seen_at.lock();
            for (v, at) in &acked {
                match seen.get(v) {
                    Some(seen_at) => {
                        lags.push(seen_at.saturating_duration_since(*at));
                        if let Some(decoded) = decoded.get(v) {
                            internal.push(seen_at.saturating_duration_since(*decoded));
                        }
                    }
                    None => missing += 1,
                }
            }
        }
    }
    lags.sort();
    internal.sort();
    let notifications: Vec<u64> = fast
        .iter()
        .map(|f| f.notifications.load(Ordering::Relaxed))
        .collect();
    // Both slow consumers got the same notifications as the fast handlers, in order.
    let backlog_blocking = notifications[0].saturating_sub(blocking_handled);
    let backlog_stream = notifications[0].saturating_sub(stream_handled);
    let growth = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    // One object version: its payload and round, plus decoding and bookkeeping overhead.
    let per_version = (PAYLOAD + 4096) as u64;
    let backlog = backlog_blocking.max(backlog_stream);
    let bound = backlog * per_version * 3 / 2 + 64 * 1024 * 1024;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .context(
            "run() did not end within 10 s of being cancelled (the blocking handler holds it)",
        )?
        .context("the informer task")?;
    consumer.abort();

    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "CHAOS [slow consumers] faults injected: a handler blocking its thread {SLOW:?} per \
         notification and a stream consumer awaiting {SLOW:?} per event, against \
         {FAST_HANDLERS} fast handlers, on {workers} runtime workers"
    );
    println!(
        "CHAOS [slow consumers] {events} events ({OBJECTS} objects x {} writes, {} KiB \
         payload) written in {writer_took:.1?}; fast handlers saw the final state of every key \
         after {fast_done:.1?}, notifications {notifications:?}, {missing} writes unseen; \
         lag write->handler p50 {:?} p99 {:?} max {:?}, reflector->handler p50 {:?} p99 {:?} \
         max {:?}",
        UPDATES + 2,
        PAYLOAD / 1024,
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
        percentile(&internal, 0.5),
        percentile(&internal, 0.99),
        percentile(&internal, 1.0),
    );
    println!(
        "CHAOS [slow consumers] by then the blocking handler had handled {blocking_handled} \
         (backlog {backlog_blocking}), the slow stream {stream_handled} (backlog \
         {backlog_stream}); RSS {:.1} MiB -> {:.1} MiB (growth {:.1} MiB, bound {:.1} MiB = \
         backlog x {} KiB x 1.5 + 64 MiB)",
        mb(rss_before.unwrap_or_default()),
        mb(rss_after.unwrap_or_default()),
        mb(growth.unwrap_or_default()),
        mb(bound),
        per_version / 1024,
    );

    ensure!(
        missing == 0,
        "{missing} acknowledged writes never reached a fast handler"
    );
    ensure!(
        notifications.iter().all(|n| *n >= events),
        "fast handlers got {notifications:?} notifications for {events} events"
    );
    let max_lag = percentile(&lags, 1.0);
    ensure!(
        max_lag < Duration::from_secs(10),
        "a fast handler saw a write {max_lag:?} after it was acknowledged: stalled by the slow \
         consumers"
    );
    // Inside the informer (decoded → handled) a fast handler never waits for a slow
    // consumer's notification: a stall would last up to SLOW.
    let max_internal = percentile(&internal, 1.0);
    ensure!(
        internal.len() == lags.len() && max_internal < SLOW / 2,
        "a fast handler was called {max_internal:?} after the reflector decoded the object \
         ({} of {} lags measured)",
        internal.len(),
        lags.len()
    );
    // The slow ones could not have kept up: the comparison means something.
    ensure!(
        blocking_handled * 10 < events && stream_handled * 10 < events,
        "the slow consumers handled {blocking_handled} and {stream_handled} of {events}: not slow"
    );
    ensure!(
        backlog_blocking <= notifications[0] && backlog_stream <= notifications[0],
        "backlog beyond the notifications sent"
    );
    if let Some(growth) = growth {
        ensure!(
            growth <= bound,
            "memory grew {:.1} MiB for a backlog of {backlog}: more than {:.1} MiB",
            mb(growth),
            mb(bound)
        );
    }
    Ok(())
}
