//! [`Builder`]: `for_` / `owns` / `watches` / predicates → a [`Controller`] run by the
//! manager (controller-runtime's `pkg/builder`).
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrokube_runtime::prelude::*;
//! use k8s_openapi::api::apps::v1::Deployment;
//! use k8s_openapi::api::core::v1::{ConfigMap, Secret};
//!
//! # fn demo(manager: &Manager) -> Result<(), ferrokube_runtime::builder::Error> {
//! let reconciler = reconcile::from_fn(|request: Request, _ctx: Context| async move {
//!     println!("reconciling {request}");
//!     Ok::<_, reconcile::BoxError>(Action::requeue_after(Duration::from_secs(300)))
//! });
//! Builder::new(manager)
//!     .for_with::<Deployment>(predicate::generation_changed())
//!     .owns::<ConfigMap>()
//!     .watches::<Secret>(handler::map_fn(|secret: &Secret| {
//!         vec![Request::for_object(secret)]
//!     }))
//!     .options(ControllerOptions::default().max_concurrent_reconciles(4))
//!     .complete(reconciler)?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use ferrokube_workqueue::Config as QueueConfig;
use ferrokube_workqueue::{PriorityQueue, default_controller_rate_limiter};
use kube::core::{ApiResource, DynamicObject};

use crate::cache::CacheObject;
use crate::controller::{Controller, EventFilter, Kind, Options, Source};
use crate::handler::{self, EventHandler};
use crate::manager::{Manager, RunFuture, Runnable};
use crate::predicate::Predicate;
use crate::reconcile::Reconciler;

