//! `DelayingQueue` and `RateLimitingQueue`: client-go's `delaying_queue_test.go` and
//! `rate_limiting_queue_test.go` cases, on paused Tokio time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, advance, timeout};

use crate::{DelayingQueue, ItemExponentialFailureRateLimiter, RateLimitingQueue};

const MS: Duration = Duration::from_millis(1);

/// Lets spawned tasks (the timer) run without moving the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

// client-go: TestSimpleQueue.
#[tokio::test(start_paused = true)]
async fn key_appears_after_its_delay() {
    let queue = DelayingQueue::new();
    queue.add_after("foo", 50 * MS);
    settle().await;
    assert_eq!(queue.len(), 0);
    assert_eq!(queue.waiting(), 1);
    advance(49 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 0);
    advance(MS).await;
    settle().await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.waiting(), 0);
    let key = queue.get().await.unwrap();
    queue.done(&key);
    // A later add_after on the same key works again.
    queue.add_after("foo", 10 * MS);
    let start = Instant::now();
    assert_eq!(queue.get().await, Some("foo"));
    assert_eq!(start.elapsed(), 10 * MS);
}

// client-go: TestDeduping.
#[tokio::test(start_paused = true)]
async fn waiting_twice_keeps_the_earlier_time() {
    let queue = DelayingQueue::new();
    queue.add_after("foo", 50 * MS);
    queue.add_after("foo", 70 * MS); // later: ignored
    settle().await;
    assert_eq!(queue.waiting(), 1);
    advance(50 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 1);
    let key = queue.get().await.unwrap();
    queue.done(&key);
    advance(30 * MS).await;
    settle().await;
    assert_eq!(
        queue.len(),
        0,
        "the later time was dropped, not kept as a second entry"
    );

    // Earlier replaces later.
    queue.add_after("foo", 70 * MS);
    queue.add_after("foo", 50 * MS);
    settle().await;
    advance(50 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 1);
    let key = queue.get().await.unwrap();
    queue.done(&key);
    advance(30 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 0, "the replaced time does not fire");
}

// client-go: TestAddTwoFireEarly.
#[tokio::test(start_paused = true)]
async fn keys_fire_in_ready_order() {
    let queue = DelayingQueue::new();
    queue.add_after("foo", 1000 * MS);
    queue.add_after("bar", 50 * MS);
    queue.add_after("baz", 500 * MS);
    let start = Instant::now();
    let mut order = Vec::new();
    for _ in 0..3 {
        let key = queue.get().await.unwrap();
        order.push((key, start.elapsed().as_millis()));
        queue.done(&key);
    }
    assert_eq!(order, [("bar", 50), ("baz", 500), ("foo", 1000)]);
}

// client-go: TestCopyShifting (many keys, one timer).
#[tokio::test(start_paused = true)]
async fn many_delayed_keys_arrive_in_order() {
    let queue = DelayingQueue::new();
    for i in (0..100u64).rev() {
        queue.add_after(i, Duration::from_millis(i + 1));
    }
    let start = Instant::now();
    for i in 0..100u64 {
        let key = queue.get().await.unwrap();
        assert_eq!(key, i);
        assert_eq!(start.elapsed(), Duration::from_millis(i + 1));
        queue.done(&key);
    }
}

#[tokio::test(start_paused = true)]
async fn zero_delay_is_add() {
    let queue = DelayingQueue::new();
    queue.add_after(1, Duration::ZERO);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn delayed_add_while_processing_requeues() {
    let queue = DelayingQueue::new();
    queue.add("a");
    let a = queue.get().await.unwrap();
    queue.add_after("a", 10 * MS);
    advance(10 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 0, "dirty while processing");
    queue.done(&a);
    assert_eq!(queue.get().await, Some("a"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_waiting_keys_and_ends_the_timer() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let queue = DelayingQueue::new();
    queue.add_after(1, Duration::from_secs(3600));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1, "one timer task");
    queue.add_after(2, Duration::from_secs(60));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1, "still one timer task");
    queue.shutdown();
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0, "the timer ended at shutdown");
    assert_eq!(queue.waiting(), 0);
    queue.add_after(3, MS);
    assert_eq!(queue.waiting(), 0);
    assert_eq!(
        timeout(Duration::from_secs(7200), queue.get()).await,
        Ok(None)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_queue_ends_the_timer() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let queue = DelayingQueue::new();
    queue.add_after("k", Duration::from_secs(3600));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1);
    let weak_probe = queue.clone();
    drop(queue);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1, "a clone keeps it alive");
    drop(weak_probe);
    settle().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        0,
        "the timer does not keep the queue alive"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_drain_stops_the_timer_and_waits() {
    let queue = DelayingQueue::new();
    queue.add_after("later", Duration::from_secs(10));
    queue.add("now");
    let now = queue.get().await.unwrap();
    let drain = tokio::spawn({
        let queue = queue.clone();
        async move { queue.shutdown_with_drain().await }
    });
    settle().await;
    assert!(!drain.is_finished());
    queue.done(&now);
    timeout(Duration::from_secs(1), drain)
        .await
        .unwrap()
        .unwrap();
    advance(Duration::from_secs(20)).await;
    assert_eq!(queue.get().await, None, "the waiting key was dropped");
}

