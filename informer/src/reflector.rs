//! The [`Reflector`]: lists, then watches from the last resourceVersion, feeding a [`Sink`]
//! (the DeltaFIFO) — client-go's `tools/cache/reflector.go`.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::retry::{Backoff, ResettingBackoff};
use ferrokube_client::{ListOptions, ResourceVersionMatch};
use foldhash::{HashMap, HashMapExt};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::key::object_key;
use crate::list_watch::{Event, ListWatch, ListWatchError};

/// Where a reflector puts what it lists and watches (client-go's `ReflectorStore`).
#[doc(alias = "ReflectorStore")]
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
pub type WatchErrorHandler = Arc<dyn Fn(&ListWatchError) + Send + Sync>;

/// How the initial list is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitialList {
    /// `limit`/`continue` pages (first from the watch cache with resourceVersion 0).
    #[default]
    Paged,
    /// A streaming list: a watch with `sendInitialEvents=true`, complete at the bookmark
    /// annotated `k8s.io/initial-events-end`. Falls back to paged if the server refuses.
    #[doc(alias = "WatchList")]
    #[doc(alias = "UseWatchList")]
    Streaming,
}

/// Reflector settings; defaults follow client-go.
///
/// ```
/// use std::time::Duration;
/// use ferrokube_informer::reflector::{InitialList, ReflectorConfig};
///
/// let config = ReflectorConfig::default()
///     .initial_list(InitialList::Streaming)
///     .resync_period(Some(Duration::from_secs(600)));
/// ```
#[derive(Clone)]
#[must_use]
#[doc(alias = "ReflectorOptions")]
pub struct ReflectorConfig {
    initial_list: InitialList,
    page_size: i64,
    resync_period: Option<Duration>,
    should_resync: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    min_watch_timeout: Duration,
    stall_grace: Duration,
    backoff: ResettingBackoff,
    watch_error_handler: Option<WatchErrorHandler>,
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
            backoff: Backoff::REFLECTOR.with_reset(BACKOFF_RESET),
            watch_error_handler: None,
        }
    }
}

impl ReflectorConfig {
    /// How the initial list is made (default: paged).
    pub fn initial_list(mut self, mode: InitialList) -> Self {
        self.initial_list = mode;
        self
    }

    /// The page size of paged lists (client-go: 500).
    pub fn page_size(mut self, size: i64) -> Self {
        self.page_size = size;
        self
    }

    /// How often the sink re-delivers its contents (`None` or zero, the default: never).
    pub fn resync_period(mut self, period: Option<Duration>) -> Self {
        self.resync_period = period.filter(|p| !p.is_zero());
        self
    }

    /// Asked before each resync; `false` skips it (client-go's `ShouldResync`).
    pub fn should_resync(mut self, should: Arc<dyn Fn() -> bool + Send + Sync>) -> Self {
        self.should_resync = Some(should);
        self
    }

    /// Watch timeouts are drawn from [min, 2 × min) (client-go: 5 minutes).
    pub fn min_watch_timeout(mut self, min: Duration) -> Self {
        self.min_watch_timeout = min;
        self
    }

    /// A watch from which nothing arrived for its timeout and this long is presumed dead
    /// (default: 30 s).
    pub fn stall_grace(mut self, grace: Duration) -> Self {
        self.stall_grace = grace;
        self
    }

