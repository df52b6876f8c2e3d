//! [`SharedIndexInformer`]: a reflector feeding a DeltaFIFO, popped into an [`Indexer`] and
//! distributed to any number of registrations (client-go's `shared_informer.go`).
//!
//! # Registrations
//!
//! Each registration has its own unbounded buffer, so a slow consumer delays only itself.
//! It is consumed either by a [`ResourceEventHandler`], called from a Tokio task of its own
//! ([`add_event_handler`](SharedIndexInformer::add_event_handler)), or as an [`EventStream`]
//! of [`Event`]s ([`add_event_stream`](SharedIndexInformer::add_event_stream)). Handler tasks
//! run on the runtime that runs [`run()`](SharedIndexInformer::run), so a handler may
//! `tokio::spawn`; they are spawned when `run()` starts (or when added, if it is running)
//! and stop with it. Handlers must be quick (they share the runtime's worker threads): one
//! that needs to block or wait should spawn a task (`tokio::spawn`,
//! `tokio::task::spawn_blocking`) or consume a stream instead.
//!
//! # Panics
//!
//! [`SharedIndexInformer::run`] runs the reflector in a task of its own and the processing
//! loop (indexer updates, distribution) in its own future. A panic in either — a transform,
//! an index function, a decoding bug — or in a handler stops everything and ends `run()`
//! with the same panic, so a cache (or a consumer) that stopped following the server never
//! looks healthy: `has_synced()` stays true after a panic; only the panic tells. client-go
//! crashes the process in that case; here the task running `run()` gets the panic and
//! decides.

mod config;
mod event;
mod handler;
mod listener;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ferrokube_client::Api;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use self::config::InformerConfig;
use self::event::Listeners;
pub use self::event::{Event, EventStream};
pub use self::handler::{EventHandlerFuncs, ResourceEventHandler};
use self::listener::{HandlerTask, Listener, PanicSlot, Receiver};
use crate::decode::Decoder;
use crate::delta_fifo::{DeltaFifo, DeltaType, Deltas, ProcessError};
use crate::list_watch::ListWatch;
use crate::reflector::{Reflector, ReflectorConfig};
use crate::store::Indexer;

/// client-go's `minimumResyncPeriod`.
const MINIMUM_RESYNC_PERIOD: Duration = Duration::from_secs(1);

/// How often sync waits look again.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// Watches one resource type and keeps an indexed cache of it, shared by many handlers.
#[doc(alias = "SharedInformer")]
pub struct SharedIndexInformer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for SharedIndexInformer<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<K> {
    name: String,
    list_watch: ListWatch<K>,
    config: InformerConfig<K>,
    indexer: Indexer<K>,
    fifo: Arc<DeltaFifo<K>>,
    /// Written when handlers are added or removed; read while deltas are distributed, so a
    /// handler added late gets its replay with no delta in between (client-go's blockDeltas).
    listeners: RwLock<Vec<Listener<K>>>,
    /// Listeners whose resync is due in the current resync round.
    syncing: Mutex<HashSet<u64>>,
    /// Where handler tasks run; locked before `listeners` when both are.
    runtime: Mutex<Runtime<K>>,
    /// The first panic of a handler.
    panics: Arc<PanicSlot>,
    started: AtomicBool,
    next_id: AtomicU64,
}

/// Where an informer's handler tasks run.
enum Runtime<K> {
    /// `run()` has not started: handlers wait to be spawned by it.
    Idle(Vec<HandlerTask<K>>),
    /// `run()` is running on `handle`; handler tasks stop when `stop` fires.
    Running {
        handle: Handle,
        stop: CancellationToken,
        tasks: Vec<JoinHandle<()>>,
    },
    /// `run()` ended: no handler is spawned any more, no registration is kept.
    Stopped,
}

/// A handler's or stream's registration: ask whether it has seen the initial contents, or
/// remove it.
#[derive(Clone)]
#[must_use = "keep the registration to remove the handler or check has_synced"]
#[doc(alias = "ResourceEventHandlerRegistration")]
pub struct Registration {
    id: u64,
    pending_initial: Arc<AtomicUsize>,
    informer_synced: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// True once the informer has synced and this handler has handled every object of the
    /// initial list (or of its replay); for a stream, once it has yielded them.
    pub fn has_synced(&self) -> bool {
        (self.informer_synced)() && self.pending_initial.load(Ordering::Acquire) == 0
    }
}

