//! Property tests: random interleavings of add / add_after / add_rate_limited / get / done /
//! forget / shutdown with several concurrent workers, against both rate-limiting queues.
//!
//! Checked for every run:
//! * no key is processed by two workers at once;
//! * every processing of a key is justified by an earlier add whose ready time has passed
//!   (delays are respected: paused Tokio time makes this exact);
//! * no add is lost: every key added before shutdown (and ready by then) is processed after its
//!   last add;
//! * `shutdown_with_drain` returns only once nothing is processing (client-go's semantics: keys
//!   still queued are handed out afterwards), and every worker then ends;
//! * the waiting heap holds one entry per waiting key, never more (so never more than there are
//!   distinct keys), however often keys are moved earlier.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use crate::{
    ItemExponentialFailureRateLimiter, PriorityQueue, RateLimiter, RateLimitingQueue, WorkQueue,
};

/// The size of a queue's waiting heap, and its number of waiting keys.
trait WaitingHeap {
    fn heap_and_waiting(&self) -> (usize, usize);

    /// A violation if the heap holds more entries than there are waiting keys, or keys.
    fn check_heap(&self) -> Option<String> {
        let (heap, waiting) = self.heap_and_waiting();
        (heap > waiting || heap > usize::from(KEYS))
            .then(|| format!("{heap} heap entries for {waiting} waiting keys"))
    }
}

impl WaitingHeap for RateLimitingQueue<u8> {
    fn heap_and_waiting(&self) -> (usize, usize) {
        (self.heap_len(), self.waiting())
    }
}

impl WaitingHeap for PriorityQueue<u8> {
    fn heap_and_waiting(&self) -> (usize, usize) {
        PriorityQueue::heap_and_waiting(self)
    }
}

const KEYS: u8 = 6;

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    AddAfter(u8, u8),
    AddRateLimited(u8),
    Forget(u8),
    Advance(u8),
    Yield,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Add),
        3 => (0..KEYS, 0..40u8).prop_map(|(key, ms)| Op::AddAfter(key, ms)),
        2 => (0..KEYS).prop_map(Op::AddRateLimited),
        1 => (0..KEYS).prop_map(Op::Forget),
        3 => (0..20u8).prop_map(Op::Advance),
        3 => Just(Op::Yield),
        1 => Just(Op::Shutdown),
    ]
}

/// A limiter that remembers the last delay it gave, so the test knows each ready time.
struct Recording {
    inner: ItemExponentialFailureRateLimiter<u8>,
    last: Mutex<Duration>,
}

impl RateLimiter<u8> for Recording {
    fn when(&self, item: &u8) -> Duration {
        let delay = self.inner.when(item);
        *self.last.lock().unwrap() = delay;
        delay
    }
    fn forget(&self, item: &u8) {
        self.inner.forget(item);
    }
    fn num_requeues(&self, item: &u8) -> usize {
        self.inner.num_requeues(item)
    }
}

impl Recording {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: ItemExponentialFailureRateLimiter::new(
                Duration::from_millis(1),
                Duration::from_millis(32),
            ),
            last: Mutex::new(Duration::ZERO),
        })
    }
    fn last(&self) -> Duration {
        *self.last.lock().unwrap()
    }
}

/// An accepted add: it justifies one processing that starts after it, once `ready`.
#[derive(Debug, Clone, Copy)]
struct Token {
    seq: u64,
    ready: Instant,
    used: bool,
}

#[derive(Debug, Default)]
struct Log {
    seq: u64,
    tokens: HashMap<u8, Vec<Token>>,
    /// Sequence numbers of the gets of each key.
    gets: HashMap<u8, Vec<u64>>,
    in_flight: HashSet<u8>,
    shutdown: Option<(u64, Instant)>,
    violations: Vec<String>,
}

impl Log {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records an add that the queue accepted (made before shutdown).
    fn added(&mut self, key: u8, ready: Instant) {
        let seq = self.next();
        self.tokens.entry(key).or_default().push(Token {
            seq,
            ready,
            used: false,
        });
    }

