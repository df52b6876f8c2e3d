//! The [`DeltaFifo`]: the queue between the reflector and the informer's store (client-go's
//! `DeltaFIFO`).
//!
//! Every change to an object is queued as a [`Delta`] under the object's key; a key sits in
//! the queue once, with all its deltas, so the consumer sees everything that happened to an
//! object since it last processed it. Relists ([`DeltaFifo::replace`]) queue
//! [`DeltaType::Replaced`] deltas and infer the deletions the watch missed as
//! [`DeletedFinalStateUnknown`] tombstones; resyncs ([`DeltaFifo::resync`]) re-deliver what
//! the consumer already knows as [`DeltaType::Sync`] deltas.
//!
//! ```
//! use std::sync::Arc;
//! use ferrokube_informer::delta_fifo::{DeltaFifo, DeltaType, ProcessError};
//! use ferrokube_informer::store::Indexer;
//! use k8s_openapi::api::core::v1::ConfigMap;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Indexer::<ConfigMap>::new();
//! let fifo = DeltaFifo::with_known_objects(store.clone());
//!
//! let mut cm = ConfigMap::default();
//! cm.metadata.namespace = Some("default".into());
//! cm.metadata.name = Some("settings".into());
//! fifo.replace(vec![Arc::new(cm)], "42");
//!
//! let deltas = fifo
//!     .pop(|deltas, _is_in_initial_list| {
//!         for delta in deltas {
//!             match delta.kind {
//!                 DeltaType::Deleted => {
//!                     store.delete(deltas.key());
//!                 }
//!                 _ => {
//!                     store.add(delta.object.object().clone());
//!                 }
//!             }
//!         }
//!         Ok::<(), ProcessError<()>>(())
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(deltas.key(), "default/settings");
//! assert!(fifo.has_synced());
//! assert_eq!(store.len(), 1);
//! # }
//! ```

mod delta;
mod pop;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use parking_lot::Mutex;
use tokio::sync::Notify;

use self::delta::push_deduped;
pub use self::delta::{Delta, DeltaObject, DeltaType, Deltas};
pub use self::pop::{PopError, ProcessError};
use crate::key::{DeletedFinalStateUnknown, object_key};
use crate::store::Indexer;

/// What the consumer of a [`DeltaFifo`] already knows (normally the informer's
/// [`Indexer`]): consulted by [`delete`](DeltaFifo::delete), [`replace`](DeltaFifo::replace)
/// and [`resync`](DeltaFifo::resync) (client-go's `KeyListerGetter`).
///
/// Its methods are called with the queue's lock held: they must not call back into the
/// queue.
#[doc(alias = "KeyListerGetter")]
pub trait KnownObjects<K>: Send + Sync {
    /// Every known key.
    fn list_keys(&self) -> Vec<String>;
    /// The known object under `key`.
    fn get_by_key(&self, key: &str) -> Option<Arc<K>>;
}

impl<K: kube::Resource + Send + Sync + 'static> KnownObjects<K> for Indexer<K> {
    fn list_keys(&self) -> Vec<String> {
        Indexer::list_keys(self)
    }

    fn get_by_key(&self, key: &str) -> Option<Arc<K>> {
        self.get(key)
    }
}

/// A producer/consumer queue of per-key [`Deltas`] (client-go's `DeltaFIFO`, always with
/// `EmitDeltaTypeReplaced`).
///
/// The reflector produces ([`add`](Self::add), [`update`](Self::update),
/// [`delete`](Self::delete), [`replace`](Self::replace), [`resync`](Self::resync)); the
/// informer consumes with [`pop`](Self::pop), which hands one key's deltas to a closure
/// while the queue is locked, so the consumer's store and the queue never disagree.
///
/// Share it behind an [`Arc`]. The lock is a short synchronous one, never held across an
/// `.await`.
#[doc(alias = "DeltaFIFO")]
pub struct DeltaFifo<K> {
    state: Mutex<State<K>>,
    /// Wakes poppers when a key is queued or the queue closes.
    notify: Notify,
    known: Option<Box<dyn KnownObjects<K>>>,
}

struct State<K> {
    /// Key → its deltas (never empty). The same keys as `queue`.
    items: HashMap<String, Vec<Delta<K>>>,
    /// Keys in the order they were first queued; no duplicates.
    queue: VecDeque<String>,
    /// The first `replace`, or any add/update/delete/add_if_not_present, happened.
    populated: bool,
    /// How many keys of the first `replace` are still to be popped.
    initial_population_count: usize,
    closed: bool,
}

// === impl DeltaFifo ===