impl<K> SharedIndexInformer<K>
where
    K: kube::Resource + DeserializeOwned + Send + Sync + 'static,
{
    /// An informer over `api`'s resource type and namespace.
    pub fn new(api: Api<K>, config: InformerConfig<K>) -> Self {
        let name = api.request(http::Method::GET).url();
        let decoder = Decoder::new(!config.keep_managed_fields, config.transform.clone());
        let list_watch = ListWatch::new(api, decoder)
            .labels(config.label_selector.clone())
            .fields(config.field_selector.clone())
            .metadata_only(config.metadata_only);
        let indexer = Indexer::new();
        let fifo = Arc::new(DeltaFifo::with_known_objects(indexer.clone()));
        Self {
            inner: Arc::new(Inner {
                name,
                list_watch,
                config,
                indexer,
                fifo,
                listeners: RwLock::new(Vec::new()),
                syncing: Mutex::new(HashSet::new()),
                runtime: Mutex::new(Runtime::Idle(Vec::new())),
                panics: Arc::default(),
                started: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// The cache (client-go's `GetIndexer`); reads hand out `Arc`s, never copies.
    pub fn indexer(&self) -> &Indexer<K> {
        &self.inner.indexer
    }

    /// True once the initial list has been stored and handed to the handlers.
    pub fn has_synced(&self) -> bool {
        self.inner.fifo.has_synced()
    }

    /// Waits until [`has_synced`](Self::has_synced) (polling like client-go's
    /// `WaitForCacheSync`), or returns false if `cancel` fires first.
    pub async fn wait_for_cache_sync(&self, cancel: &CancellationToken) -> bool {
        while !self.has_synced() {
            tokio::select! {
                _ = tokio::time::sleep(SYNC_POLL) => {}
                _ = cancel.cancelled() => return self.has_synced(),
            }
        }
        true
    }

    /// Adds a handler with the informer's default resync period.
    ///
    /// The handler is called from a Tokio task of its own, on the runtime running
    /// [`run()`](Self::run) (spawned when `run()` starts, or now if it is running), one
    /// notification at a time; it may use the runtime (`tokio::spawn`), must be quick, and
    /// must not block: see the [module docs](self). A panic in it ends `run()` with that
    /// panic. Added after `run()` ended, the handler is never called.
    pub fn add_event_handler(&self, handler: impl ResourceEventHandler<K>) -> Registration {
        self.add_event_handler_with_resync(handler, self.inner.config.resync_period)
    }

    /// Adds a handler with its own resync period (`None`: never). Added after the informer
    /// started, it first gets the cache's contents as initial adds.
    pub fn add_event_handler_with_resync(
        &self,
        handler: impl ResourceEventHandler<K>,
        resync_period: Option<Duration>,
    ) -> Registration {
        let handler: Arc<dyn ResourceEventHandler<K>> = Arc::new(handler);
        let (registration, ()) = self.register(resync_period, |receiver, runtime| {
            runtime.start(HandlerTask::new(receiver, handler), &self.inner.panics);
        });
        registration
    }

    /// A [`Stream`](futures::Stream) of this informer's notifications, with the informer's
    /// default resync period: the async alternative to a handler.
    ///
    /// It yields the cache's contents (or, before the informer synced, the initial list) as
    /// initial [`Event::Added`]s, then every change. The [`Registration`] has synced once
    /// the stream has yielded every initial add. Dropping the stream removes the
    /// registration; the stream ends when the registration is removed or `run()` ends.
    pub fn add_event_stream(&self) -> (Registration, EventStream<K>) {
        self.add_event_stream_with_resync(self.inner.config.resync_period)
    }

    /// [`add_event_stream`](Self::add_event_stream) with its own resync period (`None`:
    /// never); each resync yields an [`Event::Updated`] per cached object.
    pub fn add_event_stream_with_resync(
        &self,
        resync_period: Option<Duration>,
    ) -> (Registration, EventStream<K>) {
        let informer = Arc::downgrade(&self.inner) as std::sync::Weak<dyn Listeners>;
        let (registration, receiver) = self.register(resync_period, |receiver, _| receiver);
        let stream = EventStream::new(receiver, registration.id, informer);
        (registration, stream)
    }

    /// Registers a listener (replaying the cache to it) and hands its receiving end to
    /// `consume`, with the runtime state locked.
    fn register<R>(
        &self,
        resync_period: Option<Duration>,
        consume: impl FnOnce(Receiver<K>, &mut Runtime<K>) -> R,
    ) -> (Registration, R) {
        let inner = &self.inner;
        let check = inner.config.resync_period.unwrap_or(Duration::ZERO);
        let resync_period = resync_period.filter(|p| !p.is_zero()).map(|p| {
            let p = p.max(MINIMUM_RESYNC_PERIOD);
            if inner.started.load(Ordering::Acquire) && !check.is_zero() && p < check {
                tracing::warn!(informer = %inner.name, "resync period {p:?} is below the informer's {check:?}; using that");
                check
            } else {
                p
            }
        });
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (listener, receiver) = Listener::new(id, resync_period);
        let pending_initial = listener.pending_initial();
        let mut runtime = inner.runtime.lock();
        {
            let mut listeners = inner.listeners.write();
            for object in inner.indexer.list() {
                listener.send(Event::Added {
                    object,
                    initial: true,
                });
            }
            // Once run() ended, nothing would ever be sent: the replay is all there is.
            if !matches!(*runtime, Runtime::Stopped) {
                listeners.push(listener);
            }
        }
        let consumed = consume(receiver, &mut runtime);
        drop(runtime);
        let weak = Arc::downgrade(&self.inner);
        let registration = Registration {
            id,
            pending_initial,
            informer_synced: Arc::new(move || weak.upgrade().is_some_and(|i| i.fifo.has_synced())),
        };
        (registration, consumed)
    }

    /// Removes a handler or stream; it gets no further notifications (a handler still
    /// handles those already queued; a stream yields them, then ends).
    pub fn remove_event_handler(&self, registration: &Registration) {
        self.inner.remove_listener(registration.id);
    }

    /// Runs the informer until `cancel` fires: the reflector lists and watches, the
    /// processing loop stores and distributes, the handlers' tasks handle.
    ///
    /// When it returns, the reflector and the handler tasks have stopped (each handler
    /// after the call in progress; what is still buffered is dropped) and every
    /// registration's stream has ended or ends once it has yielded its buffer. An informer
    /// runs once.
    ///
    /// # Panics
    ///
    /// A panic in the reflector (while decoding, or in the [transform]), in the processing
    /// loop (e.g. in an [index function]) or in a handler stops everything and then ends
    /// `run()` with that panic, payload unchanged: the cache (or a consumer) can no longer
    /// follow the server, and nobody should go on reading it unaware. Run the informer in a
    /// task of its own to see the panic as that task's [`JoinError`](tokio::task::JoinError)
    /// (as kube-rs hands a watcher's panic to its task; client-go crashes the process).
    ///
    /// Dropping the future stops the reflector and the handler tasks as well.
    ///
    /// [transform]: InformerConfig::transform
    /// [index function]: crate::store::IndexFunc
    pub async fn run(&self, cancel: CancellationToken) {
        let inner = &self.inner;
        if inner.started.swap(true, Ordering::AcqRel) {
            tracing::warn!(informer = %inner.name, "informer already started");
            return;
        }
        // Cancelled when run() ends, however it ends (even when its future is dropped).
        let stop = cancel.child_token();
        let _stopped = Stopped {
            inner,
            stop: stop.clone(),
        };
        inner.start_handlers(stop.clone());
        let mut reflector =
            AbortOnDropHandle::new(tokio::spawn(inner.reflector().run(stop.child_token())));
        let mut panic = None;
        let mut reflector_ended = None;
        let mut cancelled = pin!(cancel.cancelled());
        let mut handler_panicked = pin!(inner.panics.raised());
        loop {
            let popped = tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = &mut handler_panicked => break,
                // It returns only once cancelled, or with a panic.
                ended = &mut reflector => {
                    reflector_ended = Some(ended);
                    break;
                }
                popped = inner.fifo.pop(|deltas, initial| {
                    let handled = catch_unwind(AssertUnwindSafe(|| inner.handle_deltas(deltas, initial)));
                    if let Err(payload) = handled {
                        panic = Some(payload);
                    }
                    Ok::<(), ProcessError<std::convert::Infallible>>(())
                }) => popped,
            };
            if panic.is_some() || popped.is_err_and(|e| e.is_closed()) {
                break;
            }
        }
        stop.cancel();
        inner.fifo.close();
        let reflector_ended = match reflector_ended {
            Some(ended) => ended,
            None => (&mut reflector).await,
        };
        if let Err(e) = reflector_ended
            && e.is_panic()
        {
            panic.get_or_insert(e.into_panic());
        }
        for task in inner.stop_handlers() {
            let _ = task.await;
        }
        if let Some(payload) = panic.or_else(|| inner.panics.take()) {
            tracing::error!(informer = %inner.name, "the informer panicked; it stopped");
            std::panic::resume_unwind(payload);
        }
    }
}

/// Stops the reflector and the handler tasks when `run()` ends, however it ends.
struct Stopped<'a, K> {
    inner: &'a Inner<K>,
    stop: CancellationToken,
}

impl<K> Drop for Stopped<'_, K> {
    fn drop(&mut self) {
        self.stop.cancel();
        // The tasks see `stop`; none is awaited here.
        drop(self.inner.stop_handlers());
    }
}

// === impl Runtime ===

impl<K: Send + Sync + 'static> Runtime<K> {
    /// Spawns `task` if `run()` is running, keeps it for `run()` if it has not started, drops
    /// it if it has ended.
    fn start(&mut self, task: HandlerTask<K>, panics: &Arc<PanicSlot>) {
        match self {
            Self::Idle(waiting) => waiting.push(task),
            Self::Running {
                handle,
                stop,
                tasks,
            } => {
                tasks.retain(|t| !t.is_finished());
                tasks.push(task.spawn(handle, stop.clone(), Arc::clone(panics)));
            }
            Self::Stopped => {}
        }
    }
}

