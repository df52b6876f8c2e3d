//! Metrics: the seven series, as exported by `PrometheusMetrics`, on paused Tokio time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::time::advance;

use crate::metrics::PrometheusMetrics;
use crate::{Config, ItemExponentialFailureRateLimiter, PriorityQueue, RateLimitingQueue};

fn config(registry: &mut Registry, name: &str) -> Config {
    Config::new()
        .name(name)
        .metrics(Arc::new(PrometheusMetrics::new(registry)))
}

/// The value of `series{name="q",controller="q"}` in the text exposition.
fn value(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let prefix = format!("{series}{{name=\"q\",controller=\"q\"}} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    line[prefix.len()..].parse().unwrap()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limiting_queue_reports_client_go_series() {
    let mut registry = Registry::default();
    let config = config(&mut registry, "q");
    let limiter =
        ItemExponentialFailureRateLimiter::new(Duration::from_millis(1), Duration::from_secs(1));
    let queue = RateLimitingQueue::with_config(limiter, config);

    queue.add("a");
    queue.add("b");
    queue.add("a"); // collapses: not an add
    assert_eq!(value(&registry, "workqueue_adds_total"), 2.0);
    assert_eq!(value(&registry, "workqueue_depth"), 2.0);

    advance(Duration::from_millis(250)).await;
    let a = queue.get().await.unwrap();
    assert_eq!(value(&registry, "workqueue_depth"), 1.0);
    assert_eq!(
        value(&registry, "workqueue_queue_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        value(&registry, "workqueue_queue_duration_seconds_sum"),
        0.25
    );

    // The unfinished-work gauges are refreshed every 500 ms while "a" is processed.
    advance(Duration::from_millis(1000)).await;
    settle().await;
    assert_eq!(value(&registry, "workqueue_unfinished_work_seconds"), 1.0);
    assert_eq!(
        value(&registry, "workqueue_longest_running_processor_seconds"),
        1.0
    );

    queue.add("a"); // while processing: an add, and depth counts it
    assert_eq!(value(&registry, "workqueue_adds_total"), 3.0);
    assert_eq!(value(&registry, "workqueue_depth"), 2.0);
    advance(Duration::from_millis(500)).await;
    queue.done(&a);
    assert_eq!(
        value(&registry, "workqueue_work_duration_seconds_count"),
        1.0
    );
    assert_eq!(value(&registry, "workqueue_work_duration_seconds_sum"), 1.5);
    settle().await;
    advance(Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(value(&registry, "workqueue_unfinished_work_seconds"), 0.0);

    queue.add_after("c", Duration::from_millis(10));
    queue.add_rate_limited("d");
    assert_eq!(value(&registry, "workqueue_retries_total"), 2.0);
    assert_eq!(
        value(&registry, "workqueue_adds_total"),
        3.0,
        "not added yet"
    );
    advance(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(value(&registry, "workqueue_adds_total"), 5.0);
    assert_eq!(value(&registry, "workqueue_depth"), 4.0);

    for _ in 0..4 {
        let key = queue.get().await.unwrap();
        queue.done(&key);
    }
    assert_eq!(value(&registry, "workqueue_depth"), 0.0);
    assert_eq!(
        value(&registry, "workqueue_queue_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        value(&registry, "workqueue_work_duration_seconds_count"),
        5.0
    );
}

#[tokio::test(start_paused = true)]
async fn priority_queue_reports_the_same_series() {
    let mut registry = Registry::default();
    let config = config(&mut registry, "q");
    let limiter =
        ItemExponentialFailureRateLimiter::new(Duration::from_millis(1), Duration::from_secs(1));
    let queue = PriorityQueue::with_config(limiter, config);

    queue.add("a");
    queue.add_after("b", Duration::from_millis(100));
    assert_eq!(
        value(&registry, "workqueue_adds_total"),
        1.0,
        "b is counted when ready"
    );
    assert_eq!(value(&registry, "workqueue_retries_total"), 1.0);
    assert_eq!(value(&registry, "workqueue_depth"), 1.0);
    advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(value(&registry, "workqueue_adds_total"), 2.0);
    assert_eq!(value(&registry, "workqueue_depth"), 2.0);

    let a = queue.get().await.unwrap();
    assert_eq!(a, "a");
    assert_eq!(
        value(&registry, "workqueue_queue_duration_seconds_sum"),
        0.1
    );
    advance(Duration::from_millis(200)).await;
    queue.done(&a);
    assert_eq!(value(&registry, "workqueue_work_duration_seconds_sum"), 0.2);
    let b = queue.get().await.unwrap();
    queue.done(&b);
    assert_eq!(value(&registry, "workqueue_depth"), 0.0);
    assert_eq!(
        value(&registry, "workqueue_queue_duration_seconds_count"),
        2.0
    );
}

#[tokio::test]
async fn unnamed_queues_report_nothing() {
    let mut registry = Registry::default();
    let config = config(&mut registry, "");
    let queue = RateLimitingQueue::with_config(crate::default_controller_rate_limiter(), config);
    queue.add(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(!text.contains("workqueue_adds_total{"), "{text}");
}