impl<K: kube::Resource + Send + Sync + 'static> DeltaFifo<K> {
    /// A queue without known objects: deletions of keys not queued are dropped and
    /// relists only detect deletions of queued keys.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A queue that consults `known` (normally the informer's [`Indexer`]).
    #[doc(alias = "NewDeltaFIFOWithOptions")]
    pub fn with_known_objects(known: impl KnownObjects<K> + 'static) -> Self {
        Self::build(Some(Box::new(known)))
    }

    fn build(known: Option<Box<dyn KnownObjects<K>>>) -> Self {
        Self {
            state: Mutex::new(State {
                items: HashMap::new(),
                queue: VecDeque::new(),
                populated: false,
                initial_population_count: 0,
                closed: false,
            }),
            notify: Notify::new(),
            known,
        }
    }

    /// Queues an [`Added`](DeltaType::Added) delta.
    pub fn add(&self, obj: Arc<K>) {
        self.queue_populating(DeltaType::Added, DeltaObject::Object(obj));
    }

    /// Queues an [`Updated`](DeltaType::Updated) delta.
    pub fn update(&self, obj: Arc<K>) {
        self.queue_populating(DeltaType::Updated, DeltaObject::Object(obj));
    }

    /// Queues a [`Deleted`](DeltaType::Deleted) delta, unless the key is neither queued nor
    /// known (it was presumably deleted by a relist already: no second report). Two
    /// deletions in a row collapse into one, keeping a real object over a tombstone.
    pub fn delete(&self, obj: impl Into<DeltaObject<K>>) {
        let object = obj.into();
        let key = object.key();
        {
            let mut state = self.state.lock();
            state.populated = true;
            let queued = state.items.contains_key(&key);
            let known = self
                .known
                .as_ref()
                .is_some_and(|k| k.get_by_key(&key).is_some());
            if !queued && !known {
                return;
            }
            state.queue_action(key, DeltaType::Deleted, object);
        }
        self.notify.notify_waiters();
    }

    /// Puts back deltas a consumer popped but could not process, unless the key has been
    /// queued again meanwhile (client-go's `AddIfNotPresent`).
    #[doc(alias = "AddIfNotPresent")]
    pub fn add_if_not_present(&self, deltas: Deltas<K>) {
        if self.state.lock().add_if_not_present(deltas) {
            self.notify.notify_waiters();
        }
    }

    /// The complete state after a list: queues a [`Replaced`](DeltaType::Replaced) delta for
    /// each item, then a [`Deleted`](DeltaType::Deleted) delta with a
    /// [`DeletedFinalStateUnknown`] for every queued or known key not in `items`, holding the
    /// newest queued object for the key, else the known one (client-go's `Replace`).
    ///
    /// The first call (unless something was queued before it) sets what
    /// [`has_synced`](Self::has_synced) waits for. `_resource_version` is the list's
    /// resourceVersion, unused by the queue.
    pub fn replace(&self, items: impl IntoIterator<Item = Arc<K>>, _resource_version: &str) {
        {
            let mut state = self.state.lock();
            let mut listed = HashSet::new();
            for obj in items {
                let key = object_key(&*obj);
                listed.insert(key.clone());
                state.queue_action(key, DeltaType::Replaced, DeltaObject::Object(obj));
            }

            // Deletions of queued keys, in queue order, with the newest queued object.
            let missing: Vec<(String, Arc<K>)> = state
                .queue
                .iter()
                .filter(|key| !listed.contains(*key))
                .filter_map(|key| {
                    let newest = state.items.get(key)?.last()?;
                    Some((key.clone(), Arc::clone(newest.object.object())))
                })
                .collect();
            let mut queued_deletions = missing.len();
            for (key, obj) in missing {
                state.queue_deleted_final_state_unknown(key, obj);
            }

            // Deletions of known keys that are not queued, with the known object.
            if let Some(known) = &self.known {
                for key in known.list_keys() {
                    if listed.contains(&key) || state.items.contains_key(&key) {
                        continue;
                    }
                    // Gone from the known objects since `list_keys`: nothing left to delete.
                    let Some(obj) = known.get_by_key(&key) else {
                        tracing::trace!(%key, "known key vanished during replace");
                        continue;
                    };
                    queued_deletions += 1;
                    state.queue_deleted_final_state_unknown(key, obj);
                }
            }

            if !state.populated {
                state.populated = true;
                state.initial_population_count = listed.len() + queued_deletions;
            }
        }
        self.notify.notify_waiters();
    }

    /// Queues a [`Sync`](DeltaType::Sync) delta for every known object whose key is not
    /// queued already (a queued delta is newer than the known object). Does nothing without
    /// known objects (client-go's `Resync`).
    pub fn resync(&self) {
        let Some(known) = &self.known else {
            return;
        };
        let mut queued = false;
        {
            let mut state = self.state.lock();
            for key in known.list_keys() {
                if state.items.contains_key(&key) {
                    continue;
                }
                let Some(obj) = known.get_by_key(&key) else {
                    continue;
                };
                // client-go queues under the object's own key.
                let key = object_key(&*obj);
                if state.items.contains_key(&key) {
                    continue;
                }
                state.queue_action(key, DeltaType::Sync, DeltaObject::Object(obj));
                queued = true;
            }
        }
        if queued {
            self.notify.notify_waiters();
        }
    }

    /// Whether the initial population has been popped: the items (and inferred deletions)
    /// of the first [`replace`](Self::replace), or nothing if an add, update or delete came
    /// first (client-go's `HasSynced`).
    #[doc(alias = "HasSynced")]
    pub fn has_synced(&self) -> bool {
        self.state.lock().has_synced()
    }

    /// Closes the queue: once it is empty, [`pop`](Self::pop) returns
    /// [`PopError::Closed`] instead of waiting, and waiting pops wake up with it. Keys still
    /// queued can be popped (as in client-go); producers are not refused.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// The queued keys, oldest first.
    pub fn list_keys(&self) -> Vec<String> {
        self.state.lock().queue.iter().cloned().collect()
    }

    /// The deltas queued for `key` (a copy; they stay queued).
    #[doc(alias = "GetByKey")]
    pub fn get(&self, key: &str) -> Option<Deltas<K>> {
        let state = self.state.lock();
        let deltas = state.items.get(key)?;
        Some(Deltas {
            key: key.to_owned(),
            deltas: deltas.clone(),
        })
    }

    /// How many keys are queued.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether no key is queued.
    pub fn is_empty(&self) -> bool {
        self.state.lock().queue.is_empty()
    }

    fn queue_populating(&self, kind: DeltaType, object: DeltaObject<K>) {
        let key = object.key();
        {
            let mut state = self.state.lock();
            state.populated = true;
            state.queue_action(key, kind, object);
        }
        self.notify.notify_waiters();
    }
}