// === impl Inner ===

impl<K> Inner<K> {
    /// Stops taking registrations, ends the streams (once drained) and hands out the handler
    /// tasks (stopping once the token given to `start_handlers` fires) to be awaited.
    fn stop_handlers(&self) -> Vec<JoinHandle<()>> {
        let mut runtime = self.runtime.lock();
        let tasks = match std::mem::replace(&mut *runtime, Runtime::Stopped) {
            Runtime::Running { tasks, .. } => tasks,
            Runtime::Idle(_) | Runtime::Stopped => Vec::new(),
        };
        // Dropping the senders ends the streams after what they buffered.
        self.listeners.write().clear();
        tasks
    }
}

impl<K: Send + Sync + 'static> Inner<K> {
    /// Spawns the handlers added so far on the current runtime, and those added later.
    fn start_handlers(&self, stop: CancellationToken) {
        let mut runtime = self.runtime.lock();
        let waiting = match std::mem::replace(&mut *runtime, Runtime::Stopped) {
            Runtime::Idle(waiting) => waiting,
            Runtime::Running { .. } | Runtime::Stopped => Vec::new(),
        };
        *runtime = Runtime::Running {
            handle: Handle::current(),
            stop,
            tasks: Vec::with_capacity(waiting.len()),
        };
        for task in waiting {
            runtime.start(task, &self.panics);
        }
    }
}

