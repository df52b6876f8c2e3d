//! Handlers run on the runtime and stop with the informer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;

use super::*;

#[tokio::test]
async fn handlers_may_spawn_tasks() {
    let server = Server::new(list(["a".to_owned()]), vec![added("b", 11)]);
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _registration = informer.add_event_handler(EventHandlerFuncs::default().on_add(
        move |cm: Arc<ConfigMap>, initial| {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                let _ = tx.send((name_of(&cm), initial));
            });
        },
    ));
    let (cancel, run) = spawn_run(&informer);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(event)) => seen.push(event),
            _ => panic!("the handler's tasks sent only {seen:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, [("a".to_owned(), true), ("b".to_owned(), false)]);
    cancel.cancel();
    ended(run).await.unwrap();
}

/// Set when the handler holding it is dropped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn handlers_stop_with_run() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = Dropped(Arc::clone(&dropped));
    let registration =
        informer.add_event_handler(EventHandlerFuncs::default().on_add(move |_, _| {
            let _held = &guard;
        }));
    let (cancel, run) = spawn_run(&informer);
    until("the handler to sync", || registration.has_synced()).await;
    assert!(!dropped.load(Ordering::SeqCst));
    cancel.cancel();
    ended(run).await.unwrap();
    assert!(dropped.load(Ordering::SeqCst), "the handler outlived run()");
}

#[tokio::test]
async fn handler_panic_ends_run() {
    let server = Server::new(list(["a".to_owned()]), vec![modified("a", 11)]);
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let calm = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calm);
    let _calm = informer.add_event_handler(EventHandlerFuncs::default().on_add(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    let _panicky = informer.add_event_handler(
        EventHandlerFuncs::default().on_update(|_, _: Arc<ConfigMap>| panic!("handler gave up")),
    );
    let (_cancel, run) = spawn_run(&informer);
    let message = panic_message(ended(run).await.unwrap_err());
    assert_eq!(message, "handler gave up");
    assert_eq!(server.open_watches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn handlers_added_from_other_threads_after_start() {
    let server = Server::new(list(["a".to_owned(), "b".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let late = informer.clone();
    let registration = std::thread::spawn(move || {
        late.add_event_handler(EventHandlerFuncs::default().on_add(
            move |cm: Arc<ConfigMap>, initial| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send((name_of(&cm), initial));
                });
            },
        ))
    })
    .join()
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(event)) => seen.push(event),
            _ => panic!("the late handler's tasks sent only {seen:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, [("a".to_owned(), true), ("b".to_owned(), true)]);
    until("the late handler to sync", || registration.has_synced()).await;
    cancel.cancel();
    ended(run).await.unwrap();
}
