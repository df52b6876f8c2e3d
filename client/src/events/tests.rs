//! The broadcaster end to end against a tiny local HTTP server: which requests it sends, with
//! what bodies, and how it retries, falls back and gives up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use parking_lot::Mutex;
use serde_json::Value;

use super::*;
use crate::client::Client;
use crate::config::Config;
use crate::retry::Backoff;

/// One request the mock saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

type Handler = dyn Fn(usize, &Seen) -> (u16, String) + Send + Sync;

struct Mock {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    /// Answers the n-th request (from 0) with `handler(n, request)`.
    async fn start(
        handler: impl Fn(usize, &Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            content_type: parts
                                .headers
                                .get(http::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned(),
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        };
                        let n = {
                            let mut log = log.lock();
                            log.push(seen.clone());
                            log.len() - 1
                        };
                        let (code, body) = handler(n, &seen);
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { url, seen }
    }

    fn client(&self) -> Client {
        Config::from_kube(kube::Config::new(self.url.parse().unwrap()))
            .with_qps(-1.0)
            .build()
            .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

/// The body of a successful write: the object sent back.
fn echo(_: usize, seen: &Seen) -> (u16, String) {
    (
        if seen.method == "POST" { 201 } else { 200 },
        seen.body.to_string(),
    )
}

fn status(code: u16, reason: &str) -> (u16, String) {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code,
    });
    (code, body.to_string())
}

fn config() -> BroadcasterConfig {
    BroadcasterConfig::default()
        .with_flush_interval(Duration::from_secs(3600))
        .with_request_timeout(Duration::from_secs(5))
        .with_retry(Backoff {
            duration: Duration::from_millis(5),
            factor: 1.0,
            jitter: 0.0,
            steps: 3,
            cap: Duration::from_millis(5),
        })
}

fn configmap() -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("cm".into());
    cm.metadata.namespace = Some("ns".into());
    cm.metadata.uid = Some("uid-1".into());
    cm
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

#[tokio::test]
async fn the_first_occurrence_is_posted_and_repeats_are_patched_once() {
    let mock = Mock::start(echo).await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let recorder = broadcaster.recorder("example.com/ctl", "ctl-0");
    for _ in 0..5 {
        recorder.event(
            &configmap(),
            None,
            EventType::Warning,
            "Failed",
            "Sync",
            "boom",
        );
    }
    broadcaster.flush().await;

    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "one create, one patch: {seen:?}");
    let (post, patch) = (&seen[0], &seen[1]);
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", EVENTS));
    assert_eq!(post.content_type, "application/json");
    let event = &post.body;
    let name = event["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cm."), "{name}");
    assert_eq!(event["metadata"]["namespace"], "ns");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "Failed");
    assert_eq!(event["action"], "Sync");
    assert_eq!(event["note"], "boom");
    assert_eq!(event["reportingController"], "example.com/ctl");
    assert_eq!(event["reportingInstance"], "ctl-0");
    assert_eq!(event["regarding"]["kind"], "ConfigMap");
    assert_eq!(event["regarding"]["uid"], "uid-1");
    assert!(event["eventTime"].as_str().unwrap().ends_with('Z'));
    assert!(event.get("series").is_none());

    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.path, format!("{EVENTS}/{name}"));
    assert_eq!(patch.content_type, "application/merge-patch+json");
    let body = patch.body.as_object().unwrap();
    assert_eq!(
        body.keys().collect::<Vec<_>>(),
        ["series"],
        "only series is patched"
    );
    assert_eq!(body["series"]["count"], 5);
    assert!(body["series"]["lastObservedTime"].is_string());

    let m = broadcaster.metrics();
    assert_eq!(
        (m.recorded, m.created, m.patched, m.series_repeats),
        (5, 1, 1, 4)
    );
    assert_eq!(m.sent(), 2);
    broadcaster.shutdown().await;
    assert_eq!(mock.seen().len(), 2, "nothing left to write");
}

#[tokio::test]
async fn cluster_scoped_objects_get_events_in_default() {
    let mock = Mock::start(echo).await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("team-a".into());
    broadcaster.recorder("ctl", "ctl-0").event(
        &ns,
        None,
        EventType::Normal,
        "Created",
        "Create",
        "hi",
    );
    broadcaster.shutdown().await;
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path,
        "/apis/events.k8s.io/v1/namespaces/default/events"
    );
    assert_eq!(seen[0].body["regarding"]["name"], "team-a");
}