    /// The backoff after failures (client-go: [`Backoff::REFLECTOR`], 800 ms → 30 s, reset
    /// after 2 minutes without a failure).
    pub fn backoff(mut self, backoff: ResettingBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Called with each list or watch failure (client-go's `SetWatchErrorHandler`); by
    /// default failures are logged.
    pub fn watch_error_handler(mut self, handler: WatchErrorHandler) -> Self {
        self.watch_error_handler = Some(handler);
        self
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
    /// client-go's `isLastSyncResourceVersionUnavailable`: the server no longer has `last_sync`
    /// (or does not have it yet), so the next list reads the latest state.
    rv_unavailable: bool,
}

/// A watch, and how long it may stay silent before it counts as stalled.
struct OpenWatch<K> {
    stream: WatchStream<K>,
    stall: Duration,
}

/// How a watch ended.
enum WatchEnd {
    /// The server closed it, after this many events (bookmarks included).
    Closed { events: usize },
    /// Nothing arrived for this long.
    Stalled(Duration),
    /// An `ERROR` event, or a frame that could not be read or decoded.
    Failed(ListWatchError),
}

/// What the reflector does after a watch ends.
enum Next {
    /// Watch again from the last resourceVersion, at once: the server closed a healthy watch.
    Watch,
    /// Back off, then watch again from the last resourceVersion.
    BackOffAndWatch,
    /// Give up watching: back off, then list again.
    Relist,
}

/// The reflector's backoff starts over after this long without a failure (client-go: 2 min).
const BACKOFF_RESET: Duration = Duration::from_secs(120);

/// A watch that ends sooner than this without an event is abnormal (client-go's "very short
/// watch").
const VERY_SHORT_WATCH: Duration = Duration::from_secs(1);

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
            rv_unavailable: false,
        }
    }

