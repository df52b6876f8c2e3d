//! Controller unit tests: no API server (no watches), requests added to the queue by hand,
//! time paused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrokube_informer::ResourceEventHandler;
use ferrokube_workqueue::{ItemExponentialFailureRateLimiter, PriorityQueue};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::Metrics;
use crate::reconcile::{Action, TerminalError};

fn controller<R: Reconciler>(reconciler: R, workers: usize, metrics: &Metrics) -> Controller<R> {
    Controller {
        name: "test".into(),
        reconciler: Arc::new(reconciler),
        sources: Vec::new(),
        queue: PriorityQueue::with_config(
            ItemExponentialFailureRateLimiter::new(
                Duration::from_millis(5),
                Duration::from_secs(1000),
            ),
            ferrokube_workqueue::Config::new(),
        ),
        options: Options::default().max_concurrent_reconciles(workers),
        metrics: metrics.controller("test"),
    }
}

/// A controller running in a task, with its queue.
struct Running {
    queue: PriorityQueue<Request>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    fn spawn<R: Reconciler>(ctrl: Controller<R>) -> Self {
        let queue = ctrl.queue.clone();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(ctrl.run(crate::cache::unreachable_cache(), cancel.clone()));
        Self {
            queue,
            cancel,
            task,
        }
    }

    /// Cancels the controller and waits for a clean stop.
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.expect("no panic").expect("clean stop");
    }
}

/// When each request was reconciled.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<(Request, Instant)>>>);

