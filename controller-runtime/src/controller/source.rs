//! Watches: an informer of the cache, predicates, and a handler that turns events into
//! requests on the controller's queue.

use std::sync::Arc;

use ferrokube_informer::ResourceEventHandler;
use ferrokube_informer::delta_fifo::DeltaObject;
use ferrokube_workqueue::{AddOpts, PriorityQueue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cache::{Cache, CacheObject, HandlerRegistration, Informer};
use crate::handler::EventHandler;
use crate::predicate::Predicate;
use crate::reconcile::Request;

/// The priority of events from initial lists and resyncs: below live changes
/// (controller-runtime's `handler.LowPriority`).
pub const LOW_PRIORITY: i32 = -100;

/// Filters events of every watch of a controller by their metadata
/// ([`Builder::with_event_filter`](crate::builder::Builder::with_event_filter);
/// controller-runtime's `WithEventFilter`). Unset methods let events through.
///
/// The built-in metadata predicates of [`crate::predicate`] implement it, so
/// `with_event_filter(predicate::generation_changed())` applies to every watch.
pub trait EventFilter: Send + Sync + 'static {
    /// Whether a creation passes.
    fn create(&self, meta: &ObjectMeta) -> bool {
        let _ = meta;
        true
    }
    /// Whether an update passes.
    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        let _ = (old, new);
        true
    }
    /// Whether a deletion passes.
    fn delete(&self, meta: &ObjectMeta) -> bool {
        let _ = meta;
        true
    }
}

/// One watch of a controller, its object type erased.
pub(crate) trait Source: Send + Sync {
    /// Creates (or finds) the informer in `cache` and registers the event handler.
    fn start(&self, cache: &Cache, queue: &PriorityQueue<Request>) -> Box<dyn Started>;
    /// Creates the informer in `cache` (so the cache syncs it before the controller runs).
    fn prepare(&self, cache: &Cache);
    /// Adds a filter on every event of this watch.
    fn add_filter(&mut self, filter: Arc<dyn EventFilter>);
    /// The watched resource, for logs.
    fn describe(&self) -> String;
}

/// A started watch: has its handler seen the initial contents? remove it when done.
pub(crate) trait Started: Send + Sync {
    fn has_synced(&self) -> bool;
    fn stop(&self);
}

/// A watch of `K` objects.
pub(crate) struct Kind<K: CacheObject> {
    pub(crate) dynamic_type: K::DynamicType,
    pub(crate) cluster_scoped: Option<bool>,
    pub(crate) handler: Arc<dyn EventHandler<K>>,
    pub(crate) predicates: Vec<Arc<dyn Predicate<K>>>,
    pub(crate) filters: Vec<Arc<dyn EventFilter>>,
}

impl<K: CacheObject> Source for Kind<K> {
    fn start(&self, cache: &Cache, queue: &PriorityQueue<Request>) -> Box<dyn Started> {
        let informer = cache.informer_with::<K>(&self.dynamic_type, self.cluster_scoped);
        let registration = informer.add_event_handler(Enqueue {
            handler: Arc::clone(&self.handler),
            predicates: self.predicates.clone().into(),
            filters: self.filters.clone().into(),
            queue: queue.clone(),
        });
        Box::new(StartedKind {
            informer,
            registration,
        })
    }

    fn prepare(&self, cache: &Cache) {
        let _ = cache.informer_with::<K>(&self.dynamic_type, self.cluster_scoped);
    }

    fn add_filter(&mut self, filter: Arc<dyn EventFilter>) {
        self.filters.push(filter);
    }

    fn describe(&self) -> String {
        format!(
            "{}/{}",
            K::api_version(&self.dynamic_type),
            K::plural(&self.dynamic_type)
        )
    }
}

struct StartedKind<K> {
    informer: Informer<K>,
    registration: HandlerRegistration,
}

impl<K: kube::Resource + Send + Sync + 'static> Started for StartedKind<K> {
    fn has_synced(&self) -> bool {
        self.registration.has_synced()
    }

    fn stop(&self) {
        self.informer.remove_event_handler(&self.registration);
    }
}

/// The event handler a watch registers: predicates, then requests into the queue.
pub(crate) struct Enqueue<K> {
    pub(crate) handler: Arc<dyn EventHandler<K>>,
    pub(crate) predicates: Arc<[Arc<dyn Predicate<K>>]>,
    pub(crate) filters: Arc<[Arc<dyn EventFilter>]>,
    pub(crate) queue: PriorityQueue<Request>,
}

impl<K: kube::Resource> Enqueue<K> {
    fn enqueue(&self, priority: i32) -> impl FnMut(Request) + '_ {
        move |request| {
            self.queue
                .add_with(request, AddOpts::new().priority(priority))
        }
    }
}

fn priority(low: bool) -> i32 {
    if low { LOW_PRIORITY } else { 0 }
}

impl<K: kube::Resource + Send + Sync + 'static> ResourceEventHandler<K> for Enqueue<K> {
    fn on_add(&self, object: Arc<K>, is_initial_list: bool) {
        let passes = self.filters.iter().all(|f| f.create(object.meta()))
            && self.predicates.iter().all(|p| p.create(&object));
        if passes {
            self.handler
                .requests(&object, &mut self.enqueue(priority(is_initial_list)));
        }
    }

    fn on_update(&self, old: Arc<K>, new: Arc<K>) {
        let passes = self
            .filters
            .iter()
            .all(|f| f.update(old.meta(), new.meta()))
            && self.predicates.iter().all(|p| p.update(&old, &new));
        if passes {
            // A resync hands the same object again: low priority, as controller-runtime does.
            let resync = old.meta().resource_version == new.meta().resource_version;
            self.handler
                .update_requests(&old, &new, &mut self.enqueue(priority(resync)));
        }
    }

    fn on_delete(&self, object: DeltaObject<K>) {
        let object = object.object();
        let passes = self.filters.iter().all(|f| f.delete(object.meta()))
            && self.predicates.iter().all(|p| p.delete(object));
        if passes {
            self.handler.requests(object, &mut self.enqueue(0));
        }
    }
}
