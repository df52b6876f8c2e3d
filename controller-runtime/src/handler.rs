//! Which objects an event asks to reconcile (controller-runtime's `pkg/handler`).
//!
//! An [`EventHandler`] maps an event on a watched object to the [`Request`]s to enqueue:
//!
//! | handler | enqueues | used by the builder for |
//! |---|---|---|
//! | [`EnqueueRequestForObject`] | the object itself | `for_::<K>()` |
//! | [`enqueue_controller_owner`] | the object's controller, if it is an `O` | `owns::<C>()` |
//! | [`enqueue_owner`] / [`enqueue_owner_dyn`] | every owner of the object that is an `O` | |
//! | [`map_fn`] | what your closure returns | `watches::<W>(…)` |
//! | [`from_fns`] | what your closures enqueue | |
//!
//! The queue collapses duplicate requests, so a handler may enqueue the same request twice.
//!
//! ```
//! use ferrokube_runtime::handler::{self, EventHandler};
//! use ferrokube_runtime::reconcile::Request;
//! use k8s_openapi::api::apps::v1::ReplicaSet;
//! use k8s_openapi::api::core::v1::Pod;
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
//!
//! let mut pod = Pod::default();
//! pod.metadata.namespace = Some("default".into());
//! pod.metadata.owner_references = Some(vec![OwnerReference {
//!     api_version: "apps/v1".into(),
//!     kind: "ReplicaSet".into(),
//!     name: "web-5d4f".into(),
//!     controller: Some(true),
//!     ..Default::default()
//! }]);
//!
//! let mut requests = Vec::new();
//! handler::enqueue_controller_owner::<ReplicaSet>().requests(&pod, &mut |r| requests.push(r));
//! assert_eq!(requests, [Request::namespaced("default", "web-5d4f")]);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::core::ApiResource;

use crate::reconcile::Request;

/// Maps an event on a watched object to the requests to reconcile (controller-runtime's `handler.EventHandler`).
///
/// Objects are borrowed from the cache: never clone them to decide. Implement it yourself for
/// full control, or use [`map_fn`] / [`from_fns`].
pub trait EventHandler<K>: Send + Sync + 'static {
    /// The requests for `object` (create, delete, and each side of an update).
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request));
    /// The requests for an update; by default those of the old and of the new object (the queue collapses duplicates).
    fn update_requests(&self, old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        self.requests(old, enqueue);
        self.requests(new, enqueue);
    }
}

impl<K, H: EventHandler<K> + ?Sized> EventHandler<K> for Arc<H> {
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        (**self).requests(object, enqueue);
    }

    fn update_requests(&self, old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        (**self).update_requests(old, new, enqueue);
    }
}

impl<K, H: EventHandler<K> + ?Sized> EventHandler<K> for Box<H> {
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        (**self).requests(object, enqueue);
    }

    fn update_requests(&self, old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        (**self).update_requests(old, new, enqueue);
    }
}

// === impl EnqueueRequestForObject ===

/// Enqueues the object of the event itself: its namespace and name (controller-runtime's
/// `handler.EnqueueRequestForObject`), what a controller does for the type it reconciles.
///
/// An update enqueues the new object only, as controller-runtime does (an update never changes
/// an object's namespace or name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnqueueRequestForObject;

impl<K: Resource> EventHandler<K> for EnqueueRequestForObject {
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        enqueue(Request::for_object(object));
    }

    fn update_requests(&self, _old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        enqueue(Request::for_object(new));
    }
}

// === impl EnqueueRequestForOwner ===

/// Enqueues the owners of the object of the event that are of one kind (controller-runtime's
/// `handler.EnqueueRequestForOwner`): what a controller does for the objects it creates.
///
/// An `ownerReference` matches when its kind and the group of its `apiVersion` are the owner
/// type's; the version is ignored, so an owner reference written with an older version of the
/// owner's API still matches. The request is the reference's name, in the owned object's
/// namespace for a namespaced owner, without a namespace for a cluster-scoped one. An update
/// enqueues the owners of the old and of the new object, once each, so an object that changes
/// owners reaches both.
///
/// Built by [`enqueue_owner`], [`enqueue_controller_owner`] and [`enqueue_owner_dyn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueRequestForOwner {
    group: String,
    kind: String,
    cluster_scoped: bool,
    only_controller: bool,
}