    fn got(&mut self, key: u8, now: Instant) {
        let seq = self.next();
        if !self.in_flight.insert(key) {
            self.violations
                .push(format!("{key} handed to two workers at once"));
        }
        // Greedy matching is optimal: a token usable now stays usable later.
        let token = self
            .tokens
            .entry(key)
            .or_default()
            .iter_mut()
            .filter(|token| !token.used && token.seq < seq && token.ready <= now)
            .min_by_key(|token| token.ready);
        match token {
            Some(token) => token.used = true,
            None => self
                .violations
                .push(format!("{key} processed without a ready add at {now:?}")),
        }
        self.gets.entry(key).or_default().push(seq);
    }

    fn finished(&mut self, key: u8) {
        self.in_flight.remove(&key);
    }

    /// Every add made before shutdown, and ready by then, was followed by a processing.
    fn check_nothing_lost(&self) -> Vec<String> {
        let Some((shutdown_seq, shutdown_at)) = self.shutdown else {
            return vec!["never shut down".into()];
        };
        let mut lost = Vec::new();
        for (key, tokens) in &self.tokens {
            let last = tokens
                .iter()
                .filter(|token| token.seq < shutdown_seq && token.ready <= shutdown_at)
                .map(|token| token.seq)
                .max();
            let Some(last) = last else { continue };
            let processed_after = self
                .gets
                .get(key)
                .is_some_and(|gets| gets.iter().any(|&get| get > last));
            if !processed_after {
                lost.push(format!("{key}: add #{last} never processed"));
            }
        }
        lost
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Runs `ops` against `queue` with `workers` workers; returns the violations found.
async fn run<Q: WorkQueue<u8> + WaitingHeap>(
    queue: Q,
    limiter: Arc<Recording>,
    ops: Vec<Op>,
    workers: usize,
    retry: bool,
) -> Vec<String> {
    let log = Arc::new(Mutex::new(Log::default()));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (queue, log, limiter) = (queue.clone(), log.clone(), limiter.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    log.lock().unwrap().got(key, Instant::now());
                    match key % 3 {
                        0 => tokio::task::yield_now().await,
                        n => tokio::time::sleep(Duration::from_millis(u64::from(n))).await,
                    }
                    // Even keys fail twice, then succeed.
                    if retry && key % 2 == 0 && queue.num_requeues(&key) < 2 {
                        let accepted = !queue.is_shutting_down();
                        queue.add_rate_limited(key);
                        if accepted {
                            log.lock()
                                .unwrap()
                                .added(key, Instant::now() + limiter.last());
                        }
                    } else {
                        queue.forget(&key);
                    }
                    log.lock().unwrap().finished(key);
                    queue.done(&key);
                }
            })
        })
        .collect();

    let mut shut = false;
    for op in ops {
        let now = Instant::now();
        let accepted = !shut;
        match op {
            Op::Add(key) => {
                if accepted {
                    log.lock().unwrap().added(key, now);
                }
                queue.add(key);
            }
            Op::AddAfter(key, ms) => {
                let delay = Duration::from_millis(u64::from(ms));
                if accepted {
                    log.lock().unwrap().added(key, now + delay);
                }
                queue.add_after(key, delay);
            }
            Op::AddRateLimited(key) => {
                queue.add_rate_limited(key);
                if accepted {
                    log.lock().unwrap().added(key, now + limiter.last());
                }
            }
            Op::Forget(key) => queue.forget(&key),
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
            Op::Yield => tokio::task::yield_now().await,
            Op::Shutdown if !shut => {
                shut = true;
                shutdown(&queue, &log, true).await;
            }
            Op::Shutdown => queue.shutdown(),
        }
        if let Some(violation) = queue.check_heap() {
            log.lock().unwrap().violations.push(violation);
        }
    }
    if !shut {
        // Let every delay pass, then drain.
        tokio::time::advance(Duration::from_millis(100)).await;
        shutdown(&queue, &log, true).await;
    }
    for handle in handles {
        match tokio::time::timeout(Duration::from_secs(10), handle).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log
                .lock()
                .unwrap()
                .violations
                .push(format!("worker failed: {error}")),
            Err(_) => log
                .lock()
                .unwrap()
                .violations
                .push("a worker never saw the end".into()),
        }
    }
    let log = log.lock().unwrap();
    let mut violations = log.violations.clone();
    violations.extend(log.check_nothing_lost());
    if !log.in_flight.is_empty() {
        violations.push(format!(
            "still in flight after the drain: {:?}",
            log.in_flight
        ));
    }
    violations
}

