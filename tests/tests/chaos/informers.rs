//! Informer caches converge to a fresh list, and handlers see the final state of every key,
//! while a writer changes objects and the faults of a [`Schedule`] are injected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use ferrokube_informer::labels::Selector;
use ferrokube_informer::{InformerConfig, SharedIndexInformer};
use ferrokube_runtime::cache::{Cache, CacheOptions};
use ferrokube_runtime::client::Client;
use ferrokube_runtime::envtest::{Environment, EnvironmentOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use serde_json::json;
use tests::fault_proxy::FaultProxy;
use tests::{Context, Test, eventually};
use tokio::sync::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::faults::{
    Chaos, FaultReport, Rng, Schedule, Seen, Writes, differences, fresh_list, write,
};
use crate::widgets::{self, Widget};

/// How long the writers write.
const WRITE_FOR: Duration = Duration::from_secs(20);
/// At most this many requests per writer, one every [`WRITE_EVERY`] at most (so the faults,
/// not the request budget, bound the writers' time).
const MAX_WRITES: u64 = 2000;
/// The writers' pace.
const WRITE_EVERY: Duration = Duration::from_millis(12);
/// Names per type.
const KEYS: u64 = 40;
/// How long the caches may take to converge once the faults stop: the reflector's backoff
/// grows to 30–60 s under repeated failures (as client-go's, reset after 2 minutes without
/// one), so the last relist may come a minute after the last fault.
const CONVERGE_WITHIN: Duration = Duration::from_secs(80);

pub fn tests() -> Vec<Test> {
    vec![
        Test::new(
            "chaos::informers_converge_while_connections_are_cut",
            connections_cut,
        ),
        Test::new(
            "chaos::informers_converge_through_compaction_and_api_server_restarts",
            compaction_and_restarts,
        )
        .starts_control_planes(),
    ]
}

async fn connections_cut(ctx: Context) -> anyhow::Result<()> {
    let config = ctx.env.read().await.config().clone();
    let schedule = Schedule {
        label: "informers/cuts",
        period: Duration::from_millis(2500),
        refuse_for: Some(Duration::from_secs(1)),
        bandwidth: Some(16 * 1024),
        compact: false,
        restart_every: None,
    };
    let outcome =
        informer_chaos(&config, ctx.client.clone(), &ctx.namespace, None, schedule).await?;
    ensure!(
        outcome.faults.connections_cut > 0,
        "no connection was cut: {}",
        outcome.faults
    );
    Ok(())
}

async fn compaction_and_restarts(_ctx: Context) -> anyhow::Result<()> {
    // Without the watch cache, lists and watches from a resourceVersion go to etcd, so every
    // one from before a compaction is answered 410 Gone (with the watch cache the API server
    // serves them from memory, and a restart rebuilds that memory from the latest revision).
    let env = EnvironmentOptions::default()
        .api_server_flag("--watch-cache=false")
        .start()
        .await?;
    let config = env.config().clone();
    let direct = env.client()?;
    let namespace = "chaos-compaction";
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.to_owned());
    kube::Api::<Namespace>::all(direct.clone())
        .create(&Default::default(), &ns)
        .await?;
    let env = Arc::new(RwLock::new(env));
    let schedule = Schedule {
        label: "informers/compaction+restarts",
        period: Duration::from_secs(2),
        refuse_for: None,
        bandwidth: None,
        compact: true,
        restart_every: Some(4),
    };
    let outcome =
        informer_chaos(&config, direct, namespace, Some(Arc::clone(&env)), schedule).await?;
    ensure!(outcome.faults.compactions > 0 && outcome.faults.restarts > 0);
    ensure!(
        outcome.expired > 0,
        "no 410 Gone reached the informers ({} list/watch errors)",
        outcome.errors
    );
    Ok(())
}

/// What [`informer_chaos`] saw.
struct Outcome {
    faults: FaultReport,
    /// List/watch errors the ferrokube informers reported, and how many were 410 Gone.
    errors: u64,
    expired: u64,
}

