//! Event handlers: what an informer calls when objects are added, updated or deleted.

use std::sync::Arc;

use crate::delta_fifo::DeltaObject;

/// Receives an informer's notifications (client-go's `ResourceEventHandler`).
///
/// Each registered handler is called from a Tokio task of its own, draining its own
/// unbounded buffer, so a slow handler delays only itself; the task runs on the runtime
/// running [`SharedIndexInformer::run`](super::SharedIndexInformer::run) and stops with it.
/// A handler may therefore use the runtime (`tokio::spawn`, a channel's `send`), but it
/// shares the runtime's worker threads: it must be quick and must not block. The usual one
/// turns the object into a key and adds it to a work queue; one that needs to block or do
/// async work spawns a task (`tokio::spawn`, `tokio::task::spawn_blocking`), or the
/// registration is consumed as an [`EventStream`](super::EventStream) instead.
///
/// A panic in a handler ends `run()` with that panic (a handler that skipped an event would
/// hold a stale view nobody knows about).
pub trait ResourceEventHandler<K>: Send + Sync + 'static {
    /// An object appeared; `is_initial_list` is true for the informer's initial contents
    /// (and for the replay a handler gets when it is added late).
    fn on_add(&self, object: Arc<K>, is_initial_list: bool) {
        let _ = (object, is_initial_list);
    }

    /// An object changed (also called on resync, with `old` and `new` the same object).
    fn on_update(&self, old: Arc<K>, new: Arc<K>) {
        let _ = (old, new);
    }

    /// An object was deleted: its last state, or a [`DeletedFinalStateUnknown`] when the
    /// deletion was only noticed on a relist.
    ///
    /// [`DeletedFinalStateUnknown`]: crate::DeletedFinalStateUnknown
    fn on_delete(&self, object: DeltaObject<K>) {
        let _ = object;
    }
}

type AddFn<K> = Box<dyn Fn(Arc<K>, bool) + Send + Sync>;
type UpdateFn<K> = Box<dyn Fn(Arc<K>, Arc<K>) + Send + Sync>;
type DeleteFn<K> = Box<dyn Fn(DeltaObject<K>) + Send + Sync>;

/// A handler made of closures (client-go's `ResourceEventHandlerFuncs`); unset ones do
/// nothing.
#[doc(alias = "ResourceEventHandlerFuncs")]
#[must_use]
pub struct EventHandlerFuncs<K> {
    add: Option<AddFn<K>>,
    update: Option<UpdateFn<K>>,
    delete: Option<DeleteFn<K>>,
}

impl<K> Default for EventHandlerFuncs<K> {
    fn default() -> Self {
        Self {
            add: None,
            update: None,
            delete: None,
        }
    }
}

impl<K> EventHandlerFuncs<K> {
    /// Called for additions, with `is_initial_list`.
    pub fn on_add(mut self, f: impl Fn(Arc<K>, bool) + Send + Sync + 'static) -> Self {
        self.add = Some(Box::new(f));
        self
    }

    /// Called for updates, with the old and new object.
    pub fn on_update(mut self, f: impl Fn(Arc<K>, Arc<K>) + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }

    /// Called for deletions.
    pub fn on_delete(mut self, f: impl Fn(DeltaObject<K>) + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<K: Send + Sync + 'static> ResourceEventHandler<K> for EventHandlerFuncs<K> {
    fn on_add(&self, object: Arc<K>, is_initial_list: bool) {
        if let Some(f) = &self.add {
            f(object, is_initial_list);
        }
    }

    fn on_update(&self, old: Arc<K>, new: Arc<K>) {
        if let Some(f) = &self.update {
            f(old, new);
        }
    }

    fn on_delete(&self, object: DeltaObject<K>) {
        if let Some(f) = &self.delete {
            f(object);
        }
    }
}
