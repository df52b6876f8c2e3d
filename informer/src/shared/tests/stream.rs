//! Registrations consumed as streams.

use k8s_openapi::api::core::v1::ConfigMap;

use super::*;
use crate::shared::{Event, EventStream};

// A stream can be moved into a task, shared, and polled without pinning.
const _: fn() = || {
    fn stream<T: Send + Sync + Unpin + 'static>() {}
    stream::<EventStream<ConfigMap>>();
    stream::<Event<ConfigMap>>();
};

/// The next event, failing the test if none comes.
async fn next(stream: &mut EventStream<ConfigMap>) -> Event<ConfigMap> {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no event came"),
    }
}

/// What an event says, in short: kind, name, resourceVersion, initial.
fn describe(event: &Event<ConfigMap>) -> (&'static str, String, String, bool) {
    let rv = |cm: &ConfigMap| cm.metadata.resource_version.clone().unwrap_or_default();
    match event {
        Event::Added { object, initial } => ("added", name_of(object), rv(object), *initial),
        Event::Updated { old, new } => {
            assert_eq!(name_of(old), name_of(new));
            (
                "updated",
                name_of(new),
                format!("{}->{}", rv(old), rv(new)),
                false,
            )
        }
        Event::Deleted(object) => ("deleted", name_of(object.object()), String::new(), false),
    }
}

fn registrations(informer: &SharedIndexInformer<ConfigMap>) -> usize {
    informer.inner.listeners.read().len()
}

#[tokio::test]
async fn stream_yields_initial_adds_then_changes() {
    let deleted = r#"{"type":"DELETED","object":{"metadata":{"name":"b","namespace":"ns","resourceVersion":"13"}}}"#;
    let server = Server::new(
        list(["a".to_owned(), "b".to_owned()]),
        vec![added("c", 11), modified("a", 12), deleted.to_owned()],
    );
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (registration, mut stream) = informer.add_event_stream();
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    assert!(
        !registration.has_synced(),
        "nothing was received from the stream yet"
    );
    let first = next(&mut stream).await;
    assert!(
        !registration.has_synced(),
        "one initial add is still queued"
    );
    let second = next(&mut stream).await;
    assert!(registration.has_synced());
    let mut initial = vec![describe(&first), describe(&second)];
    initial.sort();
    assert_eq!(
        initial,
        [
            ("added", "a".to_owned(), "9".to_owned(), true),
            ("added", "b".to_owned(), "9".to_owned(), true),
        ]
    );
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(describe(&next(&mut stream).await));
    }
    assert_eq!(
        live,
        [
            ("added", "c".to_owned(), "11".to_owned(), false),
            ("updated", "a".to_owned(), "9->12".to_owned(), false),
            ("deleted", "b".to_owned(), String::new(), false),
        ]
    );
    cancel.cancel();
    ended(run).await.unwrap();
    assert!(stream.next().await.is_none(), "the stream ends with run()");
}

#[tokio::test]
async fn a_late_stream_replays_the_cache_and_shares_its_objects() {
    let server = Server::new(list(["a".to_owned(), "b".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    let (registration, mut stream) = informer.add_event_stream();
    let mut replay = Vec::new();
    for _ in 0..2 {
        let event = next(&mut stream).await;
        let cached = informer
            .indexer()
            .get(&format!("ns/{}", name_of(event.object())));
        assert!(
            cached.is_some_and(|c| Arc::ptr_eq(&c, event.object())),
            "the stream's object is the cache's, not a copy"
        );
        replay.push(describe(&event));
    }
    replay.sort();
    assert_eq!(
        replay,
        [
            ("added", "a".to_owned(), "9".to_owned(), true),
            ("added", "b".to_owned(), "9".to_owned(), true),
        ]
    );
    assert!(registration.has_synced());
    cancel.cancel();
    ended(run).await.unwrap();
}

#[tokio::test]
async fn dropping_a_stream_removes_its_registration() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (_kept, _stream) = informer.add_event_stream();
    let (_dropped, stream) = informer.add_event_stream();
    assert_eq!(registrations(&informer), 2);
    drop(stream);
    assert_eq!(registrations(&informer), 1);
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    let (_late, late) = informer.add_event_stream();
    assert_eq!(registrations(&informer), 2);
    drop(late);
    assert_eq!(registrations(&informer), 1);
    cancel.cancel();
    ended(run).await.unwrap();
}

#[tokio::test]
async fn removing_a_stream_registration_ends_the_stream() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    let (registration, mut stream) = informer.add_event_stream();
    informer.remove_event_handler(&registration);
    assert_eq!(
        describe(&next(&mut stream).await),
        ("added", "a".to_owned(), "9".to_owned(), true),
        "what was queued before the removal is still yielded"
    );
    assert!(stream.next().await.is_none());
    cancel.cancel();
    ended(run).await.unwrap();
}

#[tokio::test]
async fn a_stream_added_after_run_yields_the_cache_and_ends() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let informer = SharedIndexInformer::new(server.api(), InformerConfig::default());
    let (cancel, run) = spawn_run(&informer);
    assert!(informer.wait_for_cache_sync(&cancel).await);
    cancel.cancel();
    ended(run).await.unwrap();
    let (_registration, mut stream) = informer.add_event_stream();
    assert_eq!(registrations(&informer), 0);
    assert!(next(&mut stream).await.is_initial());
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stream_resyncs_on_its_own_period() {
    let server = Server::new(list(["a".to_owned()]), Vec::new());
    let config = InformerConfig::default().resync_period(Some(Duration::from_secs(10)));
    let informer = SharedIndexInformer::new(server.api(), config);
    let (_registration, mut stream) = informer.add_event_stream();
    let (_never, mut quiet) = informer.add_event_stream_with_resync(None);
    let (cancel, run) = spawn_run(&informer);
    assert!(next(&mut stream).await.is_initial());
    assert!(next(&mut quiet).await.is_initial());
    assert_eq!(
        describe(&next(&mut stream).await),
        ("updated", "a".to_owned(), "9->9".to_owned(), false),
        "a resync is an update from the object to itself"
    );
    cancel.cancel();
    ended(run).await.unwrap();
    assert!(
        quiet.next().await.is_none(),
        "no resync for a stream without a period"
    );
}
