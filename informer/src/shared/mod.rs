//! [`SharedIndexInformer`]: a reflector feeding a DeltaFIFO, popped into an [`Indexer`] and
//! distributed to any number of handlers (client-go's `shared_informer.go`).
//!
//! # Panics
//!
//! [`SharedIndexInformer::run`] runs the reflector in a task of its own and the processing
//! loop (indexer updates, distribution) in its own future. A panic in either — a transform,
//! an index function, a decoding bug — stops the other and ends `run()` with the same panic,
//! so a cache that stopped following the server never looks healthy (`has_synced()` stays
//! true after a panic; only the panic tells). client-go crashes the process in that case;
//! here the task running `run()` gets the panic and decides.

mod config;
mod handler;
mod listener;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferrokube_client::Api;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use self::config::InformerConfig;
pub use self::handler::{EventHandlerFuncs, ResourceEventHandler};
use self::listener::{Listener, Notification};
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
    started: AtomicBool,
    next_id: AtomicU64,
}

/// A handler's registration: ask whether it has seen the initial contents, or remove it.
#[derive(Clone)]
#[must_use = "keep the registration to remove the handler or check has_synced"]
#[doc(alias = "ResourceEventHandlerRegistration")]
pub struct Registration {
    id: u64,
    pending_initial: Arc<std::sync::atomic::AtomicUsize>,
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
    /// initial list (or of its replay).
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
        let listener = Listener::spawn(id, &inner.name, Arc::new(handler), resync_period);
        let pending_initial = Arc::clone(&listener.pending_initial);
        {
            let mut listeners = inner.listeners.write();
            for object in inner.indexer.list() {
                listener.send(Notification::Add {
                    object,
                    initial: true,
                });
            }
            listeners.push(listener);
        }
        let weak = Arc::downgrade(&self.inner);
        Registration {
            id,
            pending_initial,
            informer_synced: Arc::new(move || weak.upgrade().is_some_and(|i| i.fifo.has_synced())),
        }
    }

    /// Removes a handler; it gets no further notifications (queued ones are still handled).
    pub fn remove_event_handler(&self, registration: &Registration) {
        self.inner
            .listeners
            .write()
            .retain(|l| l.id != registration.id);
    }

    /// Runs the informer until `cancel` fires: the reflector lists and watches, the
    /// processing loop stores and distributes.
    ///
    /// # Panics
    ///
    /// A panic in the reflector (while decoding, or in the [transform]) or in the processing
    /// loop (e.g. in an [index function]) stops the other half and then ends `run()` with
    /// that panic, payload unchanged: the cache can no longer follow the server, and nobody
    /// should go on reading it unaware. Run the informer in a task of its own to see the
    /// panic as that task's [`JoinError`](tokio::task::JoinError) (as kube-rs hands a
    /// watcher's panic to its task; client-go crashes the process).
    ///
    /// Dropping the future stops the reflector as well.
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
        let _stop_on_drop = stop.clone().drop_guard();
        let mut reflector =
            AbortOnDropHandle::new(tokio::spawn(inner.reflector().run(stop.child_token())));
        let mut panic = None;
        let mut reflector_ended = None;
        loop {
            let popped = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
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
        if let Some(payload) = panic {
            tracing::error!(informer = %inner.name, "the informer panicked; it stopped");
            std::panic::resume_unwind(payload);
        }
    }
}

// === impl Inner ===

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
                                Notification::Update { old, new: object },
                                is_sync,
                            );
                        }
                        None => self.distribute(
                            &listeners,
                            Notification::Add { object, initial },
                            false,
                        ),
                    }
                }
                DeltaType::Deleted => {
                    self.indexer.delete(deltas.key());
                    self.distribute(
                        &listeners,
                        Notification::Delete(delta.object.clone()),
                        false,
                    );
                }
            }
        }
    }

    fn distribute(&self, listeners: &[Listener<K>], n: Notification<K>, sync: bool) {
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
