//! The informer against an in-process API server: panics, handlers on the runtime, streams.

mod listeners;
mod stream;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrokube_client::{Api, Client};
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::api::core::v1::ConfigMap;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::decode::Transform;
use crate::store::IndexFunc;

/// How long a test waits for something that must happen (a failure otherwise).
const PATIENCE: Duration = Duration::from_secs(20);

fn object(name: &str, rv: u64) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"{rv}"}},"data":{{"k":"0123456789abcdef0123456789abcdef"}}}}"#
    )
}

fn list(names: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = names.into_iter().map(|n| object(&n, 9)).collect();
    format!(
        r#"{{"kind":"ConfigMapList","apiVersion":"v1","metadata":{{"resourceVersion":"10"}},"items":[{}]}}"#,
        items.join(",")
    )
}

fn added(name: &str, rv: u64) -> String {
    format!(r#"{{"type":"ADDED","object":{}}}"#, object(name, rv))
}

fn modified(name: &str, rv: u64) -> String {
    format!(r#"{{"type":"MODIFIED","object":{}}}"#, object(name, rv))
}

/// An API server with one list answer; the first watch sends `first_watch` (one frame each,
/// released one at a time through `release` when it is set) and every watch then stays open.
#[derive(Default)]
struct Server {
    list: String,
    first_watch: Vec<String>,
    lists: AtomicUsize,
    watches: AtomicUsize,
    /// Watches whose body is still held by someone.
    open_watches: Arc<AtomicUsize>,
}

struct OpenWatch(Arc<AtomicUsize>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

impl Server {
    fn new(list: String, first_watch: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            list,
            first_watch,
            ..Self::default()
        })
    }

    fn respond(&self, query: &str) -> Body {
        if !query.contains("watch=true") {
            self.lists.fetch_add(1, Ordering::SeqCst);
            return Full::new(Bytes::from(self.list.clone())).boxed_unsync();
        }
        let frames = match self.watches.fetch_add(1, Ordering::SeqCst) {
            0 => self.first_watch.clone(),
            _ => Vec::new(),
        };
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        let open = OpenWatch(Arc::clone(&self.open_watches));
        // Each frame one data frame of the body (made by `Full`, to name no body crate).
        let frames = futures::stream::iter(frames)
            .then(|f| async move {
                Full::new(Bytes::from(format!("{f}\n")))
                    .frame()
                    .await
                    .expect("a full body has one frame")
            })
            .chain(futures::stream::pending())
            .map(move |frame| {
                let _held = &open;
                frame
            });
        StreamBody::new(frames).boxed_unsync()
    }

    fn client(self: &Arc<Self>) -> Client {
        let server = Arc::clone(self);
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let body = server.respond(req.uri().query().unwrap_or_default());
            async move { Ok::<_, Infallible>(http::Response::new(body)) }
        });
        Client::from_kube(kube::Client::new(service, "default"))
    }

    fn api(self: &Arc<Self>) -> Api<ConfigMap> {
        self.client().namespaced("ns")
    }

    fn requests(&self) -> (usize, usize) {
        (
            self.lists.load(Ordering::SeqCst),
            self.watches.load(Ordering::SeqCst),
        )
    }
}

/// Waits for `done`, failing the test after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `run()` in a task of its own, as users run it.
fn spawn_run(
    informer: &SharedIndexInformer<ConfigMap>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let (i, c) = (informer.clone(), cancel.clone());
    (cancel, tokio::spawn(async move { i.run(c).await }))
}

/// Waits for `run()` to end; fails the test if it does not.
async fn ended(run: tokio::task::JoinHandle<()>) -> Result<(), JoinError> {
    match tokio::time::timeout(PATIENCE, run).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("run() did not end"),
    }
}

fn panic_message(e: JoinError) -> String {
    assert!(e.is_panic(), "run() ended with {e:?}, not a panic");
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn name_of(cm: &ConfigMap) -> String {
    cm.metadata.name.clone().unwrap_or_default()
}

fn panicking_transform(victim: &'static str) -> Transform<ConfigMap> {
    Arc::new(move |cm: ConfigMap| {
        assert!(name_of(&cm) != victim, "transform refused {victim}");
        cm
    })
}

// === panics in the reflector or the processing loop ===

/// A list large enough to be decoded in tasks of its own (see `decode::pool`): the panic of
/// the transform in one of them ends `run()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_panic_while_decoding_a_list_ends_run() {
    let server = Server::new(list((0..3000).map(|i| format!("cm-{i}"))), Vec::new());
    let config = InformerConfig::default().transform(panicking_transform("cm-2500"));
    let informer = SharedIndexInformer::new(server.api(), config);
    let (_cancel, run) = spawn_run(&informer);
    let message = panic_message(ended(run).await.unwrap_err());
    assert_eq!(message, "transform refused cm-2500");
    assert!(!informer.has_synced());
}

#[tokio::test]
async fn transform_panic_while_decoding_a_watch_event_ends_run() {
    let server = Server::new(list(["a".to_owned()]), vec![added("b", 11)]);
    let config = InformerConfig::default().transform(panicking_transform("b"));
    let informer = SharedIndexInformer::new(server.api(), config);
    let (_cancel, run) = spawn_run(&informer);
    let message = panic_message(ended(run).await.unwrap_err());
    assert_eq!(message, "transform refused b");
    assert_eq!(server.open_watches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn index_function_panic_ends_run_and_stops_the_reflector() {
    let server = Server::new(list(["a".to_owned()]), vec![added("b", 11)]);
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let index: IndexFunc<ConfigMap> = Arc::new(|cm: &ConfigMap| {
        assert!(name_of(cm) != "b", "cannot index b");
        vec![name_of(cm)]
    });
    informer
        .indexer()
        .add_indexers([("by-name", index)])
        .unwrap();
    let (_cancel, run) = spawn_run(&informer);
    let message = panic_message(ended(run).await.unwrap_err());
    assert_eq!(message, "cannot index b");
    assert_eq!(
        server.open_watches.load(Ordering::SeqCst),
        0,
        "the reflector's watch was dropped before run() ended"
    );
    let requests = server.requests();
    assert_eq!(requests, (1, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.requests(), requests, "no list or watch after run()");
}

#[tokio::test]
async fn dropping_run_stops_the_reflector() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let cancel = CancellationToken::new();
    let mut running = Box::pin(informer.run(cancel.clone()));
    tokio::select! {
        () = &mut running => panic!("run() ended on its own"),
        () = until("the watch", || server.open_watches.load(Ordering::SeqCst) == 1) => {}
    }
    drop(running);
    until("the watch to be dropped", || {
        server.open_watches.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn factory_shutdown_hands_out_an_informers_panic() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let panicking = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&panicking);
    let transform: Transform<ConfigMap> = Arc::new(move |_| {
        flag.store(true, Ordering::SeqCst);
        panic!("transform refused a");
    });
    let factory = crate::SharedInformerFactory::new(server.client(), None)
        .namespace("ns")
        .transform(transform);
    let _informer = factory.informer_for::<ConfigMap>();
    factory.start();
    // Once the transform runs, the informer's run() ends with its panic, cancelled or not.
    until("the transform", || panicking.load(Ordering::SeqCst)).await;
    let shutdown = async move { factory.shutdown().await };
    let message = panic_message(ended(tokio::spawn(shutdown)).await.unwrap_err());
    assert_eq!(message, "transform refused a");
}