/// Why a controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `for_` was not called (or called twice).
    #[error("a controller needs exactly one for_ type ({0})")]
    For(&'static str),
    /// No name was given and none could be derived.
    #[error("the controller needs a name: call Builder::named")]
    Unnamed,
    /// The manager refused the controller (e.g. a duplicate name, or already started).
    #[error(transparent)]
    Manager(#[from] crate::manager::Error),
}

/// The reconciled type, as `owns` needs it to find owner references.
#[derive(Clone)]
struct Owner {
    resource: ApiResource,
    cluster_scoped: bool,
}

/// A watch waiting for the owner type (owns may be called before for_).
type Deferred = Box<dyn FnOnce(&Owner) -> Box<dyn Source> + Send>;

/// Builds a controller and adds it to a manager (controller-runtime's
/// `NewControllerManagedBy`). See the [module docs](self) for an example.
#[must_use = "call complete (or build) to create the controller"]
pub struct Builder {
    manager: Manager,
    name: Option<String>,
    for_: Option<(Owner, Box<dyn Source>)>,
    for_count: usize,
    watches: Vec<Deferred>,
    filters: Vec<Arc<dyn EventFilter>>,
    options: Options,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("watches", &self.watches.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn kind<K: CacheObject>(
    dynamic_type: K::DynamicType,
    cluster_scoped: Option<bool>,
    handler: Arc<dyn EventHandler<K>>,
    predicate: Option<Arc<dyn Predicate<K>>>,
) -> Box<dyn Source> {
    Box::new(Kind::<K> {
        dynamic_type,
        cluster_scoped,
        handler,
        predicates: predicate.into_iter().collect(),
        filters: Vec::new(),
    })
}

impl Builder {
    /// A builder for a controller run by `manager`.
    pub fn new(manager: &Manager) -> Self {
        Self {
            manager: manager.clone(),
            name: None,
            for_: None,
            for_count: 0,
            watches: Vec::new(),
            filters: Vec::new(),
            options: Options::default(),
        }
    }

    /// The controller's name: its metrics label, log field and work queue name (unique per
    /// manager). Default: the `for_` type's kind, lowercased.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reconcile `K`: each event on a `K` reconciles that object.
    pub fn for_<K>(self) -> Self
    where
        K: CacheObject<DynamicType = ()>,
    {
        self.for_inner::<K>((), None, None)
    }

    /// [`for_`](Self::for_) with a predicate on `K`'s events.
    pub fn for_with<K>(self, predicate: impl Predicate<K>) -> Self
    where
        K: CacheObject<DynamicType = ()>,
    {
        self.for_inner::<K>((), None, Some(Arc::new(predicate)))
    }

    /// Reconcile a dynamic resource (`namespaced`: its scope, as discovery reports it).
    pub fn for_dynamic(self, resource: &ApiResource, namespaced: bool) -> Self {
        self.for_inner::<DynamicObject>(resource.clone(), Some(!namespaced), None)
    }

    fn for_inner<K: CacheObject>(
        mut self,
        dt: K::DynamicType,
        cluster_scoped: Option<bool>,
        predicate: Option<Arc<dyn Predicate<K>>>,
    ) -> Self {
        self.for_count += 1;
        let owner = Owner {
            resource: ApiResource::erase::<K>(&dt),
            cluster_scoped: cluster_scoped
                .or_else(crate::cache::is_cluster_scoped::<K>)
                .unwrap_or(false),
        };
        if self.name.is_none() {
            self.name = Some(owner.resource.kind.to_lowercase());
        }
        let source = kind::<K>(
            dt,
            cluster_scoped,
            Arc::new(handler::EnqueueRequestForObject),
            predicate,
        );
        self.for_ = Some((owner, source));
        self
    }

    /// Reconcile the controller owner (the `ownerReferences` entry with `controller: true`
    /// whose group and kind are the `for_` type's) of every `C` that changes.
    pub fn owns<C>(self) -> Self
    where
        C: CacheObject<DynamicType = ()>,
    {
        self.owns_inner::<C>(None)
    }

    /// [`owns`](Self::owns) with a predicate on `C`'s events.
    pub fn owns_with<C>(self, predicate: impl Predicate<C>) -> Self
    where
        C: CacheObject<DynamicType = ()>,
    {
        self.owns_inner::<C>(Some(Arc::new(predicate)))
    }

    fn owns_inner<C>(mut self, predicate: Option<Arc<dyn Predicate<C>>>) -> Self
    where
        C: CacheObject<DynamicType = ()>,
    {
        self.watches.push(Box::new(move |owner: &Owner| {
            let handler = handler::enqueue_owner_dyn(owner.resource.clone(), owner.cluster_scoped)
                .only_controller();
            kind::<C>((), None, Arc::new(handler), predicate)
        }));
        self
    }

    /// Watch `W` and reconcile the requests `handler` maps its events to
    /// ([`handler::map_fn`], [`handler::enqueue_owner`]…).
    pub fn watches<W>(self, handler: impl EventHandler<W>) -> Self
    where
        W: CacheObject<DynamicType = ()>,
    {
        self.watches_inner::<W>((), None, Arc::new(handler), None)
    }

    /// [`watches`](Self::watches) with a predicate on `W`'s events.
    pub fn watches_with<W>(
        self,
        handler: impl EventHandler<W>,
        predicate: impl Predicate<W>,
    ) -> Self
    where
        W: CacheObject<DynamicType = ()>,
    {
        self.watches_inner::<W>((), None, Arc::new(handler), Some(Arc::new(predicate)))
    }

    /// Watch a dynamic resource (`namespaced`: its scope).
    pub fn watches_dynamic(
        self,
        resource: &ApiResource,
        namespaced: bool,
        handler: impl EventHandler<DynamicObject>,
    ) -> Self {
        self.watches_inner::<DynamicObject>(
            resource.clone(),
            Some(!namespaced),
            Arc::new(handler),
            None,
        )
    }

    fn watches_inner<W: CacheObject>(
        mut self,
        dt: W::DynamicType,
        cluster_scoped: Option<bool>,
        handler: Arc<dyn EventHandler<W>>,
        predicate: Option<Arc<dyn Predicate<W>>>,
    ) -> Self
    where
        W::DynamicType: Send,
    {
        self.watches.push(Box::new(move |_: &Owner| {
            kind::<W>(dt, cluster_scoped, handler, predicate)
        }));
        self
    }

    /// Filter the events of every watch by their metadata (controller-runtime's
    /// `WithEventFilter`), e.g. `predicate::generation_changed()`.
    pub fn with_event_filter(mut self, filter: impl EventFilter) -> Self {
        self.filters.push(Arc::new(filter));
        self
    }

    /// Concurrency, rate limiter, timeouts.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Builds the controller without adding it to the manager (run it with
    /// [`Controller::run`]).
    ///
    /// # Errors
    ///
    /// Without exactly one `for_` type.
    pub fn build<R: Reconciler>(self, reconciler: R) -> Result<Controller<R>, Error> {
        let Self {
            manager,
            name,
            for_,
            for_count,
            watches,
            filters,
            mut options,
        } = self;
        if for_count > 1 {
            return Err(Error::For("for_ was called more than once"));
        }
        let Some((owner, for_source)) = for_ else {
            return Err(Error::For("for_ was not called"));
        };
        let name: Arc<str> = name.ok_or(Error::Unnamed)?.into();
        let mut sources = vec![for_source];
        sources.extend(watches.into_iter().map(|w| w(&owner)));
        for source in &mut sources {
            for filter in &filters {
                source.add_filter(Arc::clone(filter));
            }
        }
        let limiter = options
            .rate_limiter
            .take()
            .unwrap_or_else(|| Box::new(default_controller_rate_limiter()));
        let queue = PriorityQueue::with_config(
            limiter,
            QueueConfig::new()
                .name(name.to_string())
                .metrics(manager.metrics().workqueue()),
        );
        Ok(Controller {
            metrics: manager.metrics().controller(&name),
            name,
            reconciler: Arc::new(reconciler),
            sources,
            queue,
            options,
        })
    }

    /// Builds the controller and adds it to the manager, which runs it while leading. Its
    /// informers are created now, so the cache syncs them before this replica leads (warm
    /// standby).
    ///
    /// # Errors
    ///
    /// Without exactly one `for_` type, with a name already used in this manager, or once
    /// the manager has started.
    pub fn complete<R: Reconciler>(self, reconciler: R) -> Result<(), Error> {
        let manager = self.manager.clone();
        if manager.is_started() {
            return Err(Error::Manager(crate::manager::Error::AlreadyStarted));
        }
        let controller = self.build(reconciler)?;
        manager.register_controller_name(controller.name())?;
        for source in &controller.sources {
            source.prepare(manager.cache());
        }
        manager.add(ControllerRunnable {
            controller,
            manager: manager.clone(),
        })?;
        Ok(())
    }
}

/// A controller as the manager runs it.
struct ControllerRunnable<R> {
    controller: Controller<R>,
    manager: Manager,
}

impl<R: Reconciler> Runnable for ControllerRunnable<R> {
    fn name(&self) -> String {
        format!("controller {}", self.controller.name())
    }

    fn start(self: Box<Self>, cancel: tokio_util::sync::CancellationToken) -> RunFuture {
        let cache = self.manager.cache().clone();
        Box::pin(async move {
            self.controller
                .run(cache, cancel)
                .await
                .map_err(|e| Box::new(e) as crate::reconcile::BoxError)
        })
    }
}
