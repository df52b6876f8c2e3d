//! N workers draining a rate-limiting queue, retrying failures with the rate limiter.
//!
//! ```text
//! cargo run -p ferrokube-workqueue --example workers
//! ```
//!
//! Every third key fails its first two attempts (a flaky dependency, say); those are retried with
//! the default controller rate limiter (5 ms, 10 ms, … per key, 10 qps overall after a burst of
//! 100). A key that keeps failing is given up on after `MAX_RETRIES`. Once every key succeeded,
//! the queue is drained and shut down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrokube_workqueue::{RateLimitingQueue, default_controller_rate_limiter};

const WORKERS: usize = 4;
const KEYS: usize = 30;
const MAX_RETRIES: usize = 5;

#[derive(Debug)]
struct Flaky;

/// Fails the first two attempts of every third key.
async fn reconcile(key: &str, attempt: usize) -> Result<(), Flaky> {
    tokio::time::sleep(Duration::from_millis(1)).await; // the "work"
    let index: usize = key
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if index.is_multiple_of(3) && attempt < 3 {
        Err(Flaky)
    } else {
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let queue = RateLimitingQueue::<String>::new(default_controller_rate_limiter());
    let attempts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let (succeeded_tx, mut succeeded_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let start = Instant::now();

    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (queue, attempts, succeeded) =
                (queue.clone(), attempts.clone(), succeeded_tx.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    let attempt = {
                        let mut attempts = attempts.lock().unwrap();
                        let count = attempts.entry(key.clone()).or_default();
                        *count += 1;
                        *count
                    };
                    match reconcile(&key, attempt).await {
                        Ok(()) => {
                            queue.forget(&key);
                            println!("worker {worker}: {key} ok (attempt {attempt})");
                            let _ = succeeded.send(key.clone());
                        }
                        Err(error) if queue.num_requeues(&key) < MAX_RETRIES => {
                            println!("worker {worker}: {key} failed ({error:?}), retrying");
                            queue.add_rate_limited(key.clone());
                        }
                        Err(error) => {
                            println!("worker {worker}: {key} failed ({error:?}), giving up");
                            queue.forget(&key);
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect();
    drop(succeeded_tx);

    for i in 0..KEYS {
        queue.add(format!("default/app-{i}"));
    }
    for _ in 0..KEYS {
        if succeeded_rx.recv().await.is_none() {
            break;
        }
    }
    queue.shutdown_with_drain().await;
    for worker in workers {
        worker.await.expect("worker panicked");
    }
    let attempts = attempts.lock().unwrap();
    let total: usize = attempts.values().sum();
    println!(
        "{} keys, {total} attempts, {} retried, in {:?}",
        attempts.len(),
        attempts.values().filter(|&&n| n > 1).count(),
        start.elapsed()
    );
}