impl<K: Send + Sync + 'static> Listeners for Inner<K> {
    fn remove_listener(&self, id: u64) {
        self.listeners.write().retain(|l| l.id != id);
    }
}

impl<K> Inner<K>
where
    K: kube::Resource + DeserializeOwned + Send + Sync + 'static,
{
    /// The reflector feeding the DeltaFIFO, resyncing as the listeners need.
    fn reflector(self: &Arc<Self>) -> Reflector<K, DeltaFifo<K>> {
        let should_resync = {
            let weak = Arc::downgrade(self);
            Arc::new(move || weak.upgrade().is_some_and(|i| i.should_resync()))
                as Arc<dyn Fn() -> bool + Send + Sync>
        };
        let resync_check = self
            .listeners
            .read()
            .iter()
            .filter_map(|l| l.resync_period)
            .chain(self.config.resync_period)
            .min();
        let mut reflector_config = ReflectorConfig::default()
            .initial_list(self.config.initial_list)
            .page_size(self.config.page_size)
            .resync_period(resync_check)
            .should_resync(should_resync);
        if let Some(handler) = self.config.watch_error_handler.clone() {
            reflector_config = reflector_config.watch_error_handler(handler);
        }
        Reflector::new(
            self.name.clone(),
            self.list_watch.clone(),
            Arc::clone(&self.fifo),
            reflector_config,
        )
    }
    /// client-go's `processDeltas`: update the indexer, then notify.
    fn handle_deltas(&self, deltas: &Deltas<K>, initial: bool) {
        let listeners = self.listeners.read();
        for delta in deltas.iter() {
            match delta.kind {
                DeltaType::Sync | DeltaType::Replaced | DeltaType::Added | DeltaType::Updated => {
                    let object = Arc::clone(delta.object.object());
                    match self.indexer.update(Arc::clone(&object)) {
                        Some(old) => {
                            let is_sync = match delta.kind {
                                DeltaType::Sync => true,
                                DeltaType::Replaced => {
                                    old.meta().resource_version == object.meta().resource_version
                                }
                                _ => false,
                            };
                            self.distribute(
                                &listeners,
                                Event::Updated { old, new: object },
                                is_sync,
                            );
                        }
                        None => {
                            self.distribute(&listeners, Event::Added { object, initial }, false)
                        }
                    }
                }
                DeltaType::Deleted => {
                    self.indexer.delete(deltas.key());
                    self.distribute(&listeners, Event::Deleted(delta.object.clone()), false);
                }
            }
        }
    }

    fn distribute(&self, listeners: &[Listener<K>], n: Event<K>, sync: bool) {
        if sync {
            let syncing = self.syncing.lock();
            for l in listeners.iter().filter(|l| syncing.contains(&l.id)) {
                l.send(n.clone());
            }
        } else {
            for l in listeners {
                l.send(n.clone());
            }
        }
    }

    /// client-go's `sharedProcessor.shouldResync`: picks the listeners whose resync is due.
    fn should_resync(&self) -> bool {
        let now = tokio::time::Instant::now();
        let listeners = self.listeners.read();
        let mut syncing = self.syncing.lock();
        syncing.clear();
        syncing.extend(listeners.iter().filter(|l| l.resync_due(now)).map(|l| l.id));
        !syncing.is_empty()
    }
}