/// Enqueues every owner of the object that is an `O`.
///
/// Whether `O` is cluster-scoped comes from its [`Resource::Scope`]: a scope of
/// [`k8s_openapi::ClusterResourceScope`] (cluster-scoped `k8s_openapi` types, and
/// `#[derive(CustomResource)]` types without `#[kube(namespaced)]`) makes the requests
/// cluster-scoped; any other scope makes them namespaced. For owners whose scope is only known
/// at run time, use [`enqueue_owner_dyn`].
#[must_use]
pub fn enqueue_owner<O>() -> EnqueueRequestForOwner
where
    O: Resource<DynamicType = ()>,
{
    EnqueueRequestForOwner {
        group: O::group(&()).into_owned(),
        kind: O::kind(&()).into_owned(),
        cluster_scoped: crate::cache::is_cluster_scoped::<O>().unwrap_or(false),
        only_controller: false,
    }
}

/// Enqueues the object's controller (its one owner reference with `controller: true`) if it is
/// an `O`: controller-runtime's `EnqueueRequestForOwner` with `OnlyControllerOwner()`, what
/// the builder's `owns::<C>()` uses. Scope as in [`enqueue_owner`].
#[must_use]
pub fn enqueue_controller_owner<O>() -> EnqueueRequestForOwner
where
    O: Resource<DynamicType = ()>,
{
    enqueue_owner::<O>().only_controller()
}

/// Enqueues every owner of the object of the group and kind of `owner` (its version is
/// ignored), for owner types known at run time (a [`DynamicObject`](kube::core::DynamicObject)'s
/// resource, from discovery). `cluster_scoped` says whether such owners are cluster-scoped
/// (discovery's `ApiCapabilities::scope`).
#[must_use]
pub fn enqueue_owner_dyn(owner: ApiResource, cluster_scoped: bool) -> EnqueueRequestForOwner {
    EnqueueRequestForOwner {
        group: owner.group,
        kind: owner.kind,
        cluster_scoped,
        only_controller: false,
    }
}

impl EnqueueRequestForOwner {
    /// Looks only at the object's controller reference (the first owner reference with
    /// `controller: true`), not at its other owners (controller-runtime's `OnlyControllerOwner`).
    #[must_use]
    pub fn only_controller(mut self) -> Self {
        self.only_controller = true;
        self
    }

    /// The owners' API group (empty for the core group).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The owners' kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether the owners are cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        self.cluster_scoped
    }

    /// Whether only controller references are followed.
    pub fn is_only_controller(&self) -> bool {
        self.only_controller
    }

    /// Adds the requests for `object`'s matching owners to `out`, skipping those already there.
    fn collect<K: Resource>(&self, object: &K, out: &mut Vec<Request>) {
        let meta = object.meta();
        let references = meta.owner_references.as_deref().unwrap_or_default();
        let matching = references
            .iter()
            .filter(|r| !self.only_controller || r.controller == Some(true))
            // Only the first controller reference counts (apimachinery's `GetControllerOf`).
            .take(if self.only_controller { 1 } else { usize::MAX })
            .filter(|r| self.matches(r));
        for reference in matching {
            let request = Request {
                namespace: if self.cluster_scoped {
                    None
                } else {
                    meta.namespace.clone()
                },
                name: reference.name.clone(),
            };
            if !out.contains(&request) {
                out.push(request);
            }
        }
    }

    fn matches(&self, reference: &OwnerReference) -> bool {
        if reference.kind != self.kind {
            return false;
        }
        // apimachinery's `ParseGroupVersion`: "v1" is the core group, "g/v" is group g, and
        // more slashes are invalid (the API server rejects them in owner references).
        let mut parts = reference.api_version.split('/');
        let group = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), None, _) => "",
            (Some(group), Some(_), None) => group,
            _ => {
                tracing::debug!(
                    api_version = %reference.api_version,
                    "skipping an owner reference with an invalid apiVersion"
                );
                return false;
            }
        };
        group == self.group
    }
}

impl<K: Resource> EventHandler<K> for EnqueueRequestForOwner {
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        let mut requests = Vec::new();
        self.collect(object, &mut requests);
        requests.into_iter().for_each(enqueue);
    }

    fn update_requests(&self, old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        let mut requests = Vec::new();
        self.collect(old, &mut requests);
        self.collect(new, &mut requests);
        requests.into_iter().for_each(enqueue);
    }
}

// === impl MapFn ===

/// The [`EventHandler`] of [`map_fn`].
pub struct MapFn<K, F> {
    map: F,
    _object: PhantomData<fn(&K)>,
}

