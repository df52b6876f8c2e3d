//! The `events.k8s.io/v1` recorder against a real API server: creation, series for repeats,
//! aggregation + spam filtering, and never blocking the caller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use ferrokube_runtime::client::Client;
use ferrokube_runtime::client::events::{
    BroadcasterConfig, COMBINED_NOTE_PREFIX, EventBroadcaster, EventType,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use tests::{Context, Test};

const CONTROLLER: &str = "ferrokube.io/e2e-events";
const INSTANCE: &str = "e2e-events-0";

pub fn tests() -> Vec<Test> {
    vec![
        Test::new("events::one_event_is_created", one_event),
        Test::new("events::repeats_make_one_series", repeats),
        Test::new("events::distinct_notes_are_aggregated", distinct_notes),
        Test::new("events::recording_never_blocks", never_blocks),
    ]
}

async fn configmap(ctx: &Context, name: &str) -> anyhow::Result<ConfigMap> {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some(BTreeMap::from([("key".to_owned(), "value".to_owned())]));
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace);
    Ok(api.create(&PostParams::default(), &cm).await?)
}

fn broadcaster(ctx: &Context) -> EventBroadcaster {
    let client = Client::from_kube(ctx.client.clone());
    // A flush period longer than any test: only `flush()` writes series updates.
    let config = BroadcasterConfig::default().with_flush_interval(Duration::from_secs(3600));
    EventBroadcaster::new(client, config)
}

/// Our events in the test namespace.
async fn events(ctx: &Context) -> anyhow::Result<Vec<Event>> {
    let api = Api::<Event>::namespaced(ctx.client.clone(), &ctx.namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(CONTROLLER))
        .collect())
}

async fn one_event(ctx: Context) -> anyhow::Result<()> {
    let cm = configmap(&ctx, "one").await?;
    let broadcaster = broadcaster(&ctx);
    let recorder = broadcaster.recorder(CONTROLLER, INSTANCE);
    recorder.event(
        &cm,
        None,
        EventType::Warning,
        "ConfigInvalid",
        "Validate",
        "key has a bad value",
    );
    broadcaster.flush().await;
    let metrics = broadcaster.metrics();
    ensure!(
        metrics.created == 1 && metrics.failed == 0,
        "metrics: {metrics:?}"
    );

    let events = events(&ctx).await?;
    ensure!(events.len() == 1, "expected one event, got {events:#?}");
    let e = &events[0];
    let regarding = e.regarding.as_ref().context("no regarding")?;
    ensure!(
        regarding.kind.as_deref() == Some("ConfigMap")
            && regarding.api_version.as_deref() == Some("v1")
            && regarding.name.as_deref() == Some("one")
            && regarding.namespace.as_deref() == Some(ctx.namespace.as_str())
            && regarding.uid == cm.metadata.uid,
        "regarding: {regarding:?}"
    );
    ensure!(
        e.reason.as_deref() == Some("ConfigInvalid"),
        "reason: {:?}",
        e.reason
    );
    ensure!(
        e.action.as_deref() == Some("Validate"),
        "action: {:?}",
        e.action
    );
    ensure!(
        e.note.as_deref() == Some("key has a bad value"),
        "note: {:?}",
        e.note
    );
    ensure!(e.type_.as_deref() == Some("Warning"), "type: {:?}", e.type_);
    ensure!(
        e.reporting_instance.as_deref() == Some(INSTANCE),
        "reportingInstance: {:?}",
        e.reporting_instance
    );
    ensure!(e.event_time.is_some(), "no eventTime");
    ensure!(e.series.is_none(), "a single event has no series");
    let name = e.metadata.name.as_deref().unwrap_or_default();
    ensure!(name.starts_with("one."), "event name {name}");
    broadcaster.shutdown().await;
    Ok(())
}

async fn repeats(ctx: Context) -> anyhow::Result<()> {
    let cm = configmap(&ctx, "repeated").await?;
    let broadcaster = broadcaster(&ctx);
    let recorder = broadcaster.recorder(CONTROLLER, INSTANCE);
    for _ in 0..5 {
        recorder.event(&cm, None, EventType::Normal, "Synced", "Sync", "in sync");
    }
    broadcaster.flush().await;
    let metrics = broadcaster.metrics();
    ensure!(
        (
            metrics.created,
            metrics.patched,
            metrics.series_repeats,
            metrics.failed
        ) == (1, 1, 4, 0),
        "metrics: {metrics:?}"
    );

    let events = events(&ctx).await?;
    ensure!(
        events.len() == 1,
        "expected one event, got {}",
        events.len()
    );
    let series = events[0].series.as_ref().context("no series")?;
    ensure!(series.count == 5, "series.count is {}", series.count);
    let event_time = events[0].event_time.as_ref().context("no eventTime")?;
    ensure!(
        series.last_observed_time.0 >= event_time.0,
        "lastObservedTime {:?} before eventTime {:?}",
        series.last_observed_time,
        event_time
    );

    // Later repeats update the same event.
    recorder.event(&cm, None, EventType::Normal, "Synced", "Sync", "in sync");
    broadcaster.shutdown().await;
    let events = self::events(&ctx).await?;
    let count = events
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .collect::<Vec<_>>();
    ensure!(count == [6], "series counts after shutdown: {count:?}");
    Ok(())
}