#[tokio::test]
async fn shutdown_writes_pending_series() {
    let mock = Mock::start(echo).await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    for _ in 0..3 {
        recorder.event(
            &configmap(),
            None,
            EventType::Normal,
            "Synced",
            "Sync",
            "ok",
        );
    }
    broadcaster.shutdown().await;
    let seen = mock.seen();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH"]);
    assert_eq!(seen[1].body["series"]["count"], 3);
    // The broadcaster has stopped: recording still returns, and counts a drop.
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    assert_eq!(recorder.metrics().dropped, 1);
}

#[tokio::test]
async fn the_periodic_flush_patches_without_being_asked() {
    let mock = Mock::start(echo).await;
    let broadcaster = EventBroadcaster::new(
        mock.client(),
        config().with_flush_interval(Duration::from_millis(50)),
    );
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while mock.seen().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the flush tick patched the series");
    assert_eq!(mock.seen()[1].body["series"]["count"], 2);
    broadcaster.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_then_given_up() {
    // The first create fails twice with 503 then succeeds; a second event always gets a 500.
    let mock = Mock::start(|n, seen| match (n, seen.body["note"].as_str()) {
        (_, Some("doomed")) => status(500, "InternalError"),
        (0 | 1, _) => status(503, "ServiceUnavailable"),
        _ => echo(n, seen),
    })
    .await;
    let broadcaster = EventBroadcaster::new(mock.client(), config().with_max_concurrent_writes(1));
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    broadcaster.flush().await;
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "doomed",
    );
    broadcaster.flush().await;
    let seen = mock.seen();
    assert_eq!(seen.len(), 3 + 3, "two retries per write: {seen:?}");
    let m = broadcaster.metrics();
    assert_eq!((m.created, m.failed), (1, 1));
    broadcaster.shutdown().await;
}

#[tokio::test]
async fn rejected_events_are_not_retried() {
    let mock = Mock::start(|_, _| status(422, "Invalid")).await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let recorder = broadcaster.recorder("not a qualified name!", "ctl-0");
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    // Never sent: the API requires a reason and an action.
    recorder.event(&configmap(), None, EventType::Normal, "", "Sync", "ok");
    broadcaster.flush().await;
    assert_eq!(mock.seen().len(), 1);
    let m = broadcaster.metrics();
    assert_eq!((m.failed, m.invalid, m.created), (1, 1, 0));
    broadcaster.shutdown().await;
}

#[tokio::test]
async fn a_patch_of_a_vanished_event_recreates_it_with_its_series() {
    let mock = Mock::start(|n, seen| match seen.method.as_str() {
        "PATCH" => status(404, "NotFound"),
        _ => echo(n, seen),
    })
    .await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    broadcaster.flush().await;
    recorder.event(
        &configmap(),
        None,
        EventType::Normal,
        "Synced",
        "Sync",
        "ok",
    );
    broadcaster.flush().await;
    let seen = mock.seen();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PATCH", "POST"]);
    assert_eq!(seen[2].body["series"]["count"], 2);
    assert_eq!(
        seen[2].body["metadata"]["name"],
        seen[0].body["metadata"]["name"]
    );
    broadcaster.shutdown().await;
}

#[tokio::test]
async fn thirty_notes_make_ten_events() {
    let mock = Mock::start(echo).await;
    let broadcaster = EventBroadcaster::new(mock.client(), config());
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    for i in 1..=30 {
        let note = format!("attempt {i} failed");
        recorder.event(
            &configmap(),
            None,
            EventType::Warning,
            "Failed",
            "Sync",
            note,
        );
    }
    broadcaster.flush().await;
    let seen = mock.seen();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 10);
    assert_eq!(
        posts
            .iter()
            .filter(|p| p.body["note"]
                .as_str()
                .unwrap()
                .starts_with(COMBINED_NOTE_PREFIX))
            .count(),
        1
    );
    let patches: Vec<_> = seen.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].body["series"]["count"], 16);
    let m = broadcaster.metrics();
    assert_eq!((m.aggregated, m.spam_filtered, m.created), (16, 5, 10));
    broadcaster.shutdown().await;
}

#[tokio::test]
async fn recording_never_waits_for_the_server() {
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Config::from_kube(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .build()
    .unwrap();
    let broadcaster = EventBroadcaster::new(client, config().with_queue_capacity(4));
    let recorder = broadcaster.recorder("ctl", "ctl-0");
    let started = std::time::Instant::now();
    for i in 0..100 {
        recorder.event(
            &configmap(),
            None,
            EventType::Normal,
            "Synced",
            "Sync",
            format!("{i}"),
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    let m = broadcaster.metrics();
    assert_eq!(m.recorded + m.dropped, 100);
    assert!(m.dropped > 0, "a queue of 4 cannot take 100 events at once");
    broadcaster.flush().await;
    assert!(broadcaster.metrics().failed > 0);
    assert_eq!(broadcaster.metrics().created, 0);
    broadcaster.shutdown().await;
}
