//! `Queue`: client-go's `queue_test.go` cases, shutdown and cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::timeout;

use crate::Queue;

/// Polls `future` once: `Some(output)` if it completed at once.
async fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[tokio::test]
async fn fifo_and_deduplicated() {
    let queue = Queue::new();
    for key in ["a", "b", "a", "c", "b"] {
        queue.add(key);
    }
    assert_eq!(queue.len(), 3);
    for expected in ["a", "b", "c"] {
        let key = queue.get().await.unwrap();
        assert_eq!(key, expected);
        queue.done(&key);
    }
    assert!(queue.is_empty());
}

// client-go: TestAddWhileProcessing.
#[tokio::test]
async fn add_while_processing_requeues_at_done() {
    let queue = Queue::new();
    queue.add("a");
    let key = queue.get().await.unwrap();
    queue.add("a");
    queue.add("a"); // collapses with the pending re-add
    assert_eq!(queue.len(), 0, "not handed out while processing");
    assert!(
        now_or_never(queue.get()).await.is_none(),
        "a second worker must not get it"
    );
    queue.done(&key);
    assert_eq!(queue.len(), 1);
    let again = queue.get().await.unwrap();
    assert_eq!(again, "a");
    queue.done(&again);
    assert!(queue.is_empty());
    assert!(now_or_never(queue.get()).await.is_none());
}

// client-go: TestReinsert (re-added keys go to the back).
#[tokio::test]
async fn requeued_key_goes_to_the_back() {
    let queue = Queue::new();
    queue.add("a");
    let a = queue.get().await.unwrap();
    queue.add("b");
    queue.add("a");
    queue.done(&a);
    assert_eq!(queue.get().await, Some("b"));
    assert_eq!(queue.get().await, Some("a"));
}

#[tokio::test]
async fn done_for_unknown_or_queued_key_does_nothing() {
    let queue = Queue::new();
    queue.done(&"nope");
    queue.add("a");
    queue.done(&"a"); // queued, not processing: no duplicate (client-go would append it again)
    assert_eq!(queue.len(), 1);
    let a = queue.get().await.unwrap();
    queue.done(&a);
    queue.done(&a);
    assert!(queue.is_empty());
    assert!(now_or_never(queue.get()).await.is_none());
}

#[tokio::test]
async fn parked_getter_is_woken_by_add() {
    let queue = Queue::new();
    let getter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::task::yield_now().await;
    queue.add(7);
    assert_eq!(
        timeout(Duration::from_secs(5), getter)
            .await
            .unwrap()
            .unwrap(),
        Some(7)
    );
}

#[tokio::test]
async fn shutdown_hands_out_queued_keys_then_none() {
    let queue = Queue::new();
    queue.add(1);
    queue.add(2);
    queue.shutdown();
    assert!(queue.is_shutting_down());
    queue.add(3); // ignored
    assert_eq!(queue.get().await, Some(1));
    assert_eq!(queue.get().await, Some(2));
    assert_eq!(queue.get().await, None);
    assert_eq!(queue.get().await, None);
}

