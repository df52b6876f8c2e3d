//! `PriorityQueue`: controller-runtime's `priorityqueue_test.go` cases, on paused Tokio time.

use std::time::Duration;

use tokio::time::{Instant, advance, timeout};

use crate::{AddOpts, ItemExponentialFailureRateLimiter, PriorityQueue};

const MS: Duration = Duration::from_millis(1);

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn highest_priority_first_then_fifo() {
    let queue = PriorityQueue::new();
    queue.add_with("a", AddOpts::new().priority(1));
    queue.add_with("b", AddOpts::new().priority(5));
    queue.add_with("c", AddOpts::new().priority(1));
    queue.add_with("d", AddOpts::new().priority(5));
    queue.add("e");
    let mut order = Vec::new();
    while let Ok(Some((key, priority))) = timeout(MS, queue.get_with_priority()).await {
        order.push((key, priority));
        queue.done(&key);
    }
    assert_eq!(order, [("b", 5), ("d", 5), ("a", 1), ("c", 1), ("e", 0)]);
}

// controller-runtime: "de-duplicates items", "keeps the highest priority".
#[tokio::test(start_paused = true)]
async fn one_entry_per_key_with_the_highest_priority() {
    let queue = PriorityQueue::new();
    queue.add_with("x", AddOpts::new().priority(1));
    queue.add_with("y", AddOpts::new().priority(2));
    queue.add_with("x", AddOpts::new().priority(3)); // raised: moves ahead of y
    queue.add_with("x", AddOpts::new().priority(0)); // lower: ignored
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.get_with_priority().await, Some(("x", 3)));
    assert_eq!(queue.get_with_priority().await, Some(("y", 2)));
    assert_eq!(queue.len(), 0);
}

// controller-runtime: "returns an item only after after has passed", "uses the shorter after".
#[tokio::test(start_paused = true)]
async fn earliest_ready_time_wins() {
    let queue = PriorityQueue::new();
    queue.add_with("k", AddOpts::new().after(100 * MS));
    queue.add_with("k", AddOpts::new().after(200 * MS)); // later: ignored
    queue.add_with("k", AddOpts::new().after(50 * MS)); // earlier: wins
    settle().await;
    assert_eq!(queue.len(), 0);
    let start = Instant::now();
    assert_eq!(queue.get().await, Some("k"));
    assert_eq!(start.elapsed(), 50 * MS);
    queue.done(&"k");
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(queue.len(), 0, "one entry: the other times do not fire");
}

#[tokio::test(start_paused = true)]
async fn immediate_add_makes_a_waiting_key_ready() {
    let queue = PriorityQueue::new();
    queue.add_after("k", Duration::from_secs(10));
    queue.add_with("k", AddOpts::new().priority(2));
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.get_with_priority().await, Some(("k", 2)));
    queue.done(&"k");
    advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(queue.len(), 0);
}

// controller-runtime: a delayed item that became ready competes on priority.
#[tokio::test(start_paused = true)]
async fn ready_delayed_keys_compete_on_priority() {
    let queue = PriorityQueue::new();
    queue.add_with("delayed-high", AddOpts::new().after(10 * MS).priority(10));
    queue.add("now-low");
    advance(10 * MS).await;
    settle().await;
    assert_eq!(queue.get().await, Some("delayed-high"));
    assert_eq!(queue.get().await, Some("now-low"));
}

// controller-runtime: "doesn't return an item that is currently locked".
#[tokio::test(start_paused = true)]
async fn a_processing_key_is_not_handed_out_again() {
    let queue = PriorityQueue::new();
    queue.add("k");
    let k = queue.get().await.unwrap();
    queue.add_with("k", AddOpts::new().priority(1));
    queue.add("other");
    assert_eq!(queue.len(), 2, "the parked key counts as ready");
    assert_eq!(queue.get().await, Some("other"));
    assert!(timeout(MS, queue.get()).await.is_err(), "k is locked");
    queue.done(&k);
    assert_eq!(queue.get_with_priority().await, Some(("k", 1)));
}

#[tokio::test(start_paused = true)]
async fn delayed_key_that_becomes_ready_while_processing_waits_for_done() {
    let queue = PriorityQueue::new();
    queue.add("k");
    let k = queue.get().await.unwrap();
    queue.add_after("k", 5 * MS);
    advance(10 * MS).await;
    settle().await;
    assert_eq!(queue.len(), 1);
    assert!(timeout(MS, queue.get()).await.is_err());
    queue.done(&k);
    assert_eq!(queue.get().await, Some("k"));
}