/// Shuts `queue` down with a drain. With `check_in_flight`, also checks that no worker was
/// processing when the drain returned: exact on a single-threaded runtime, where no worker runs
/// between the drain's return and the check; with parallel workers one may already have taken a
/// key still queued (as client-go's drain allows), so the parallel test does not check it.
async fn shutdown<Q: WorkQueue<u8>>(queue: &Q, log: &Mutex<Log>, check_in_flight: bool) {
    settle().await; // let the timer move what is due
    {
        let mut log = log.lock().unwrap();
        let seq = log.next();
        log.shutdown = Some((seq, Instant::now()));
    }
    // Paused time jumps to this timeout at once if the drain can never complete; real time
    // (the parallel test) waits ten seconds.
    let drained = tokio::time::timeout(Duration::from_secs(10), queue.shutdown_with_drain()).await;
    if drained.is_err() {
        queue.shutdown();
    }
    let mut log = log.lock().unwrap();
    if drained.is_err() {
        log.violations
            .push("shutdown_with_drain never completed".into());
    }
    if check_in_flight && !log.in_flight.is_empty() {
        let message = format!("drain returned with {:?} in flight", log.in_flight);
        log.violations.push(message);
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rate_limiting_queue_invariants(
        ops in proptest::collection::vec(op(), 1..80),
        workers in 1..=4usize,
        retry: bool,
    ) {
        let runtime = paused_runtime();
        let violations = runtime.block_on(async {
            let limiter = Recording::new();
            let queue = RateLimitingQueue::new(limiter.clone());
            run(queue, limiter, ops, workers, retry).await
        });
        prop_assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn priority_queue_invariants(
        ops in proptest::collection::vec(op(), 1..80),
        workers in 1..=4usize,
        retry: bool,
    ) {
        let runtime = paused_runtime();
        let violations = runtime.block_on(async {
            let limiter = Recording::new();
            let queue = PriorityQueue::with_config(limiter.clone(), crate::Config::new());
            run(queue, limiter, ops, workers, retry).await
        });
        prop_assert!(violations.is_empty(), "{violations:#?}");
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same on a multi-threaded runtime with real time: workers really run in parallel.
    #[test]
    fn queues_under_parallel_workers(
        keys in proptest::collection::vec(0..KEYS, 1..300),
        workers in 2..=4usize,
        priority: bool,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let violations = runtime.block_on(async {
            if priority {
                parallel(PriorityQueue::new(), keys, workers).await
            } else {
                parallel(RateLimitingQueue::default(), keys, workers).await
            }
        });
        prop_assert!(violations.is_empty(), "{violations:#?}");
    }
}

/// Adds `keys` from one task while `workers` process them in parallel: no key is processed twice
/// at once, and every key is processed after its last add.
async fn parallel<Q: WorkQueue<u8>>(queue: Q, keys: Vec<u8>, workers: usize) -> Vec<String> {
    let log = Arc::new(Mutex::new(Log::default()));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (queue, log) = (queue.clone(), log.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    log.lock().unwrap().got(key, Instant::now());
                    for _ in 0..=key % 4 {
                        tokio::task::yield_now().await;
                    }
                    log.lock().unwrap().finished(key);
                    queue.done(&key);
                }
            })
        })
        .collect();
    for (i, key) in keys.into_iter().enumerate() {
        // Recorded before the add, so that the add's own processing comes after it.
        log.lock().unwrap().added(key, Instant::now());
        queue.add(key);
        if i % 3 == 0 {
            tokio::task::yield_now().await;
        }
    }
    shutdown(&queue, &log, false).await;
    for handle in handles {
        match tokio::time::timeout(Duration::from_secs(10), handle).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log
                .lock()
                .unwrap()
                .violations
                .push(format!("worker failed: {error}")),
            Err(_) => log
                .lock()
                .unwrap()
                .violations
                .push("a worker never saw the end".into()),
        }
    }
    let log = log.lock().unwrap();
    let mut violations = log.violations.clone();
    violations.extend(log.check_nothing_lost());
    violations
}