// client-go: TestRateLimitingQueue.
#[tokio::test(start_paused = true)]
async fn rate_limited_adds_back_off_and_forget_resets() {
    let limiter = ItemExponentialFailureRateLimiter::new(MS, Duration::from_secs(1));
    let queue = RateLimitingQueue::new(limiter);
    queue.add_rate_limited("one");
    queue.add_rate_limited("one");
    queue.add_rate_limited("two");
    assert_eq!(queue.num_requeues(&"one"), 2);
    assert_eq!(queue.num_requeues(&"two"), 1);
    settle().await;
    assert_eq!(queue.waiting(), 2, "one entry per key");
    queue.forget(&"one");
    assert_eq!(queue.num_requeues(&"one"), 0);
    queue.add_rate_limited("one");
    assert_eq!(queue.num_requeues(&"one"), 1);
    // "one" waits 1 ms (first delay kept), "two" 1 ms.
    advance(MS).await;
    settle().await;
    assert_eq!(queue.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn default_rate_limiting_queue_spaces_retries() {
    let queue = RateLimitingQueue::default();
    let start = Instant::now();
    let mut seen = Vec::new();
    queue.add("k");
    for _ in 0..4 {
        let key = queue.get().await.unwrap();
        seen.push(start.elapsed().as_millis());
        queue.add_rate_limited(key);
        queue.done(&key);
    }
    // 0, then +5, +10, +20 ms.
    assert_eq!(seen, [0, 5, 15, 35]);
    assert_eq!(queue.num_requeues(&"k"), 4);
    let limiter = Arc::clone(queue.rate_limiter());
    limiter.forget(&"k");
    assert_eq!(queue.num_requeues(&"k"), 0);
}

#[test]
fn add_after_outside_a_runtime_uses_the_creating_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let queue = runtime.block_on(async { DelayingQueue::new() });
    queue.add_after(1, MS); // from a plain thread
    let key = runtime.block_on(async { timeout(Duration::from_secs(5), queue.get()).await });
    assert_eq!(key, Ok(Some(1)));
}

// Issue 10 (6): moving a deadline earlier used to leave the old heap entry, with a clone of the
// key, until its original deadline: a periodic requeue plus rate-limited retries grew the heap by
// one entry per retry.
#[tokio::test(start_paused = true)]
async fn heap_holds_one_entry_per_waiting_key() {
    let queue = DelayingQueue::new();
    for round in 0..1000 {
        queue.add_after("k", Duration::from_secs(3600));
        queue.add_after("k", 5 * MS);
        assert_eq!(queue.waiting(), 1);
        assert_eq!(queue.heap_len(), 1, "round {round}: one entry for one key");
        let key = queue.get().await.unwrap();
        queue.done(&key);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.heap_len(), 0, "round {round}: no entry left behind");
    }
    // Many keys, each moved earlier several times.
    for delay in [60, 50, 40, 30] {
        for key in ["a", "b", "c", "d"] {
            queue.add_after(key, Duration::from_secs(delay));
        }
    }
    assert_eq!((queue.waiting(), queue.heap_len()), (4, 4));
    let start = Instant::now();
    for _ in 0..4 {
        let key = queue.get().await.unwrap();
        queue.done(&key);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!((queue.waiting(), queue.heap_len()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_retries_do_not_grow_the_heap() {
    let limiter = ItemExponentialFailureRateLimiter::new(MS, Duration::from_secs(1));
    let queue = RateLimitingQueue::new(limiter);
    for round in 0..200 {
        queue.add_after("k", Duration::from_secs(3600)); // periodic resync
        queue.add_rate_limited("k"); // retry: earlier
        assert!(queue.heap_len() <= queue.waiting(), "round {round}");
        let key = queue.get().await.unwrap();
        queue.forget(&key);
        queue.done(&key);
        assert!(queue.heap_len() <= queue.waiting(), "round {round}");
    }
    assert_eq!(queue.heap_len(), 0);
}

// Issue 10 (8): client-go's ShutDownWithDrain waits for the keys being processed, not for keys
// still queued; with no worker left it used to wait forever.
#[tokio::test(start_paused = true)]
async fn drain_does_not_wait_for_queued_keys() {
    let queue = DelayingQueue::new();
    queue.add("queued");
    queue.add_after("waiting", Duration::from_secs(10));
    timeout(Duration::from_secs(60), queue.shutdown_with_drain())
        .await
        .expect("nothing is processing: the drain returns");
    assert_eq!(queue.get().await, Some("queued"), "still handed out");
    queue.done(&"queued");
    assert_eq!(queue.get().await, None);
}