impl<K: kube::Resource + Send + Sync + 'static> Default for DeltaFifo<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for DeltaFifo<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("DeltaFifo")
            .field("len", &state.queue.len())
            .field("populated", &state.populated)
            .field("initial_population_count", &state.initial_population_count)
            .field("closed", &state.closed)
            .field("known_objects", &self.known.is_some())
            .finish()
    }
}

impl<K: kube::Resource + Send + Sync + 'static> crate::reflector::Sink<K> for DeltaFifo<K> {
    fn replace(&self, items: Vec<Arc<K>>, resource_version: String) {
        DeltaFifo::replace(self, items, &resource_version);
    }

    fn add(&self, object: Arc<K>) {
        DeltaFifo::add(self, object);
    }

    fn update(&self, object: Arc<K>) {
        DeltaFifo::update(self, object);
    }

    fn delete(&self, object: Arc<K>) {
        DeltaFifo::delete(self, object);
    }

    fn resync(&self) {
        DeltaFifo::resync(self);
    }
}

// === impl State ===

impl<K> State<K> {
    fn has_synced(&self) -> bool {
        self.populated && self.initial_population_count == 0
    }

    /// Appends a delta to `key`'s deltas, queueing the key if it is new (client-go's
    /// `queueActionLocked`).
    fn queue_action(&mut self, key: String, kind: DeltaType, object: DeltaObject<K>) {
        let delta = Delta { kind, object };
        match self.items.get_mut(&key) {
            Some(deltas) => push_deduped(deltas, delta),
            None => {
                self.queue.push_back(key.clone());
                self.items.insert(key, vec![delta]);
            }
        }
    }

    /// Queues the deletion of `key` as a tombstone holding `obj` (unwrapped if it is one).
    fn queue_deleted_final_state_unknown(&mut self, key: String, obj: Arc<K>) {
        let tombstone = DeletedFinalStateUnknown::new(key.clone(), obj);
        self.queue_action(
            key,
            DeltaType::Deleted,
            DeltaObject::DeletedFinalStateUnknown(tombstone),
        );
    }

    /// Queues `deltas` unless their key is queued; whether it queued them.
    fn add_if_not_present(&mut self, deltas: Deltas<K>) -> bool {
        self.populated = true;
        if deltas.deltas.is_empty() || self.items.contains_key(&deltas.key) {
            return false;
        }
        self.queue.push_back(deltas.key.clone());
        self.items.insert(deltas.key, deltas.deltas);
        true
    }

    /// Takes the oldest key's deltas, with whether they belong to the initial population.
    fn pop_front(&mut self) -> Option<(Deltas<K>, bool)> {
        while let Some(key) = self.queue.pop_front() {
            let is_in_initial_list = !self.has_synced();
            self.initial_population_count = self.initial_population_count.saturating_sub(1);
            match self.items.remove(&key) {
                Some(deltas) => return Some((Deltas { key, deltas }, is_in_initial_list)),
                None => tracing::error!(%key, "key queued without deltas; skipped"),
            }
        }
        None
    }
}