/// One cache under test: its contents now, and what its handler saw.
struct Observed {
    label: &'static str,
    contents: Box<dyn Fn() -> BTreeMap<String, String> + Send + Sync>,
    seen: Seen,
    /// Which fresh list it must match: 0 ConfigMaps, 1 Widgets.
    kind: usize,
}

/// Counts an informer's list/watch errors and 410s.
#[derive(Clone, Default)]
struct ErrorCount {
    errors: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
}

impl ErrorCount {
    fn config<K>(&self) -> InformerConfig<K> {
        let count = self.clone();
        InformerConfig::default().watch_error_handler(Arc::new(move |e| {
            count.errors.fetch_add(1, Ordering::Relaxed);
            if e.is_expired() {
                count.expired.fetch_add(1, Ordering::Relaxed);
            }
        }))
    }
}

/// Informers on ConfigMaps and Widgets (the informer crate's and the runtime cache's) through
/// a fault proxy in front of `config`'s API server, writers changing objects directly, and
/// the faults of `schedule`; then every cache must equal a fresh list and every handler must
/// have seen the final state of every key.
async fn informer_chaos(
    config: &kube::Config,
    direct: kube::Client,
    namespace: &str,
    env: Option<Arc<RwLock<Environment>>>,
    schedule: Schedule,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let direct = Client::from_kube(direct);
    widgets::install(&direct).await?;
    let proxy = Arc::new(FaultProxy::in_front_of(config).await?);
    let proxied = Client::from_kube(kube::Client::try_from(proxy.client_config(config)?)?);

    let errors = ErrorCount::default();
    let cancel = CancellationToken::new();
    let mut observed = Vec::new();

    let configmaps =
        SharedIndexInformer::new(proxied.namespaced::<ConfigMap>(namespace), errors.config());
    let seen = Seen::default();
    let _r1 = configmaps.add_event_handler(seen.handler());
    let informer = configmaps.clone();
    observed.push(Observed {
        label: "informer/configmaps",
        contents: Box::new(move || {
            crate::faults::versions(informer.indexer().list().iter().map(|o| o.as_ref()))
        }),
        seen,
        kind: 0,
    });
    let widget_informer =
        SharedIndexInformer::new(proxied.namespaced::<Widget>(namespace), errors.config());
    let seen = Seen::default();
    let _r2 = widget_informer.add_event_handler(seen.handler());
    let informer = widget_informer.clone();
    observed.push(Observed {
        label: "informer/widgets",
        contents: Box::new(move || {
            crate::faults::versions(informer.indexer().list().iter().map(|o| o.as_ref()))
        }),
        seen,
        kind: 1,
    });
    let cache = Cache::new(
        proxied.clone(),
        CacheOptions::default().namespaces([namespace.to_owned()]),
    );
    let cached_configmaps = cache.informer::<ConfigMap>();
    let seen = Seen::default();
    let _r3 = cached_configmaps.add_event_handler(seen.handler());
    observed.push(Observed {
        label: "cache/configmaps",
        contents: Box::new(move || {
            crate::faults::versions(
                cached_configmaps
                    .list(None, &Selector::everything())
                    .iter()
                    .map(|o| o.as_ref()),
            )
        }),
        seen,
        kind: 0,
    });
    let cached_widgets = cache.informer::<Widget>();
    let seen = Seen::default();
    let _r4 = cached_widgets.add_event_handler(seen.handler());
    observed.push(Observed {
        label: "cache/widgets",
        contents: Box::new(move || {
            crate::faults::versions(
                cached_widgets
                    .list(None, &Selector::everything())
                    .iter()
                    .map(|o| o.as_ref()),
            )
        }),
        seen,
        kind: 1,
    });

    let tasks = [
        {
            let (informer, c) = (configmaps.clone(), cancel.clone());
            tokio::spawn(async move { informer.run(c).await })
        },
        {
            let (informer, c) = (widget_informer.clone(), cancel.clone());
            tokio::spawn(async move { informer.run(c).await })
        },
    ];
    let cache_task = {
        let (cache, c) = (cache.clone(), cancel.clone());
        tokio::spawn(async move { cache.start(c).await })
    };
    ensure!(
        configmaps.wait_for_cache_sync(&cancel).await
            && widget_informer.wait_for_cache_sync(&cancel).await
            && cache.wait_for_cache_sync(&cancel).await,
        "the informers did not sync"
    );

    let seed = Rng::seed();
    let chaos = Chaos::start(Arc::clone(&proxy), env, schedule.clone());
    let configmap_writes = Writes {
        api: direct.namespaced::<ConfigMap>(namespace),
        prefix: "cm-",
        keys: KEYS,
        make: |name, value| {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(name.to_owned());
            cm.data = Some(BTreeMap::from([("v".to_owned(), value.to_string())]));
            cm
        },
        patch: |value| json!({"data": {"v": value.to_string()}}),
    };
    let widget_writes = Writes {
        api: direct.namespaced::<Widget>(namespace),
        prefix: "w-",
        keys: KEYS,
        make: |name, value| Widget::new(name, widgets::WidgetSpec { value }),
        patch: |value| json!({"spec": {"value": value}}),
    };
    let (cm_report, widget_report) = tokio::join!(
        write(configmap_writes, seed, (WRITE_FOR, WRITE_EVERY), MAX_WRITES),
        write(
            widget_writes,
            seed.rotate_left(17),
            (WRITE_FOR, WRITE_EVERY),
            MAX_WRITES
        ),
    );
    let faults = chaos.stop().await?;
    let stopped = Instant::now();
    let label = schedule.label;
    println!(
        "CHAOS [{label}] schedule: {}; seed={seed}",
        schedule_label(&schedule)
    );
    println!("CHAOS [{label}] faults injected: {faults}");
    println!("CHAOS [{label}] configmap writer: {cm_report}");
    println!("CHAOS [{label}] widget writer: {widget_report}");

    // Fresh lists (nothing writes any more), then every cache and handler must match them.
    let fresh = [
        fresh_list(&direct.namespaced::<ConfigMap>(namespace)).await?,
        fresh_list(&direct.namespaced::<Widget>(namespace)).await?,
    ];
    for o in &observed {
        let want = &fresh[o.kind];
        let waited = eventually(
            &format!("{} to match a fresh list", o.label),
            CONVERGE_WITHIN.saturating_sub(stopped.elapsed()),
            || async { ((o.contents)() == *want && o.seen.live() == *want).then_some(()) },
        )
        .await;
        if let Err(e) = waited {
            let cache = differences(want, &(o.contents)());
            let handler = differences(want, &o.seen.live());
            anyhow::bail!("{e}: cache differs at {cache:?}; handler differs at {handler:?}");
        }
    }
    let converged = stopped.elapsed();
    for o in &observed {
        println!(
            "CHAOS [{label}] {}: {} objects equal a fresh list (keys and resourceVersions); handler saw \
             {} events and the final state of every key",
            o.label,
            fresh[o.kind].len(),
            o.seen.events()
        );
    }
    let outcome = Outcome {
        faults,
        errors: errors.errors.load(Ordering::Relaxed),
        expired: errors.expired.load(Ordering::Relaxed),
    };
    println!(
        "CHAOS [{label}] list/watch errors seen by the informers: {} (410 Gone: {}); converged {:?} \
         after the faults stopped; test took {:?}",
        outcome.errors,
        outcome.expired,
        converged,
        started.elapsed()
    );
    ensure!(
        cm_report.writes() > 0 && widget_report.writes() > 0,
        "the writers wrote nothing"
    );
    cancel.cancel();
    for task in tasks {
        task.await.context("an informer task")?;
    }
    cache_task.await.context("the cache task")??;
    Ok(outcome)
}

fn schedule_label(schedule: &Schedule) -> String {
    let mut faults = vec![format!("cut every {:?}", schedule.period)];
    if let Some(r) = schedule.refuse_for {
        faults.push(format!(
            "refuse {r:?} every other round (accept-and-close, then not listening)"
        ));
    }
    if let Some(b) = schedule.bandwidth {
        faults.push(format!("cap {b} B/s per connection every third round"));
    }
    if schedule.compact {
        faults.push("compact etcd every round".to_owned());
    }
    if let Some(n) = schedule.restart_every {
        faults.push(format!("restart kube-apiserver every {n} rounds"));
    }
    faults.join(", ")
}