    /// A handle on the last resourceVersion the reflector synced to.
    #[doc(alias = "LastSyncResourceVersion")]
    pub fn last_sync_resource_version(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.last_sync)
    }

    /// Runs until `cancel` fires: list, then watch from the last resourceVersion; when the
    /// watch has to be given up (410 Gone, a failure, a very short watch) or the list fails,
    /// back off and list again.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut resync = self.spawn_resync(&cancel);
        // client-go's BackoffUntil: a round ends only when something went wrong, and each
        // round is followed by a backoff.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                () = self.list_and_watch() => {}
                () = resync_panicked(&mut resync) => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                () = self.config.backoff.wait() => {}
                () = resync_panicked(&mut resync) => {}
            }
        }
        if let Some(task) = resync {
            task.abort();
        }
        tracing::debug!(reflector = %self.name, "reflector stopped");
    }

    /// Starts the periodic resync task. A panic in it (in `should_resync` or the store's
    /// resync) is re-raised by [`run`](Self::run) through [`resync_panicked`].
    fn spawn_resync(&self, cancel: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.config.resync_period.filter(|p| !p.is_zero())?;
        let sink = Arc::clone(&self.sink);
        let should = self.config.should_resync.clone();
        let cancel = cancel.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + period, period);
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

    fn report(&self, error: &ListWatchError) {
        match &self.config.watch_error_handler {
            Some(handler) => handler(error),
            None => tracing::warn!(reflector = %self.name, error = %error, "list/watch failed"),
        }
    }

    fn relist_resource_version(&self) -> String {
        if self.rv_unavailable {
            return String::new();
        }
        let last = self.last_sync.lock().clone();
        if last.is_empty() {
            "0".to_owned()
        } else {
            last
        }
    }

    /// Lists, then watches until the watch has to be given up. Returns when the reflector
    /// must back off and list again; failures are reported.
    async fn list_and_watch(&mut self) {
        match self.list().await {
            Ok(first) => self.watch(first).await,
            Err(e) => self.report(&e),
        }
    }

    /// The initial list, paged or streaming; a streaming list returns its watch, which goes
    /// on as the first watch.
    async fn list(&mut self) -> Result<Option<OpenWatch<K>>, ListWatchError> {
        if self.config.initial_list == InitialList::Streaming
            && let Some(watch) = self.streaming_list_with_retries().await
        {
            return Ok(Some(watch));
        }
        let listed = match self.paged_list(&self.relist_resource_version()).await {
            // client-go's list: when the server does not have the resourceVersion, list again
            // at once, the latest state (`resourceVersion=""`).
            Err(e) if e.is_resource_version_unavailable() && !self.rv_unavailable => {
                self.report(&e);
                self.rv_unavailable = true;
                self.paged_list(&self.relist_resource_version()).await
            }
            listed => listed,
        };
        listed?;
        self.rv_unavailable = false;
        Ok(None)
    }

    /// client-go's `watchList`: a streaming list, made again at once from the latest state
    /// when the resourceVersion is unavailable, and after a backoff when the server is
    /// unreachable or busy. `None`: list in pages instead, this time (any other failure) or
    /// from now on (the server refused streaming lists).
    async fn streaming_list_with_retries(&mut self) -> Option<OpenWatch<K>> {
        loop {
            match self.streaming_list(&self.relist_resource_version()).await {
                Ok(Some(watch)) => {
                    self.rv_unavailable = false;
                    return Some(watch);
                }
                Ok(None) => {
                    tracing::info!(reflector = %self.name, "server refused streaming lists; using paged lists");
                    self.config.initial_list = InitialList::Paged;
                    return None;
                }
                Err(e) => {
                    self.report(&e);
                    if e.is_resource_version_unavailable() && !self.rv_unavailable {
                        self.rv_unavailable = true;
                    } else if retry_watch(&e) {
                        self.config.backoff.wait().await;
                    } else {
                        // client-go: making progress is better than deadlocking.
                        tracing::warn!(reflector = %self.name, "streaming list failed; listing in pages");
                        return None;
                    }
                }
            }
        }
    }

    /// Watches from the last resourceVersion (first on `first`) until the watch has to be
    /// given up.
    async fn watch(&mut self, mut first: Option<OpenWatch<K>>) {
        loop {
            // Counted from before the request, as client-go: some proxies send no headers
            // before the first event.
            let opened = Instant::now();
            let watch = match first.take() {
                Some(watch) => watch,
                None => match self.open_watch().await {
                    Ok(watch) => watch,
                    Err(e) => {
                        self.report(&e);
                        if !retry_watch(&e) {
                            return;
                        }
                        self.config.backoff.wait().await;
                        continue;
                    }
                },
            };
            let end = self.watch_events(watch).await;
            match self.next_after(end, opened) {
                Next::Watch => {}
                Next::BackOffAndWatch => self.config.backoff.wait().await,
                Next::Relist => return,
            }
        }
    }

    async fn open_watch(&self) -> Result<OpenWatch<K>, ListWatchError> {
        let rv = self.last_sync.lock().clone();
        let timeout = self.watch_timeout();
        let options = ListOptions::default()
            .at(rv, None)
            .timeout(timeout.as_secs() as u32)
            .bookmarks(true);
        let stream = self.list_watch.watch(options).await?.boxed();
        Ok(OpenWatch {
            stream,
            stall: timeout + self.config.stall_grace,
        })
    }

    /// Reports how a watch opened at `opened` ended, unless the server closed it normally,
    /// and says what follows.
    fn next_after(&self, end: WatchEnd, opened: Instant) -> Next {
        let error = match end {
            WatchEnd::Closed { events: 0 } if opened.elapsed() < VERY_SHORT_WATCH => {
                ListWatchError::VeryShortWatch(opened.elapsed())
            }
            WatchEnd::Closed { .. } => return Next::Watch,
            WatchEnd::Stalled(after) => {
                self.report(&ListWatchError::Stalled(after));
                return Next::BackOffAndWatch;
            }
            WatchEnd::Failed(e) if retry_watch(&e) => {
                self.report(&e);
                return Next::BackOffAndWatch;
            }
            WatchEnd::Failed(e) => e,
        };
        self.report(&error);
        Next::Relist
    }

    fn watch_timeout(&self) -> Duration {
        let min = self.config.min_watch_timeout.as_secs_f64();
        Duration::from_secs_f64(min * (1.0 + rand::random::<f64>())).max(Duration::from_secs(1))
    }

    /// Pages through the list (falling back to one full list if a continue token expires)
    /// and replaces the sink's contents.
    async fn paged_list(&self, relist_rv: &str) -> Result<(), ListWatchError> {
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
    async fn streaming_list(
        &self,
        relist_rv: &str,
    ) -> Result<Option<OpenWatch<K>>, ListWatchError> {
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
        let mut items = InitialEvents::default();
        loop {
            match stream.next().await {
                Some(Ok(Event::Added(o) | Event::Modified(o))) => items.upsert(o),
                Some(Ok(Event::Deleted(o))) => items.remove(&o),
                Some(Ok(Event::Bookmark {
                    resource_version,
                    initial_events_end: true,
                })) => {
                    tracing::debug!(reflector = %self.name, items = items.len(), rv = %resource_version, "streaming list complete");
                    *self.last_sync.lock() = resource_version.clone();
                    self.sink.replace(items.into_items(), resource_version);
                    return Ok(Some(OpenWatch {
                        stream,
                        stall: timeout + self.config.stall_grace,
                    }));
                }
                Some(Ok(Event::Bookmark { .. })) => {}
                Some(Err(e)) if refused_streaming(&e) => return Ok(None),
                Some(Err(e)) => return Err(e),
                // Closed before the initial events ended: this server does not stream lists.
                None => return Ok(None),
            }
        }
    }

    /// Feeds watch events to the sink until the watch closes, fails or stalls.
    async fn watch_events(&self, watch: OpenWatch<K>) -> WatchEnd {
        let OpenWatch { mut stream, stall } = watch;
        let mut events = 0;
        loop {
            let Ok(next) = tokio::time::timeout(stall, stream.next()).await else {
                return WatchEnd::Stalled(stall);
            };
            let event = match next {
                None => return WatchEnd::Closed { events },
                Some(Err(e)) => return WatchEnd::Failed(e),
                Some(Ok(event)) => event,
            };
            events += 1;
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

type WatchStream<K> = futures::stream::BoxStream<'static, Result<Event<K>, ListWatchError>>;

/// client-go's `isWatchErrorRetriable`, and a 429 in a watch: the server could not be
/// reached (or the connection broke) or is busy; the cache is still good, so the reflector
/// backs off and watches again from the last resourceVersion rather than listing.
fn retry_watch(e: &ListWatchError) -> bool {
    e.is_too_many_requests() || e.is_transport()
}

/// The initial events of a streaming list, one entry per object (client-go's temporary
/// store): a MODIFIED replaces the object in place, a DELETED leaves a hole. Objects keep the
/// order in which they first appeared.
struct InitialEvents<K> {
    slots: Vec<Option<Arc<K>>>,
    index: HashMap<String, usize>,
}

impl<K> Default for InitialEvents<K> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: kube::Resource> InitialEvents<K> {
    fn upsert(&mut self, object: Arc<K>) {
        match self.index.entry(object_key(object.as_ref())) {
            Entry::Occupied(slot) => self.slots[*slot.get()] = Some(object),
            Entry::Vacant(slot) => {
                slot.insert(self.slots.len());
                self.slots.push(Some(object));
            }
        }
    }

    fn remove(&mut self, object: &K) {
        if let Some(slot) = self.index.remove(&object_key(object)) {
            self.slots[slot] = None;
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn into_items(self) -> Vec<Arc<K>> {
        self.slots.into_iter().flatten().collect()
    }
}

/// A server without streaming lists rejects `sendInitialEvents` as invalid (or forbidden).
fn refused_streaming(e: &ListWatchError) -> bool {
    e.status()
        .is_some_and(|s| matches!(s.code, 400 | 403 | 422) || s.reason == "Invalid")
}

/// Never resolves while the resync task runs; re-raises its panic if it panicked.
async fn resync_panicked(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task.as_mut() {
        Some(handle) => {
            if let Err(e) = handle.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
            *task = None;
            std::future::pending::<()>().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    //! Error paths a real server will not produce on demand, against an in-process service,
    //! on tokio's paused clock.
    use std::convert::Infallible;

    use bytes::Bytes;
    use ferrokube_client::Client;
    use futures::stream::BoxStream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use k8s_openapi::api::core::v1::ConfigMap;
    use tokio::time::Instant;

    use super::*;
    use crate::decode::Decoder;

    /// What the sink saw: each replace (items as `name@rv`, and its resourceVersion) and each
    /// watch event.
    #[derive(Default)]
    struct Recorder {
        replaces: Mutex<Vec<(Vec<String>, String)>>,
        events: Mutex<Vec<String>>,
    }

    fn label(o: &ConfigMap) -> String {
        let m = &o.metadata;
        format!(
            "{}@{}",
            m.name.as_deref().unwrap_or_default(),
            m.resource_version.as_deref().unwrap_or_default()
        )
    }

    impl Sink<ConfigMap> for Recorder {
        fn replace(&self, items: Vec<Arc<ConfigMap>>, rv: String) {
            let items = items.iter().map(|o| label(o)).collect();
            self.replaces.lock().push((items, rv));
        }
        fn add(&self, o: Arc<ConfigMap>) {
            self.events.lock().push(format!("add {}", label(&o)));
        }
        fn update(&self, o: Arc<ConfigMap>) {
            self.events.lock().push(format!("update {}", label(&o)));
        }
        fn delete(&self, o: Arc<ConfigMap>) {
            self.events.lock().push(format!("delete {}", label(&o)));
        }
        fn resync(&self) {}
    }

    /// A request the mock server saw.
    #[derive(Clone, Debug)]
    struct Seen {
        /// When, on the paused clock.
        at: Instant,
        watch: bool,
        query: String,
    }

    impl Seen {
        fn param(&self, key: &str) -> Option<&str> {
            self.query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        }

        fn streaming(&self) -> bool {
            self.param("sendInitialEvents") == Some("true")
        }
    }

    /// How the mock answers: a status code and a body, then what the body does.
    struct Answer {
        code: u16,
        body: String,
        then: Then,
    }

    enum Then {
        End,
        StayOpen,
        Break,
    }

    fn reply(code: u16, body: impl Into<String>) -> Answer {
        let body = body.into();
        Answer {
            code,
            body,
            then: Then::End,
        }
    }

    fn lines(lines: &[&str], then: Then) -> Answer {
        let mut body = lines.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        Answer {
            code: 200,
            body,
            then,
        }
    }

    /// A 200 whose body stays open after `lines` (a watch that goes on).
    fn open(events: &[&str]) -> Answer {
        lines(events, Then::StayOpen)
    }

    fn status(code: u16, reason: &str, message: &str, causes: &[(&str, &str)]) -> String {
        let causes: Vec<_> = causes
            .iter()
            .map(|(reason, message)| serde_json::json!({"reason": reason, "message": message}))
            .collect();
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code, "details": {"causes": causes},
        })
        .to_string()
    }

    fn error_event(code: u16, reason: &str) -> String {
        format!(
            r#"{{"type":"ERROR","object":{}}}"#,
            status(code, reason, "watch failed", &[])
        )
    }

    fn object_event(kind: &str, name: &str, rv: u32) -> String {
        format!(
            r#"{{"type":"{kind}","object":{{"metadata":{{"name":"{name}","namespace":"ns","resourceVersion":"{rv}"}}}}}}"#
        )
    }

    fn initial_events_end(rv: u32) -> String {
        format!(
            r#"{{"type":"BOOKMARK","object":{{"metadata":{{"resourceVersion":"{rv}","annotations":{{"k8s.io/initial-events-end":"true"}}}}}}}}"#
        )
    }

    const LIST: &str = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","namespace":"ns","resourceVersion":"9"}}]}"#;

    type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

    /// A client whose server answers the n-th list (`watch == false`) or n-th watch with
    /// `answer(request, n)`, and records every request.
    fn mock(
        answer: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static,
    ) -> (Client, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let log = Arc::clone(&seen);
        let answer = Arc::new(answer);
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let query = req.uri().query().unwrap_or_default().to_owned();
            let request = Seen {
                at: Instant::now(),
                watch: query.split('&').any(|kv| kv == "watch=true"),
                query,
            };
            let n = {
                let mut log = log.lock();
                let n = log.iter().filter(|s| s.watch == request.watch).count();
                log.push(request.clone());
                n
            };
            let Answer { code, body, then } = answer(&request, n);
            let frame = Ok(Frame::data(Bytes::from(body)));
            let frames = futures::stream::once(async move { frame });
            let frames = match then {
                Then::End => frames.boxed(),
                Then::StayOpen => frames.chain(futures::stream::pending()).boxed(),
                Then::Break => {
                    let broken = Err(std::io::Error::other("connection reset"));
                    frames.chain(futures::stream::iter([broken])).boxed()
                }
            };
            let mut response = http::Response::new(StreamBody::new(frames) as Body);
            *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
            async move { Ok::<_, Infallible>(response) }
        });
        (
            Client::from_kube(kube::Client::new(service, "default")),
            seen,
        )
    }

    /// Runs a reflector on `client` for `period` of paused time; returns what the sink saw
    /// and the errors reported.
    async fn run(
        client: &Client,
        initial_list: InitialList,
        period: Duration,
    ) -> (Arc<Recorder>, Vec<String>) {
        let sink = Arc::new(Recorder::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&errors);
        let handler: WatchErrorHandler =
            Arc::new(move |e: &ListWatchError| log.lock().push(e.to_string()));
        let config = ReflectorConfig::default()
            .initial_list(initial_list)
            .watch_error_handler(handler);
        let reflector = Reflector::new(
            "test",
            ListWatch::new(client.namespaced("ns"), Decoder::new(true, None)),
            Arc::clone(&sink),
            config,
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(reflector.run(cancel.clone()));
        tokio::time::sleep(period).await;
        cancel.cancel();
        task.await.unwrap();
        let errors = errors.lock().clone();
        (sink, errors)
    }

    fn kinds(seen: &Mutex<Vec<Seen>>, watch: bool) -> Vec<Seen> {
        seen.lock()
            .iter()
            .filter(|s| s.watch == watch)
            .cloned()
            .collect()
    }

    const MIN_BACKOFF: Duration = Duration::from_millis(800);

    /// client-go's `list`: a list whose resourceVersion is expired or too large is retried
    /// at once from etcd (`resourceVersion=""`), with no backoff.
    #[tokio::test(start_paused = true)]
    async fn unavailable_resource_version_lists_again_at_once_from_etcd() {
        let refusals = [
            status(410, "Expired", "too old resource version: 10 (20)", &[]),
            status(
                504,
                "Timeout",
                "Too large resource version: 10, current: 5",
                &[("ResourceVersionTooLarge", "Too large resource version")],
            ),
            // API servers 1.17.0–1.18.5: the cause without its type.
            status(
                504,
                "Timeout",
                "Timeout: request did not complete",
                &[("", "Too large resource version")],
            ),
            // API servers before 1.17: only the message says it.
            status(
                504,
                "Timeout",
                "Too large resource version: 10, current: 5",
                &[],
            ),
        ];
        for refusal in refusals {
            let (client, seen) = mock(move |s, n| match (s.watch, n) {
                (false, 1) => reply(refusal_code(&refusal), refusal.clone()),
                (false, _) => reply(200, LIST),
                (true, 0) => open(&[&error_event(410, "Expired")]),
                (true, _) => open(&[]),
            });
            let (sink, _) = run(&client, InitialList::Paged, Duration::from_secs(10)).await;
            let lists = kinds(&seen, false);
            assert_eq!(lists.len(), 3, "{lists:?}");
            assert_eq!(lists[1].param("resourceVersion"), Some("10"));
            assert_eq!(
                lists[2].param("resourceVersion").unwrap_or_default(),
                "",
                "{lists:?}"
            );
            assert!(
                lists[2].at - lists[1].at < MIN_BACKOFF,
                "retried after {:?}",
                lists[2].at - lists[1].at
            );
            assert_eq!(sink.replaces.lock().len(), 2);
            // Then the watch goes on from the new list.
            let watches = kinds(&seen, true);
            assert_eq!(watches.len(), 2, "{watches:?}");
            assert!(watches[1].at >= lists[2].at);
        }
    }

    fn refusal_code(status: &str) -> u16 {
        serde_json::from_str::<serde_json::Value>(status).unwrap()["code"]
            .as_u64()
            .unwrap() as u16
    }

    /// client-go's `watch`: a 429 (refused watch or ERROR event) backs off and watches again
    /// from the same resourceVersion; it does not relist.
    #[tokio::test(start_paused = true)]
    async fn watch_429_backs_off_and_watches_again() {
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (false, _) => reply(200, LIST),
            (true, 0) => reply(429, status(429, "TooManyRequests", "slow down", &[])),
            (true, 1) => open(&[&error_event(429, "TooManyRequests")]),
            (true, _) => open(&[]),
        });
        let (_, errors) = run(&client, InitialList::Paged, Duration::from_secs(30)).await;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(kinds(&seen, false).len(), 1, "no relist");
        let watches = kinds(&seen, true);
        assert_eq!(watches.len(), 3, "{watches:?}");
        for pair in watches.windows(2) {
            assert_eq!(pair[1].param("resourceVersion"), Some("10"));
            assert!(pair[1].at - pair[0].at >= MIN_BACKOFF, "{pair:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watch_410_relists() {
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (false, _) => reply(200, LIST),
            (true, 0) => open(&[
                &object_event("ADDED", "b", 11),
                &error_event(410, "Expired"),
            ]),
            (true, _) => open(&[]),
        });
        let (sink, errors) = run(&client, InitialList::Paged, Duration::from_secs(10)).await;
        assert_eq!(errors.len(), 1, "the 410 was reported once: {errors:?}");
        let lists = kinds(&seen, false);
        assert_eq!(lists.len(), 2, "a 410 relists");
        assert_eq!(
            lists[1].param("resourceVersion"),
            Some("11"),
            "from the last resourceVersion seen"
        );
        assert_eq!(
            *sink.events.lock(),
            ["add b@11"],
            "the event before the 410 was kept"
        );
        let replaced = vec![(vec!["a@9".to_owned()], "10".to_owned()); 2];
        assert_eq!(*sink.replaces.lock(), replaced);
    }

    /// client-go's watch-list collects the initial events into a keyed store: a MODIFIED
    /// replaces the object, a DELETED removes it.
    #[tokio::test(start_paused = true)]
    async fn streaming_list_keeps_one_copy_per_object() {
        let (client, _) = mock(|s, n| match (s.watch, n) {
            (true, 0) if s.streaming() => open(&[
                &object_event("ADDED", "a", 5),
                &object_event("ADDED", "b", 6),
                &object_event("MODIFIED", "a", 7),
                &object_event("ADDED", "c", 8),
                &object_event("DELETED", "b", 9),
                &object_event("ADDED", "d", 10),
                &object_event("DELETED", "d", 11),
                &object_event("ADDED", "d", 12),
                &initial_events_end(12),
                &object_event("MODIFIED", "c", 13),
            ]),
            _ => open(&[]),
        });
        let (sink, _) = run(&client, InitialList::Streaming, Duration::from_secs(1)).await;
        let replaced = vec![(
            vec!["a@7".to_owned(), "c@8".to_owned(), "d@12".to_owned()],
            "12".to_owned(),
        )];
        assert_eq!(*sink.replaces.lock(), replaced);
        assert_eq!(*sink.events.lock(), ["update c@13"]);
    }

    /// A panic in the periodic resync (here in `should_resync`) ends `run` with that panic
    /// instead of leaving a reflector that never resyncs again.
    #[tokio::test(start_paused = true)]
    async fn a_resync_panic_ends_run() {
        let (client, _) = mock(|s, _| match s.watch {
            false => reply(200, LIST),
            true => open(&[]),
        });
        let config = ReflectorConfig::default()
            .resync_period(Some(Duration::from_secs(1)))
            .should_resync(Arc::new(|| panic!("should_resync is broken")));
        let reflector = Reflector::new(
            "test",
            ListWatch::new(client.namespaced("ns"), Decoder::new(true, None)),
            Arc::new(Recorder::default()),
            config,
        );
        let task = tokio::spawn(reflector.run(CancellationToken::new()));
        let joined = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run ended");
        let panic = joined.expect_err("run panicked").into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"should_resync is broken")
        );
    }

    /// A watch the server ends at once with no events (client-go's "very short watch") is
    /// followed by a backoff, not by another watch at once.
    #[tokio::test(start_paused = true)]
    async fn very_short_watches_back_off() {
        // Past 100 watches the server stops answering, so a tight loop ends too.
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (false, _) => reply(200, LIST),
            (true, 0..100) => reply(200, ""),
            (true, _) => open(&[]),
        });
        let (_, errors) = run(&client, InitialList::Paged, Duration::from_secs(10)).await;
        let watches = kinds(&seen, true);
        // Backoffs of at least 0.8, 1.6, 3.2 and 6.4 s fit at most four watches in 10 s.
        assert!(watches.len() <= 4, "{} watches", watches.len());
        assert!(
            errors.iter().all(|e| e.contains("very short watch")),
            "{errors:?}"
        );
    }

    /// A streaming list's watch that fails with 410 leads to a new streaming list, not to a
    /// plain watch.
    #[tokio::test(start_paused = true)]
    async fn streaming_list_watch_410_lists_again() {
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (true, 0) => open(&[
                &object_event("ADDED", "a", 5),
                &initial_events_end(5),
                &error_event(410, "Expired"),
            ]),
            _ => open(&[]),
        });
        let (sink, _) = run(&client, InitialList::Streaming, Duration::from_secs(10)).await;
        let watches = kinds(&seen, true);
        assert_eq!(watches.len(), 2, "{watches:?}");
        assert!(watches.iter().all(Seen::streaming), "{watches:?}");
        assert_eq!(watches[1].param("resourceVersion"), Some("5"));
        assert!(kinds(&seen, false).is_empty());
        assert_eq!(sink.replaces.lock().len(), 1);
    }

    /// client-go's `watchList`: an unavailable resourceVersion streams again at once from the
    /// latest state; any other failure lists in pages this once.
    #[tokio::test(start_paused = true)]
    async fn streaming_list_failures() {
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (true, 0) => open(&[&initial_events_end(5), &error_event(410, "Expired")]),
            (true, 1) => reply(410, status(410, "Expired", "too old", &[])),
            (true, 2) => reply(500, status(500, "InternalError", "etcd is sad", &[])),
            (true, _) => open(&[]),
            (false, _) => reply(200, LIST),
        });
        let (sink, errors) = run(&client, InitialList::Streaming, Duration::from_secs(10)).await;
        assert_eq!(errors.len(), 3, "{errors:?}");
        let watches = kinds(&seen, true);
        let lists = kinds(&seen, false);
        assert_eq!((watches.len(), lists.len()), (4, 1), "{watches:?}");
        assert!(watches[..3].iter().all(Seen::streaming), "{watches:?}");
        assert_eq!(watches[1].param("resourceVersion"), Some("5"));
        assert_eq!(watches[2].param("resourceVersion"), Some(""));
        assert!(watches[2].at - watches[1].at < MIN_BACKOFF);
        // The 500 made this round list in pages, from the latest state, then watch.
        assert_eq!(lists[0].param("resourceVersion"), Some(""));
        assert!(!watches[3].streaming());
        assert_eq!(watches[3].param("resourceVersion"), Some("10"));
        assert_eq!(sink.replaces.lock().len(), 2);
    }

    /// A watch cut off mid-body (or refused for want of a connection) is watched again after
    /// a backoff, from the last resourceVersion: the cache is still good.
    #[tokio::test(start_paused = true)]
    async fn broken_watch_watches_again() {
        let (client, seen) = mock(|s, n| match (s.watch, n) {
            (false, _) => reply(200, LIST),
            (true, 0) => lines(&[&object_event("ADDED", "b", 11)], Then::Break),
            (true, _) => open(&[]),
        });
        let (sink, errors) = run(&client, InitialList::Paged, Duration::from_secs(10)).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(kinds(&seen, false).len(), 1, "no relist");
        let watches = kinds(&seen, true);
        assert_eq!(watches.len(), 2);
        assert_eq!(watches[1].param("resourceVersion"), Some("11"));
        assert!(watches[1].at - watches[0].at >= MIN_BACKOFF);
        assert_eq!(*sink.events.lock(), ["add b@11"]);
    }
}