impl Calls {
    fn record(&self, r: &Request) -> usize {
        let mut calls = self.0.lock();
        calls.push((r.clone(), Instant::now()));
        calls.iter().filter(|(c, _)| c == r).count()
    }
    fn times(&self, r: &Request) -> Vec<Instant> {
        self.0
            .lock()
            .iter()
            .filter(|(c, _)| c == r)
            .map(|(_, t)| *t)
            .collect()
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

fn metric(metrics: &Metrics, line_start: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn errors_retry_with_growing_delay_then_success_forgets() {
    let calls = Calls::default();
    let c = calls.clone();
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        let n = c.record(&r);
        async move {
            if n <= 3 {
                Err::<Action, BoxError>("not yet".into())
            } else {
                Ok(Action::done())
            }
        }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 2, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    let key = Request::namespaced("ns", "a");
    queue.add(key.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let times = calls.times(&key);
    assert_eq!(times.len(), 4, "three failures, then success");
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [5, 10, 20].map(Duration::from_millis),
        "per-key exponential backoff"
    );
    assert_eq!(queue.num_requeues(&key), 0, "success forgets the key");
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_reconcile_errors_total{controller="test"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_reconcile_total{controller="test",result="success"}"#
        ),
        1.0
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn terminal_errors_are_not_retried() {
    let calls = Calls::default();
    let c = calls.clone();
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        c.record(&r);
        async { Err::<Action, _>(TerminalError::new("the spec is invalid")) }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 1, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    queue.add(Request::cluster("x"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_terminal_reconcile_errors_total{controller="test"}"#
        ),
        1.0
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_caught_counted_and_retried() {
    let calls = Calls::default();
    let c = calls.clone();
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        let n = c.record(&r);
        async move {
            if n == 1 {
                panic!("reconciler bug");
            }
            Ok::<_, BoxError>(Action::done())
        }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 1, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    queue.add(Request::cluster("p"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.len(), 2, "retried after the panic");
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_reconcile_panics_total{controller="test"}"#
        ),
        1.0
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn requeue_after_reconciles_again_after_the_delay() {
    let calls = Calls::default();
    let c = calls.clone();
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        c.record(&r);
        async { Ok::<_, BoxError>(Action::requeue_after(Duration::from_secs(30))) }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 1, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    let key = Request::cluster("r");
    queue.add(key.clone());
    tokio::time::sleep(Duration::from_secs(65)).await;
    let times = calls.times(&key);
    assert_eq!(times.len(), 3);
    assert_eq!(times[1] - times[0], Duration::from_secs(30));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_is_never_reconciled_by_two_workers_at_once() {
    let running: Arc<Mutex<HashMap<Request, usize>>> = Arc::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let (r2, o2, t2) = (running.clone(), overlaps.clone(), total.clone());
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        let (running, overlaps, total) = (r2.clone(), o2.clone(), t2.clone());
        async move {
            {
                let mut map = running.lock();
                let n = map.entry(r.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            *running.lock().entry(r).or_default() -= 1;
            total.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(Action::done())
        }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 4, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    for round in 0..20 {
        for k in 0..3 {
            queue.add(Request::cluster(format!("k{k}")));
        }
        tokio::time::sleep(Duration::from_millis(3 + round % 4)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert!(total.load(Ordering::SeqCst) >= 3);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_reconcile_in_flight() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let reconciler = reconcile::from_fn(move |_: Request, _| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(Action::done())
        }
    });
    let metrics = Metrics::new();
    let ctrl = controller(reconciler, 1, &metrics);
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    queue.add(Request::cluster("slow"));
    queue.add(Request::cluster("queued"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.stop().await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the reconcile in flight finished; the queued one was not started"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_timeout_is_an_error() {
    let calls = Calls::default();
    let c = calls.clone();
    let reconciler = reconcile::from_fn(move |r: Request, _| {
        let n = c.record(&r);
        async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, BoxError>(Action::done())
        }
    });
    let metrics = Metrics::new();
    let mut ctrl = controller(reconciler, 1, &metrics);
    ctrl.options = Options::default().reconcile_timeout(Duration::from_secs(2));
    let running = Running::spawn(ctrl);
    let queue = running.queue.clone();
    queue.add(Request::cluster("t"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_reconcile_errors_total{controller="test"}"#
        ),
        1.0
    );
    running.stop().await;
}

fn config_map(name: &str, rv: &str) -> Arc<ConfigMap> {
    Arc::new(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    })
}

#[tokio::test(start_paused = true)]
async fn initial_list_and_resync_events_wait_behind_live_changes() {
    let queue: PriorityQueue<Request> = PriorityQueue::new();
    let enqueue = source::Enqueue::<ConfigMap> {
        handler: Arc::new(crate::handler::EnqueueRequestForObject),
        predicates: Vec::new().into(),
        filters: Vec::new().into(),
        queue: queue.clone(),
    };
    enqueue.on_add(config_map("listed", "1"), true);
    let same = config_map("resynced", "2");
    enqueue.on_update(Arc::clone(&same), same);
    enqueue.on_update(config_map("changed", "3"), config_map("changed", "4"));
    enqueue.on_add(config_map("created", "5"), false);
    settle().await;
    let mut order = Vec::new();
    while let Some((r, p)) = queue.get_with_priority().await {
        order.push((r.name.clone(), p));
        queue.done(&r);
        if queue.is_empty() {
            break;
        }
    }
    assert_eq!(
        order,
        [
            ("changed".to_owned(), 0),
            ("created".to_owned(), 0),
            ("listed".to_owned(), LOW_PRIORITY),
            ("resynced".to_owned(), LOW_PRIORITY),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn predicates_and_filters_drop_events() {
    struct NoDeletes;
    impl EventFilter for NoDeletes {
        fn delete(&self, _: &ObjectMeta) -> bool {
            false
        }
    }
    let queue: PriorityQueue<Request> = PriorityQueue::new();
    let enqueue = source::Enqueue::<ConfigMap> {
        handler: Arc::new(crate::handler::EnqueueRequestForObject),
        predicates: vec![Arc::new(crate::predicate::resource_version_changed())
            as Arc<dyn crate::predicate::Predicate<ConfigMap>>]
        .into(),
        filters: vec![Arc::new(NoDeletes) as Arc<dyn EventFilter>].into(),
        queue: queue.clone(),
    };
    let same = config_map("same", "1");
    enqueue.on_update(Arc::clone(&same), same);
    enqueue.on_delete(ferrokube_informer::delta_fifo::DeltaObject::Object(
        config_map("gone", "2"),
    ));
    assert!(queue.is_empty());
    enqueue.on_update(config_map("moved", "1"), config_map("moved", "2"));
    assert_eq!(queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_recover_panic_a_panic_ends_the_controller() {
    let reconciler = reconcile::from_fn(|_: Request, _| async {
        panic!("unrecovered");
        #[allow(unreachable_code)]
        Ok::<_, BoxError>(Action::done())
    });
    let metrics = Metrics::new();
    let mut ctrl = controller(reconciler, 2, &metrics);
    ctrl.options = Options::default()
        .max_concurrent_reconciles(2)
        .recover_panic(false);
    let queue = ctrl.queue.clone();
    let task = tokio::spawn(ctrl.run(crate::cache::unreachable_cache(), CancellationToken::new()));
    queue.add(Request::cluster("boom"));
    let joined = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller ended");
    let panic = joined.expect_err("the controller panicked").into_panic();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"unrecovered"));
    assert_eq!(
        metric(
            &metrics,
            r#"controller_runtime_active_workers{controller="test"}"#
        ),
        0.0,
        "the panicking worker was counted idle again"
    );
}