/// Enqueues the requests `map` returns for the object (controller-runtime's
/// `handler.EnqueueRequestsFromMapFunc`), to reconcile objects of another type when this one
/// changes. An update maps the old and the new object and enqueues both results. `map` may
/// return any iterable of requests: a `Vec`, an `Option`, an iterator.
///
/// ```
/// use ferrokube_runtime::handler::{self, EventHandler};
/// use ferrokube_runtime::reconcile::Request;
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// // A ConfigMap names the Widget that reads it in an annotation.
/// let handler = handler::map_fn(|cm: &ConfigMap| {
///     let widget = cm.metadata.annotations.as_ref()?.get("example.com/widget")?;
///     Some(Request::namespaced(cm.metadata.namespace.clone()?, widget.clone()))
/// });
/// let mut requests = Vec::new();
/// handler.requests(&ConfigMap::default(), &mut |r| requests.push(r));
/// assert!(requests.is_empty());
/// ```
#[must_use]
pub fn map_fn<K, F, I>(map: F) -> MapFn<K, F>
where
    F: Fn(&K) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = Request>,
{
    MapFn {
        map,
        _object: PhantomData,
    }
}

impl<K, F: Clone> Clone for MapFn<K, F> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _object: PhantomData,
        }
    }
}

impl<K, F> fmt::Debug for MapFn<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapFn").finish_non_exhaustive()
    }
}

impl<K: 'static, F, I> EventHandler<K> for MapFn<K, F>
where
    F: Fn(&K) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = Request>,
{
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        (self.map)(object).into_iter().for_each(enqueue);
    }
}

// === impl Funcs ===

type RequestsFn<K> = Box<dyn Fn(&K, &mut dyn FnMut(Request)) + Send + Sync>;
type UpdateRequestsFn<K> = Box<dyn Fn(&K, &K, &mut dyn FnMut(Request)) + Send + Sync>;

/// An [`EventHandler`] made of closures (controller-runtime's `handler.Funcs`), built by
/// [`from_fns`]: one for the object of a create or delete, and optionally one for updates
/// (by default an update runs the first closure on the old and on the new object).
///
/// ```
/// use ferrokube_runtime::handler::{self, EventHandler};
/// use ferrokube_runtime::reconcile::Request;
/// use k8s_openapi::api::core::v1::Node;
///
/// // Reconcile the singleton "cluster-config" when nodes come and go, not when they change.
/// let handler = handler::from_fns(|_node: &Node, enqueue| enqueue(Request::cluster("cluster-config")))
///     .on_update(|_old, _new, _enqueue| {});
/// let mut requests = Vec::new();
/// handler.update_requests(&Node::default(), &Node::default(), &mut |r| requests.push(r));
/// assert!(requests.is_empty());
/// ```
pub struct Funcs<K> {
    requests: RequestsFn<K>,
    update: Option<UpdateRequestsFn<K>>,
}

/// A [`Funcs`] handler that calls `requests` for the object of each event (both objects of an
/// update, until [`Funcs::on_update`] says otherwise).
#[must_use]
pub fn from_fns<K, F>(requests: F) -> Funcs<K>
where
    F: Fn(&K, &mut dyn FnMut(Request)) + Send + Sync + 'static,
{
    Funcs {
        requests: Box::new(requests),
        update: None,
    }
}

impl<K> Funcs<K> {
    /// Decides the requests of updates (old, new, enqueue).
    #[must_use]
    pub fn on_update(
        mut self,
        update: impl Fn(&K, &K, &mut dyn FnMut(Request)) + Send + Sync + 'static,
    ) -> Self {
        self.update = Some(Box::new(update));
        self
    }
}