// controller-runtime: "AddWithOpts with RateLimited uses the rate limiter, the shorter wins".
#[tokio::test(start_paused = true)]
async fn rate_limited_uses_the_shorter_delay() {
    let limiter = ItemExponentialFailureRateLimiter::new(10 * MS, Duration::from_secs(10));
    let queue = PriorityQueue::with_config(limiter, crate::Config::new());
    let start = Instant::now();
    queue.add_rate_limited("a"); // 10 ms
    queue.add_with("b", AddOpts::new().rate_limited(true).after(5 * MS)); // min(10, 5)
    queue.add_with("c", AddOpts::new().rate_limited(true).after(50 * MS)); // min(10, 50)
    let mut order = Vec::new();
    for _ in 0..3 {
        let key = queue.get().await.unwrap();
        order.push((key, start.elapsed().as_millis()));
        queue.forget(&key);
        queue.done(&key);
    }
    assert_eq!(order, [("b", 5), ("a", 10), ("c", 10)]);
    assert_eq!(queue.num_requeues(&"a"), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_out_ready_keys_and_drops_waiting_ones() {
    let queue = PriorityQueue::new();
    queue.add("ready");
    queue.add_after("waiting", 10 * MS);
    let getter = tokio::spawn({
        let queue = queue.clone();
        async move {
            let mut got = Vec::new();
            while let Some(key) = queue.get().await {
                got.push(key);
                queue.done(&key);
            }
            got
        }
    });
    queue.shutdown_with_drain().await;
    queue.add("ignored");
    advance(Duration::from_secs(1)).await;
    assert_eq!(getter.await.unwrap(), ["ready"]);
    assert!(queue.is_shutting_down());
    assert_eq!(queue.get().await, None);
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_processing_not_for_a_parked_requeue() {
    let queue = PriorityQueue::new();
    queue.add("k");
    let k = queue.get().await.unwrap();
    queue.add("k");
    let drain = tokio::spawn({
        let queue = queue.clone();
        async move { queue.shutdown_with_drain().await }
    });
    settle().await;
    assert!(!drain.is_finished(), "k is processing");
    queue.done(&k);
    // k went back into the queue, but nothing is processing: client-go's drain returns.
    timeout(Duration::from_secs(1), drain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queue.get().await, Some("k"), "still handed out");
    queue.done(&"k");
    assert_eq!(queue.get().await, None);
}

#[tokio::test(start_paused = true)]
async fn timer_ends_at_shutdown() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let queue = PriorityQueue::<u8>::new();
    queue.add_after(1, Duration::from_secs(60));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1);
    queue.shutdown();
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0);
}

// Issue 10 (6): moving a deadline earlier, or making a waiting key ready, used to leave a stale
// heap entry (with a clone of the key) until the original deadline.
#[tokio::test(start_paused = true)]
async fn heap_holds_one_entry_per_waiting_key() {
    let queue = PriorityQueue::new();
    for round in 0..1000 {
        queue.add_after("k", Duration::from_secs(3600));
        queue.add_after("k", 5 * MS);
        assert_eq!(queue.heap_and_waiting(), (1, 1), "round {round}");
        let key = queue.get().await.unwrap();
        queue.done(&key);
        assert_eq!(queue.heap_and_waiting(), (0, 0), "round {round}");
    }
    // A waiting key made ready by an immediate add leaves the heap.
    queue.add_after("k", Duration::from_secs(3600));
    queue.add("k");
    assert_eq!(queue.heap_and_waiting(), (0, 0));
    assert_eq!(queue.get().await, Some("k"));
    // Waiting for its next round while processing: one entry, removed when it becomes ready.
    queue.add_after("k", Duration::from_secs(3600));
    queue.add_after("k", 5 * MS);
    assert_eq!(queue.heap_and_waiting(), (1, 1));
    queue.add_with("k", AddOpts::new().priority(3));
    assert_eq!(queue.heap_and_waiting(), (0, 0));
    queue.done(&"k");
    assert_eq!(queue.get_with_priority().await, Some(("k", 3)));
    queue.done(&"k");
    // Many keys, each moved earlier several times, fire once at the earliest time.
    for delay in [60, 50, 40, 30] {
        for key in ["a", "b", "c", "d"] {
            queue.add_after(key, Duration::from_secs(delay));
        }
    }
    assert_eq!(queue.heap_and_waiting(), (4, 4));
    let start = Instant::now();
    for _ in 0..4 {
        let key = queue.get().await.unwrap();
        queue.done(&key);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(queue.heap_and_waiting(), (0, 0));
}

// Issue 10 (8): as client-go's ShutDownWithDrain, the drain waits for the keys being processed,
// not for ready keys no worker took; with no worker left it used to wait forever.
#[tokio::test(start_paused = true)]
async fn drain_does_not_wait_for_ready_keys() {
    let queue = PriorityQueue::new();
    queue.add("ready");
    queue.add_after("waiting", Duration::from_secs(10));
    timeout(Duration::from_secs(60), queue.shutdown_with_drain())
        .await
        .expect("nothing is processing: the drain returns");
    assert_eq!(queue.get().await, Some("ready"), "still handed out");
    queue.done(&"ready");
    assert_eq!(queue.get().await, None);
}
