//! The [`Reflector`]: lists, then watches from the last resourceVersion, feeding a [`Sink`]
//! (the DeltaFIFO) — client-go's `tools/cache/reflector.go`.

use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::{ListOptions, ResourceVersionMatch};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::backoff::BackoffManager;
use crate::list_watch::{Error, Event, ListWatch};

/// Where a reflector puts what it lists and watches (client-go's `ReflectorStore`).
pub trait Sink<K>: Send + Sync {
    /// The complete state at `resource_version` (after a list).
    fn replace(&self, items: Vec<Arc<K>>, resource_version: String);
    /// An object was added.
    fn add(&self, object: Arc<K>);
    /// An object changed.
    fn update(&self, object: Arc<K>);
    /// An object was deleted.
    fn delete(&self, object: Arc<K>);
    /// Periodic resync: re-deliver what is known (no API call).
    fn resync(&self);
}

/// Called with every list or watch failure (client-go's `WatchErrorHandler`).
pub type WatchErrorHandler = Arc<dyn Fn(&Error) + Send + Sync>;

/// How the initial list is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitialList {
    /// `limit`/`continue` pages (first from the watch cache with resourceVersion 0).
    #[default]
    Paged,
    /// A streaming list: a watch with `sendInitialEvents=true`, complete at the bookmark
    /// annotated `k8s.io/initial-events-end`. Falls back to paged if the server refuses.
    Streaming,
}

/// Reflector settings; defaults follow client-go.
#[derive(Clone)]
#[must_use]
pub struct ReflectorConfig {
    /// How the initial list is made.
    pub initial_list: InitialList,
    /// Page size of paged lists (client-go: 500).
    pub page_size: i64,
    /// Resync period (`None`: never); the sink re-delivers its contents.
    pub resync_period: Option<Duration>,
    /// Asked before each resync; `false` skips it (client-go's `ShouldResync`).
    pub should_resync: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Watch timeouts are drawn from [min, 2 × min) (client-go: 5 min).
    pub min_watch_timeout: Duration,
    /// A watch with no frame for this long beyond its timeout is considered stalled.
    pub stall_grace: Duration,
    /// Failure backoff (client-go: 800 ms → 30 s, reset after 2 min).
    pub backoff: BackoffManager,
    /// Called with each failure; the default logs it.
    pub watch_error_handler: Option<WatchErrorHandler>,
}

impl Default for ReflectorConfig {
    fn default() -> Self {
        Self {
            initial_list: InitialList::Paged,
            page_size: 500,
            resync_period: None,
            should_resync: None,
            min_watch_timeout: Duration::from_secs(300),
            stall_grace: Duration::from_secs(30),
            backoff: BackoffManager::default(),
            watch_error_handler: None,
        }
    }
}

impl std::fmt::Debug for ReflectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReflectorConfig")
            .field("initial_list", &self.initial_list)
            .field("page_size", &self.page_size)
            .field("resync_period", &self.resync_period)
            .field("min_watch_timeout", &self.min_watch_timeout)
            .finish_non_exhaustive()
    }
}

/// Lists and watches one resource type into a [`Sink`].
pub struct Reflector<K, S> {
    name: String,
    list_watch: ListWatch<K>,
    sink: Arc<S>,
    config: ReflectorConfig,
    last_sync: Arc<Mutex<String>>,
}

/// Why a list-and-watch round ended.
enum Ended {
    /// Relist (410 Gone, a failure, or a stalled watch).
    Relist,
    /// The reflector was cancelled.
    Cancelled,
}