impl<K> fmt::Debug for Funcs<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Funcs")
            .field("update", &self.update.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: 'static> EventHandler<K> for Funcs<K> {
    fn requests(&self, object: &K, enqueue: &mut dyn FnMut(Request)) {
        (self.requests)(object, enqueue);
    }

    fn update_requests(&self, old: &K, new: &K, enqueue: &mut dyn FnMut(Request)) {
        match &self.update {
            Some(update) => update(old, new, enqueue),
            None => {
                (self.requests)(old, enqueue);
                (self.requests)(new, enqueue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
    use kube::core::{DynamicObject, PartialObjectMeta, PartialObjectMetaExt};

    fn owner(
        api_version: &str,
        kind: &str,
        name: &str,
        controller: Option<bool>,
    ) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller,
            block_owner_deletion: None,
        }
    }

    fn pod(namespace: Option<&str>, owners: Vec<OwnerReference>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = namespace.map(Into::into);
        pod.metadata.owner_references = Some(owners);
        pod
    }

    fn requests<K, H: EventHandler<K>>(handler: &H, object: &K) -> Vec<Request> {
        let mut out = Vec::new();
        handler.requests(object, &mut |r| out.push(r));
        out
    }

    fn update_requests<K, H: EventHandler<K>>(handler: &H, old: &K, new: &K) -> Vec<Request> {
        let mut out = Vec::new();
        handler.update_requests(old, new, &mut |r| out.push(r));
        out
    }

    #[test]
    fn enqueue_for_object_enqueues_the_object() {
        let h = EnqueueRequestForObject;
        let p = pod(Some("ns"), Vec::new());
        assert_eq!(requests(&h, &p), [Request::namespaced("ns", "p")]);
        let mut node_like = Namespace::default();
        node_like.metadata.name = Some("kube-system".into());
        assert_eq!(requests(&h, &node_like), [Request::cluster("kube-system")]);
        let mut renamed = p.clone();
        renamed.metadata.name = Some("q".into());
        assert_eq!(
            update_requests(&h, &p, &renamed),
            [Request::namespaced("ns", "q")],
            "updates enqueue the new object only"
        );
    }

    #[test]
    fn owners_match_by_group_and_kind_ignoring_version() {
        let h = enqueue_owner::<Deployment>();
        assert_eq!((h.group(), h.kind()), ("apps", "Deployment"));
        assert!(!h.is_cluster_scoped() && !h.is_only_controller());
        let p = pod(
            Some("ns"),
            vec![
                owner("apps/v1", "Deployment", "current", None),
                owner("apps/v1beta2", "Deployment", "old-version", Some(false)),
                owner("extensions/v1beta1", "Deployment", "other-group", None),
                owner("apps/v1", "ReplicaSet", "other-kind", None),
                owner("v1", "Deployment", "core-group", None),
                owner("apps/v1/x", "Deployment", "invalid", None),
                owner("apps/v1", "Deployment", "current", None),
            ],
        );
        assert_eq!(
            requests(&h, &p),
            [
                Request::namespaced("ns", "current"),
                Request::namespaced("ns", "old-version"),
            ]
        );
        assert!(requests(&h, &pod(Some("ns"), Vec::new())).is_empty());
        assert!(
            requests(&h, &Pod::default()).is_empty(),
            "no owner references"
        );
    }

    #[test]
    fn core_group_owners_match_v1() {
        let h = enqueue_owner::<ConfigMap>();
        let p = pod(
            Some("ns"),
            vec![
                owner("v1", "ConfigMap", "core", None),
                owner("example.com/v1", "ConfigMap", "impostor", None),
            ],
        );
        assert_eq!(requests(&h, &p), [Request::namespaced("ns", "core")]);
    }

    #[test]
    fn only_controller_follows_the_first_controller_reference() {
        let h = enqueue_controller_owner::<ReplicaSet>();
        assert!(h.is_only_controller());
        let p = pod(
            Some("ns"),
            vec![
                owner("apps/v1", "ReplicaSet", "not-controller", Some(false)),
                owner("apps/v1", "ReplicaSet", "unset", None),
                owner("apps/v1", "ReplicaSet", "controller", Some(true)),
                owner("apps/v1", "ReplicaSet", "second-controller", Some(true)),
            ],
        );
        assert_eq!(requests(&h, &p), [Request::namespaced("ns", "controller")]);
        // The controller is another kind: nothing, even though a ReplicaSet owns the pod too.
        let p = pod(
            Some("ns"),
            vec![
                owner("apps/v1", "ReplicaSet", "owner", None),
                owner("batch/v1", "Job", "job", Some(true)),
                owner("apps/v1", "ReplicaSet", "later", Some(true)),
            ],
        );
        assert!(requests(&h, &p).is_empty());
        assert_eq!(requests(&enqueue_owner::<ReplicaSet>(), &p).len(), 2);
    }

    #[test]
    fn cluster_scoped_owners_have_no_namespace() {
        let h = enqueue_owner::<Namespace>();
        assert!(h.is_cluster_scoped());
        let p = pod(Some("ns"), vec![owner("v1", "Namespace", "ns", Some(true))]);
        assert_eq!(requests(&h, &p), [Request::cluster("ns")]);
        // PartialObjectMeta keeps its type's scope.
        let h = enqueue_owner::<PartialObjectMeta<Namespace>>();
        assert!(h.is_cluster_scoped() && h.kind() == "Namespace");
        assert!(!enqueue_owner::<PartialObjectMeta<Pod>>().is_cluster_scoped());
    }

    #[test]
    fn dynamic_owners() {
        let widget = ApiResource {
            group: "example.com".into(),
            version: "v2".into(),
            api_version: "example.com/v2".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        let refs = vec![
            owner("example.com/v1", "Widget", "w", Some(true)),
            owner("example.com/v1", "Gadget", "g", Some(true)),
        ];
        let namespaced = enqueue_owner_dyn(widget.clone(), false);
        assert_eq!(
            requests(&namespaced, &pod(Some("ns"), refs.clone())),
            [Request::namespaced("ns", "w")]
        );
        let cluster = enqueue_owner_dyn(widget.clone(), true).only_controller();
        assert_eq!(
            requests(&cluster, &pod(Some("ns"), refs.clone())),
            [Request::cluster("w")]
        );
        // The owned object may be dynamic too.
        let mut owned = DynamicObject::new("child", &widget).within("ns");
        owned.metadata.owner_references = Some(refs);
        assert_eq!(
            requests(&namespaced, &owned),
            [Request::namespaced("ns", "w")]
        );
    }

    #[test]
    fn updates_enqueue_old_and_new_owners_once() {
        let h = enqueue_controller_owner::<ReplicaSet>();
        let old = pod(
            Some("ns"),
            vec![owner("apps/v1", "ReplicaSet", "a", Some(true))],
        );
        let new = pod(
            Some("ns"),
            vec![owner("apps/v1", "ReplicaSet", "b", Some(true))],
        );
        assert_eq!(
            update_requests(&h, &old, &new),
            [
                Request::namespaced("ns", "a"),
                Request::namespaced("ns", "b")
            ]
        );
        assert_eq!(
            update_requests(&h, &old, &old),
            [Request::namespaced("ns", "a")],
            "resync"
        );
        let orphaned = pod(Some("ns"), Vec::new());
        assert_eq!(
            update_requests(&h, &old, &orphaned),
            [Request::namespaced("ns", "a")]
        );
    }

    #[test]
    fn map_fn_maps_each_object() {
        let h = map_fn(|cm: &ConfigMap| {
            cm.metadata
                .labels
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("widget/"))
                .map(|(_, v)| Request::namespaced("widgets", v.clone()))
                .collect::<Vec<_>>()
        });
        let mut cm = ConfigMap::default();
        assert!(requests(&h, &cm).is_empty());
        cm.metadata.labels = Some(
            [("widget/a", "one"), ("widget/b", "two"), ("app", "x")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        );
        assert_eq!(
            requests(&h, &cm),
            [
                Request::namespaced("widgets", "one"),
                Request::namespaced("widgets", "two")
            ]
        );
        assert_eq!(
            update_requests(&h, &ConfigMap::default(), &cm),
            [
                Request::namespaced("widgets", "one"),
                Request::namespaced("widgets", "two")
            ],
            "both sides of an update"
        );
        let mut old = cm.clone();
        old.metadata.labels = Some([("widget/a".to_owned(), "zero".to_owned())].into());
        assert_eq!(update_requests(&h, &old, &cm).len(), 3);

        let single = map_fn(|_: &ConfigMap| Some(Request::cluster("singleton")));
        assert_eq!(requests(&single, &cm), [Request::cluster("singleton")]);
    }

    #[test]
    fn funcs_handler() {
        let h = from_fns(|cm: &ConfigMap, enqueue| {
            if let Some(name) = &cm.metadata.name {
                enqueue(Request::cluster(name.clone()));
            }
        });
        let mut a = ConfigMap::default();
        a.metadata.name = Some("a".into());
        let mut b = a.clone();
        b.metadata.name = Some("b".into());
        assert_eq!(requests(&h, &a), [Request::cluster("a")]);
        assert_eq!(
            update_requests(&h, &a, &b),
            [Request::cluster("a"), Request::cluster("b")]
        );
        let h = h.on_update(|_, new, enqueue| enqueue(Request::for_object(new)));
        assert_eq!(update_requests(&h, &a, &b), [Request::cluster("b")]);
        assert_eq!(requests(&h, &a), [Request::cluster("a")]);
    }

    #[test]
    fn boxed_and_shared_handlers_delegate_updates() {
        let boxed: Box<dyn EventHandler<Pod>> = Box::new(EnqueueRequestForObject);
        let shared = Arc::new(enqueue_owner::<ReplicaSet>());
        let old = pod(Some("ns"), vec![owner("apps/v1", "ReplicaSet", "a", None)]);
        let mut new = pod(Some("ns"), vec![owner("apps/v1", "ReplicaSet", "a", None)]);
        new.metadata.name = Some("q".into());
        assert_eq!(
            update_requests(&boxed, &old, &new),
            [Request::namespaced("ns", "q")]
        );
        assert_eq!(
            update_requests(&shared, &old, &new),
            [Request::namespaced("ns", "a")]
        );
        let meta = new.metadata.clone().into_response_partial::<Pod>();
        assert_eq!(
            requests(&EnqueueRequestForObject, &meta),
            [Request::namespaced("ns", "q")]
        );
    }
}