#[tokio::test]
async fn shutdown_wakes_parked_getters() {
    let queue: Queue<u32> = Queue::new();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.get().await })
        })
        .collect();
    tokio::task::yield_now().await;
    queue.shutdown();
    for getter in getters {
        assert_eq!(
            timeout(Duration::from_secs(5), getter)
                .await
                .unwrap()
                .unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn getter_waits_for_a_requeue_pending_at_shutdown() {
    let queue = Queue::new();
    queue.add("a");
    let a = queue.get().await.unwrap();
    queue.add("a"); // dirty while processing
    queue.shutdown();
    // Nothing queued, but "a" goes back into the queue at done: not finished yet.
    assert!(now_or_never(queue.get()).await.is_none());
    let getter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::task::yield_now().await;
    queue.done(&a);
    let again = timeout(Duration::from_secs(5), getter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, Some("a"));
    queue.done(&"a");
    assert_eq!(queue.get().await, None);
}

// client-go: TestQueueDrainageUsingShutDownWithDrain (the drain waits for processing keys only).
#[tokio::test]
async fn shutdown_with_drain_waits_for_processing_keys() {
    let queue = Queue::new();
    queue.add(1);
    queue.add(2);
    let one = queue.get().await.unwrap();
    queue.add(1); // re-added while processing: back into the queue at done
    let drained = Arc::new(AtomicUsize::new(0));
    let drain = tokio::spawn({
        let (queue, drained) = (queue.clone(), drained.clone());
        async move {
            queue.shutdown_with_drain().await;
            drained.store(1, Ordering::SeqCst);
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(drained.load(Ordering::SeqCst), 0, "1 is processing");
    // 1 goes back into the queue, and nothing is processing any more.
    queue.done(&one);
    timeout(Duration::from_secs(5), drain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drained.load(Ordering::SeqCst), 1);
    // Queued keys are still handed out, in order, then `None`.
    assert_eq!(queue.get().await, Some(2));
    queue.done(&2);
    assert_eq!(queue.get().await, Some(1));
    queue.done(&1);
    assert_eq!(queue.get().await, None);
}

#[tokio::test]
async fn shutdown_cuts_a_drain_short() {
    let queue = Queue::new();
    queue.add(1);
    let _one = queue.get().await.unwrap();
    let drain = tokio::spawn({
        let queue = queue.clone();
        async move { queue.shutdown_with_drain().await }
    });
    tokio::task::yield_now().await;
    assert!(!drain.is_finished());
    queue.shutdown();
    timeout(Duration::from_secs(5), drain)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn drain_of_an_idle_queue_returns_at_once() {
    let queue: Queue<u8> = Queue::new();
    timeout(Duration::from_secs(5), queue.shutdown_with_drain())
        .await
        .unwrap();
}

#[tokio::test]
async fn cancelled_getter_loses_nothing() {
    let queue = Queue::new();
    // A getter parks, is woken by an add, and is cancelled before it runs.
    let mut cancelled = Box::pin(queue.get());
    assert!(now_or_never(cancelled.as_mut()).await.is_none());
    let other = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::task::yield_now().await;
    queue.add("k");
    drop(cancelled);
    // The wake-up is passed on to the other parked getter.
    assert_eq!(
        timeout(Duration::from_secs(5), other)
            .await
            .unwrap()
            .unwrap(),
        Some("k")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_never_goes_to_two_workers() {
    let queue = Queue::new();
    let busy = Arc::new(AtomicUsize::new(0));
    let processed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, busy, processed) = (queue.clone(), busy.clone(), processed.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    assert_eq!(
                        busy.fetch_add(1, Ordering::SeqCst),
                        0,
                        "{key} processed twice at once"
                    );
                    tokio::task::yield_now().await;
                    busy.fetch_sub(1, Ordering::SeqCst);
                    processed.fetch_add(1, Ordering::SeqCst);
                    queue.done(&key);
                }
            })
        })
        .collect();
    for _ in 0..200 {
        queue.add("only");
        tokio::task::yield_now().await;
    }
    queue.shutdown_with_drain().await;
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(processed.load(Ordering::SeqCst) >= 1);
}

// Issue 10 (8): client-go's ShutDownWithDrain waits until nothing is *processing*; keys queued but
// not handed out are not waited for. With the workers gone it used to wait forever.
#[tokio::test(start_paused = true)]
async fn drain_without_workers_returns() {
    let queue = Queue::new();
    queue.add(1);
    queue.add(2);
    timeout(Duration::from_secs(60), queue.shutdown_with_drain())
        .await
        .expect("nothing is processing: the drain returns");
    // Queued keys are still handed out after the drain, as in client-go.
    assert_eq!(queue.get().await, Some(1));
    queue.done(&1);
    assert_eq!(queue.get().await, Some(2));
    queue.done(&2);
    assert_eq!(queue.get().await, None);
}