async fn distinct_notes(ctx: Context) -> anyhow::Result<()> {
    let cm = configmap(&ctx, "noisy").await?;
    let broadcaster = broadcaster(&ctx);
    let recorder = broadcaster.recorder(CONTROLLER, INSTANCE);
    for i in 1..=30 {
        let note = format!("attempt {i} failed");
        recorder.event(&cm, None, EventType::Warning, "SyncFailed", "Sync", note);
    }
    broadcaster.flush().await;
    let metrics = broadcaster.metrics();

    // client-go's rules: notes 1-9 get their own event; from the 10th distinct note on they
    // are combined into one aggregate event; the spam filter lets 25 events about the object
    // through, so occurrences 10-25 reach the aggregate (count 16) and 26-30 are dropped.
    let events = events(&ctx).await?;
    ensure!(
        events.len() == 10,
        "expected 9 events + 1 aggregate, got {}: {metrics:?}",
        events.len()
    );
    let (combined, single): (Vec<_>, Vec<_>) = events.iter().partition(|e| {
        e.note
            .as_deref()
            .is_some_and(|n| n.starts_with(COMBINED_NOTE_PREFIX))
    });
    ensure!(combined.len() == 1, "{} aggregate events", combined.len());
    let aggregate = combined[0];
    ensure!(
        aggregate.note.as_deref()
            == Some(format!("{COMBINED_NOTE_PREFIX}attempt 10 failed").as_str()),
        "aggregate note {:?}",
        aggregate.note
    );
    let count = aggregate.series.as_ref().map(|s| s.count);
    ensure!(count == Some(16), "aggregate series count {count:?}");
    let mut notes: Vec<_> = single.iter().filter_map(|e| e.note.clone()).collect();
    notes.sort();
    let expected: Vec<_> = (1..=9).map(|i| format!("attempt {i} failed")).collect();
    ensure!(notes == expected, "individual notes {notes:?}");
    ensure!(
        single.iter().all(|e| e.series.is_none()),
        "individual events have no series"
    );
    ensure!(
        (
            metrics.aggregated,
            metrics.spam_filtered,
            metrics.created,
            metrics.patched
        ) == (16, 5, 10, 1),
        "metrics: {metrics:?}"
    );
    broadcaster.shutdown().await;
    Ok(())
}

async fn never_blocks(ctx: Context) -> anyhow::Result<()> {
    let cm = configmap(&ctx, "unreachable").await?;
    // A loopback port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}").parse()?;
    let client = Client::from_kube(kube::Client::try_from(kube::Config::new(url))?);
    let config = BroadcasterConfig::default()
        .with_queue_capacity(10)
        .with_retry(ferrokube_runtime::client::retry::Backoff {
            duration: Duration::from_millis(10),
            factor: 1.0,
            jitter: 0.0,
            steps: 2,
            cap: Duration::from_millis(10),
        });
    let broadcaster = EventBroadcaster::new(client, config);
    let recorder = broadcaster.recorder(CONTROLLER, INSTANCE);

    let started = Instant::now();
    recorder.event(&cm, None, EventType::Normal, "Synced", "Sync", "first");
    let one = started.elapsed();
    for i in 0..1000 {
        recorder.event(
            &cm,
            None,
            EventType::Normal,
            "Synced",
            "Sync",
            format!("{i}"),
        );
    }
    let all = started.elapsed();
    ensure!(one < Duration::from_millis(50), "one event took {one:?}");
    ensure!(all < Duration::from_secs(1), "1001 events took {all:?}");
    let metrics = broadcaster.metrics();
    ensure!(
        metrics.recorded + metrics.dropped == 1001 && metrics.dropped > 0,
        "a queue of 10 must drop: {metrics:?}"
    );

    tokio::time::timeout(Duration::from_secs(60), broadcaster.flush())
        .await
        .context("flush against a dead server did not end")?;
    let metrics = broadcaster.metrics();
    ensure!(
        metrics.failed > 0 && metrics.created == 0,
        "writes to a dead server: {metrics:?}"
    );
    broadcaster.shutdown().await;
    // Nothing reached the real server either.
    ensure!(events(&ctx).await?.is_empty(), "events were written");
    Ok(())
}