impl<K, S> Reflector<K, S>
where
    K: kube::Resource + DeserializeOwned + Send + Sync + 'static,
    S: Sink<K> + 'static,
{
    /// A reflector named `name` (for logs) from `list_watch` into `sink`.
    pub fn new(
        name: impl Into<String>,
        list_watch: ListWatch<K>,
        sink: Arc<S>,
        config: ReflectorConfig,
    ) -> Self {
        Self {
            name: name.into(),
            list_watch,
            sink,
            config,
            last_sync: Arc::new(Mutex::new(String::new())),
        }
    }

    /// A handle on the last resourceVersion the reflector synced to.
    pub fn last_sync_resource_version(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.last_sync)
    }

    /// Runs until `cancel` fires: list, watch, relist on 410, back off on failures.
    pub async fn run(mut self, cancel: CancellationToken) {
        let resync = self.spawn_resync(&cancel);
        // client-go's isLastSyncResourceVersionUnavailable.
        let mut rv_unavailable = false;
        loop {
            let round = tokio::select! {
                _ = cancel.cancelled() => Ended::Cancelled,
                ended = self.list_and_watch(&mut rv_unavailable) => ended,
            };
            match round {
                Ended::Cancelled => break,
                Ended::Relist => {}
            }
        }
        if let Some(task) = resync {
            task.abort();
        }
        tracing::debug!(reflector = %self.name, "reflector stopped");
    }

    fn spawn_resync(&self, cancel: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.config.resync_period.filter(|p| !p.is_zero())?;
        let sink = Arc::clone(&self.sink);
        let should = self.config.should_resync.clone();
        let cancel = cancel.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {
                        if should.as_ref().is_none_or(|f| f()) {
                            sink.resync();
                        }
                    }
                }
            }
        }))
    }

    fn report(&self, error: &Error) {
        match &self.config.watch_error_handler {
            Some(handler) => handler(error),
            None => tracing::warn!(reflector = %self.name, error = %error, "list/watch failed"),
        }
    }

    fn relist_resource_version(&self, rv_unavailable: bool) -> String {
        if rv_unavailable {
            return String::new();
        }
        let last = self.last_sync.lock().clone();
        if last.is_empty() {
            "0".to_owned()
        } else {
            last
        }
    }

    /// One list followed by watches until something forces a relist.
    async fn list_and_watch(&mut self, rv_unavailable: &mut bool) -> Ended {
        let relist_rv = self.relist_resource_version(*rv_unavailable);
        let listed = match self.config.initial_list {
            InitialList::Streaming => match self.streaming_list(&relist_rv).await {
                Ok(Some(watch)) => {
                    *rv_unavailable = false;
                    // The streaming list's watch goes on as the first watch.
                    if let Ended::Cancelled = self.consume(watch).await {
                        return Ended::Cancelled;
                    }
                    Ok(())
                }
                Ok(None) => {
                    tracing::info!(reflector = %self.name, "server refused streaming lists; using paged lists");
                    self.config.initial_list = InitialList::Paged;
                    return Ended::Relist;
                }
                Err(e) => Err(e),
            },
            InitialList::Paged => self.paged_list(&relist_rv).await,
        };
        if let Err(e) = listed {
            self.report(&e);
            *rv_unavailable = e.is_expired();
            self.config.backoff.wait().await;
            return Ended::Relist;
        }
        *rv_unavailable = false;
        loop {
            let rv = self.last_sync.lock().clone();
            let timeout = self.watch_timeout();
            let options = ListOptions::default()
                .at(rv, None)
                .timeout(timeout.as_secs() as u32)
                .bookmarks(true);
            match self.list_watch.watch(options).await {
                Ok(stream) => {
                    let stream = stream.boxed();
                    match self
                        .watch_events(stream, timeout + self.config.stall_grace)
                        .await
                    {
                        WatchEnd::Closed => continue,
                        WatchEnd::Failed(e) => {
                            self.report(&e);
                            if e.is_expired() {
                                return Ended::Relist;
                            }
                            self.config.backoff.wait().await;
                            return Ended::Relist;
                        }
                    }
                }
                Err(e) if e.is_expired() => {
                    self.report(&e);
                    return Ended::Relist;
                }
                Err(e) => {
                    self.report(&e);
                    // client-go retries the watch (not a relist) when the server is
                    // unreachable; a refused watch is retried the same way after backoff.
                    self.config.backoff.wait().await;
                    if e.status().is_some() {
                        return Ended::Relist;
                    }
                }
            }
        }
    }

    fn watch_timeout(&self) -> Duration {
        let min = self.config.min_watch_timeout.as_secs_f64();
        Duration::from_secs_f64(min * (1.0 + rand::random::<f64>())).max(Duration::from_secs(1))
    }

    async fn consume(&mut self, watch: WatchStream<K>) -> Ended {
        let grace = self.config.min_watch_timeout * 2 + self.config.stall_grace;
        match self.watch_events(watch, grace).await {
            WatchEnd::Closed => Ended::Relist,
            WatchEnd::Failed(e) => {
                self.report(&e);
                if !e.is_expired() {
                    self.config.backoff.wait().await;
                }
                Ended::Relist
            }
        }
    }

    /// Pages through the list (falling back to one full list if a continue token expires)
    /// and replaces the sink's contents.
    async fn paged_list(&self, relist_rv: &str) -> Result<(), Error> {
        let first = ListOptions::default().limit(self.config.page_size).at(
            relist_rv,
            (!relist_rv.is_empty() && relist_rv != "0")
                .then_some(ResourceVersionMatch::NotOlderThan),
        );
        let (mut meta, mut items) = self.list_watch.list(first.clone()).await?;
        while let Some(token) = meta.continue_.clone().filter(|t| !t.is_empty()) {
            let next = ListOptions::default()
                .limit(self.config.page_size)
                .continue_token(token);
            match self.list_watch.list(next).await {
                Ok((m, page)) => {
                    meta = m;
                    items.extend(page);
                }
                Err(e) if e.is_expired() => {
                    tracing::info!(reflector = %self.name, "continue token expired; listing in full");
                    let full = ListOptions {
                        limit: None,
                        ..first.clone()
                    };
                    (meta, items) = self.list_watch.list(full).await?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let rv = meta.resource_version.unwrap_or_default();
        tracing::debug!(reflector = %self.name, items = items.len(), %rv, "listed");
        *self.last_sync.lock() = rv.clone();
        self.sink.replace(items, rv);
        Ok(())
    }

    /// A streaming list; returns the watch to go on with, or `None` if the server refused.
    async fn streaming_list(&self, relist_rv: &str) -> Result<Option<WatchStream<K>>, Error> {
        let timeout = self.watch_timeout();
        let rv = if relist_rv == "0" { "" } else { relist_rv };
        let mut options = ListOptions::default()
            .at(rv, None)
            .timeout(timeout.as_secs() as u32)
            .streaming_list();
        options.resource_version = Some(rv.to_owned());
        let mut stream = match self.list_watch.watch(options).await {
            Ok(s) => s.boxed(),
            Err(e) if refused_streaming(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut items = Vec::new();
        loop {
            match stream.next().await {
                Some(Ok(Event::Added(o) | Event::Modified(o))) => items.push(o),
                Some(Ok(Event::Deleted(o))) => {
                    let key = crate_key(o.as_ref());
                    items.retain(|i| crate_key(i.as_ref()) != key);
                }
                Some(Ok(Event::Bookmark {
                    resource_version,
                    initial_events_end: true,
                })) => {
                    tracing::debug!(reflector = %self.name, items = items.len(), rv = %resource_version, "streaming list complete");
                    *self.last_sync.lock() = resource_version.clone();
                    self.sink.replace(items, resource_version);
                    return Ok(Some(stream));
                }
                Some(Ok(Event::Bookmark { .. })) => {}
                Some(Err(e)) if refused_streaming(&e) => return Ok(None),
                Some(Err(e)) => return Err(e),
                // Closed before the initial events ended: this server does not stream lists.
                None => return Ok(None),
            }
        }
    }

    /// Feeds watch events to the sink until the watch closes or fails.
    async fn watch_events(&self, mut stream: WatchStream<K>, stall: Duration) -> WatchEnd {
        loop {
            let next = match tokio::time::timeout(stall, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(reflector = %self.name, ?stall, "watch stalled; restarting it");
                    return WatchEnd::Closed;
                }
            };
            match next {
                None => return WatchEnd::Closed,
                Some(Err(e)) => return WatchEnd::Failed(e),
                Some(Ok(event)) => {
                    let rv = match &event {
                        Event::Added(o) | Event::Modified(o) | Event::Deleted(o) => {
                            o.meta().resource_version.clone().unwrap_or_default()
                        }
                        Event::Bookmark {
                            resource_version, ..
                        } => resource_version.clone(),
                    };
                    match event {
                        Event::Added(o) => self.sink.add(o),
                        Event::Modified(o) => self.sink.update(o),
                        Event::Deleted(o) => self.sink.delete(o),
                        Event::Bookmark { .. } => {}
                    }
                    if !rv.is_empty() {
                        *self.last_sync.lock() = rv;
                    }
                }
            }
        }
    }
}

type WatchStream<K> = futures::stream::BoxStream<'static, Result<Event<K>, Error>>;

enum WatchEnd {
    Closed,
    Failed(Error),
}

fn crate_key<K: kube::Resource>(o: &K) -> (Option<String>, Option<String>) {
    let m = o.meta();
    (m.namespace.clone(), m.name.clone())
}

/// A server without streaming lists rejects `sendInitialEvents` as invalid (or forbidden).
fn refused_streaming(e: &Error) -> bool {
    e.status()
        .is_some_and(|s| matches!(s.code, 400 | 403 | 422) || s.reason == "Invalid")
}

#[cfg(test)]
mod tests {
    //! Error paths a real server will not produce on demand, against an in-process service.
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use ferrokube_client::{Api, Client};
    use http_body_util::Full;
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;
    use crate::decode::Decoder;

    #[derive(Default)]
    struct Recorder {
        replaces: Mutex<Vec<(usize, String)>>,
        adds: AtomicUsize,
    }

    impl Sink<ConfigMap> for Recorder {
        fn replace(&self, items: Vec<Arc<ConfigMap>>, rv: String) {
            self.replaces.lock().push((items.len(), rv));
        }
        fn add(&self, _: Arc<ConfigMap>) {
            self.adds.fetch_add(1, Ordering::SeqCst);
        }
        fn update(&self, _: Arc<ConfigMap>) {}
        fn delete(&self, _: Arc<ConfigMap>) {}
        fn resync(&self) {}
    }

    const LIST: &str = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","namespace":"ns","resourceVersion":"9"}}]}"#;
    const ADDED: &str = r#"{"type":"ADDED","object":{"metadata":{"name":"b","namespace":"ns","resourceVersion":"11"}}}"#;
    const GONE: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 11 (20)","reason":"Expired","code":410}}"#;

    /// Lists answer `LIST`; the first watch sends one event then a 410, later watches hang.
    fn client(lists: Arc<AtomicUsize>, watches: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let query = req.uri().query().unwrap_or_default().to_owned();
            let (lists, watches) = (Arc::clone(&lists), Arc::clone(&watches));
            async move {
                let body = if query.contains("watch=true") {
                    match watches.fetch_add(1, Ordering::SeqCst) {
                        0 => format!("{ADDED}\n{GONE}\n"),
                        _ => {
                            std::future::pending::<()>().await;
                            String::new()
                        }
                    }
                } else {
                    lists.fetch_add(1, Ordering::SeqCst);
                    LIST.to_owned()
                };
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
            }
        });
        Client::from_kube(kube::Client::new(service, "default"))
    }

    #[tokio::test]
    async fn watch_410_relists() {
        let (lists, watches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let api: Api<ConfigMap> = client(Arc::clone(&lists), Arc::clone(&watches)).namespaced("ns");
        let sink = Arc::new(Recorder::default());
        let expired = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&expired);
        let config = ReflectorConfig {
            watch_error_handler: Some(Arc::new(move |e: &Error| {
                if e.is_expired() {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            })),
            ..ReflectorConfig::default()
        };
        let reflector = Reflector::new(
            "test",
            ListWatch::new(api, Decoder::new(true, None)),
            Arc::clone(&sink),
            config,
        );
        let rv = reflector.last_sync_resource_version();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(reflector.run(cancel.clone()));
        for _ in 0..200 {
            if watches.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(
            expired.load(Ordering::SeqCst),
            1,
            "the 410 was reported once"
        );
        assert_eq!(
            lists.load(Ordering::SeqCst),
            2,
            "a 410 relists (no backoff needed)"
        );
        assert_eq!(
            sink.adds.load(Ordering::SeqCst),
            1,
            "the event before the 410 was kept"
        );
        assert_eq!(
            *sink.replaces.lock(),
            vec![(1, "10".to_owned()), (1, "10".to_owned())]
        );
        assert_eq!(*rv.lock(), "10");
    }
}
