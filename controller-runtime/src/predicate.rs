//! Which events reach a controller's handler (controller-runtime's `pkg/predicate`).
//!
//! A [`Predicate`] looks at each create, update and delete of a watched object and says
//! whether the event goes on to the [handler](crate::handler); an event any predicate rejects
//! enqueues nothing. Predicates filter events only: the cache still holds every object.
//!
//! | predicate | lets through |
//! |---|---|
//! | [`generation_changed`] | updates that change `metadata.generation` (spec writes) |
//! | [`resource_version_changed`] | updates that change `metadata.resourceVersion` (not resyncs) |
//! | [`labels_changed`] / [`annotations_changed`] | updates that change the labels / annotations |
//! | [`label_selector`] / [`label_selector_from`] | events for objects whose labels match |
//! | [`from_fn`] / [`from_fns`] | what your closures say |
//! | [`and`], [`or`], [`not`], [`all`], [`any`] and [`PredicateExt`] | combinations |
//!
//! The built-in update predicates let every create and delete through, as controller-runtime's do.
//! The metadata predicates ([`generation_changed`], [`resource_version_changed`],
//! [`labels_changed`], [`annotations_changed`], [`label_selector`]) and their [`and`] / [`or`] /
//! [`not`] are also [`EventFilter`](crate::controller::EventFilter)s, which filter every watch
//! of a controller whatever its type (`Builder::with_event_filter`).
//!
//! ```
//! use ferrokube_runtime::predicate::{self, Predicate, PredicateExt};
//! use k8s_openapi::api::apps::v1::Deployment;
//!
//! // Reconcile on spec changes, or when someone edits the annotations.
//! let filter = predicate::generation_changed().or(predicate::annotations_changed());
//!
//! let mut old = Deployment::default();
//! old.metadata.generation = Some(1);
//! let mut new = old.clone();
//! new.metadata.resource_version = Some("2".into()); // a status write
//! assert!(!filter.update(&old, &new));
//! new.metadata.generation = Some(2); // a spec write
//! assert!(filter.update(&old, &new));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;

// Not `use`d by name: a type implementing both traits would make `.create(..)` ambiguous.
use crate::controller;

use crate::informer::labels::Selector;

/// Filters events before they reach the handler (controller-runtime's `predicate.Predicate`).
///
/// Every method defaults to letting the event through, so a predicate implements only the
/// events it filters. Objects are borrowed from the cache: never clone them to decide.
///
/// Resyncs deliver updates whose old and new objects are the same; predicates that compare the
/// two (like [`generation_changed`]) reject them.
pub trait Predicate<K>: Send + Sync + 'static {
    /// Whether the creation (or first sight, on the initial list) of `object` goes on.
    fn create(&self, object: &K) -> bool {
        let _ = object;
        true
    }

    /// Whether an update from `old` to `new` goes on.
    fn update(&self, old: &K, new: &K) -> bool {
        let _ = (old, new);
        true
    }

    /// Whether the deletion of `object` (its last known state) goes on.
    fn delete(&self, object: &K) -> bool {
        let _ = object;
        true
    }
}

impl<K, P: Predicate<K> + ?Sized> Predicate<K> for Arc<P> {
    fn create(&self, object: &K) -> bool {
        (**self).create(object)
    }

    fn update(&self, old: &K, new: &K) -> bool {
        (**self).update(old, new)
    }

    fn delete(&self, object: &K) -> bool {
        (**self).delete(object)
    }
}

impl<K, P: Predicate<K> + ?Sized> Predicate<K> for Box<P> {
    fn create(&self, object: &K) -> bool {
        (**self).create(object)
    }

    fn update(&self, old: &K, new: &K) -> bool {
        (**self).update(old, new)
    }

    fn delete(&self, object: &K) -> bool {
        (**self).delete(object)
    }
}

// === metadata changes ===

/// The [`Predicate`] of [`generation_changed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerationChanged;

/// Lets an update through only when `metadata.generation` differs between the old and the new
/// object (controller-runtime's `GenerationChangedPredicate`); creates and deletes pass.
///
/// The API server bumps the generation on writes to the spec, not to the status or (for most
/// types) the metadata, so this skips the controller's own status writes and resyncs. An unset
/// generation counts as 0, as Go's `GetGeneration` reads it: types that never set one (a
/// `ConfigMap`) have every update rejected. Caveats, as in controller-runtime: some built-in
/// types also bump the generation on other writes (a `Deployment`'s annotations), and a
/// controller that filters this way does not repair a status someone else overwrote.
#[must_use]
pub fn generation_changed() -> GenerationChanged {
    GenerationChanged
}

impl<K: Resource> Predicate<K> for GenerationChanged {
    fn update(&self, old: &K, new: &K) -> bool {
        controller::EventFilter::update(self, old.meta(), new.meta())
    }
}

/// The [`Predicate`] of [`resource_version_changed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceVersionChanged;

/// Lets an update through only when `metadata.resourceVersion` differs (controller-runtime's
/// `ResourceVersionChangedPredicate`): every real write passes, resyncs do not. Creates and
/// deletes pass; an unset resource version counts as `""`.
#[must_use]
pub fn resource_version_changed() -> ResourceVersionChanged {
    ResourceVersionChanged
}

impl<K: Resource> Predicate<K> for ResourceVersionChanged {
    fn update(&self, old: &K, new: &K) -> bool {
        controller::EventFilter::update(self, old.meta(), new.meta())
    }
}

/// The [`Predicate`] of [`labels_changed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelsChanged;

/// Lets an update through only when the labels differ (controller-runtime's
/// `LabelChangedPredicate`); creates and deletes pass. No labels and an empty map are equal.
#[must_use]
pub fn labels_changed() -> LabelsChanged {
    LabelsChanged
}

impl<K: Resource> Predicate<K> for LabelsChanged {
    fn update(&self, old: &K, new: &K) -> bool {
        controller::EventFilter::update(self, old.meta(), new.meta())
    }
}

/// The [`Predicate`] of [`annotations_changed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnotationsChanged;

/// Lets an update through only when the annotations differ (controller-runtime's
/// `AnnotationChangedPredicate`); creates and deletes pass. No annotations and an empty map are
/// equal.
#[must_use]
pub fn annotations_changed() -> AnnotationsChanged {
    AnnotationsChanged
}

impl<K: Resource> Predicate<K> for AnnotationsChanged {
    fn update(&self, old: &K, new: &K) -> bool {
        controller::EventFilter::update(self, old.meta(), new.meta())
    }
}

/// Go's `maps.Equal` on label maps: a nil map equals an empty one.
fn maps_equal(a: Option<&BTreeMap<String, String>>, b: Option<&BTreeMap<String, String>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (Some(m), None) | (None, Some(m)) => m.is_empty(),
        (None, None) => true,
    }
}

// === label selectors ===

mod selector;

pub use selector::{Error, to_selector};

/// The [`Predicate`] of [`label_selector`]: events for objects whose labels match a selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchingLabels {
    selector: Selector,
}

/// Lets through the events of objects whose labels match `selector` (controller-runtime's
/// `LabelSelectorPredicate`): creates and deletes by the object's labels, updates by the new
/// object's labels. The empty selector matches everything.
///
/// ```
/// use ferrokube_runtime::informer::labels::Selector;
/// use ferrokube_runtime::predicate::{self, Predicate};
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let selector = Selector::parse("app=web,tier notin (db)")?;
/// let only_web = predicate::label_selector(selector);
/// let mut cm = ConfigMap::default();
/// assert!(!only_web.create(&cm));
/// cm.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
/// assert!(only_web.create(&cm));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn label_selector(selector: Selector) -> MatchingLabels {
    MatchingLabels { selector }
}

/// [`label_selector`] for a Kubernetes `LabelSelector` (`matchLabels` and `matchExpressions`,
/// as in a Deployment's `spec.selector`), converted with [`to_selector`].
///
/// ```
/// use ferrokube_runtime::predicate;
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
///
/// let selector = LabelSelector {
///     match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
///     match_expressions: Some(vec![LabelSelectorRequirement {
///         key: "tier".into(),
///         operator: "In".into(),
///         values: Some(vec!["front".into(), "edge".into()]),
///     }]),
/// };
/// let filter = predicate::label_selector_from(&selector)?;
/// # let _ = filter;
/// # Ok::<(), predicate::Error>(())
/// ```
pub fn label_selector_from(selector: &LabelSelector) -> Result<MatchingLabels, Error> {
    to_selector(selector).map(label_selector)
}

impl MatchingLabels {
    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
}

impl TryFrom<&LabelSelector> for MatchingLabels {
    type Error = Error;

    fn try_from(selector: &LabelSelector) -> Result<Self, Error> {
        label_selector_from(selector)
    }
}

impl<K: Resource> Predicate<K> for MatchingLabels {
    fn create(&self, object: &K) -> bool {
        controller::EventFilter::create(self, object.meta())
    }

    fn update(&self, old: &K, new: &K) -> bool {
        controller::EventFilter::update(self, old.meta(), new.meta())
    }

    fn delete(&self, object: &K) -> bool {
        controller::EventFilter::delete(self, object.meta())
    }
}

// === closures ===

/// The [`Predicate`] of [`from_fn`].
pub struct FromFn<K, F> {
    filter: F,
    _object: PhantomData<fn(&K)>,
}

/// A [`Predicate`] that asks `filter` about the object of a create or delete and about the new
/// object of an update (controller-runtime's `NewPredicateFuncs`).
///
/// ```
/// use ferrokube_runtime::predicate::{self, Predicate};
/// use k8s_openapi::api::core::v1::Pod;
///
/// let not_terminating = predicate::from_fn(|pod: &Pod| pod.metadata.deletion_timestamp.is_none());
/// assert!(not_terminating.create(&Pod::default()));
/// ```
#[must_use]
pub fn from_fn<K, F>(filter: F) -> FromFn<K, F>
where
    F: Fn(&K) -> bool + Send + Sync + 'static,
{
    FromFn {
        filter,
        _object: PhantomData,
    }
}

impl<K, F: Clone> Clone for FromFn<K, F> {
    fn clone(&self) -> Self {
        Self {
            filter: self.filter.clone(),
            _object: PhantomData,
        }
    }
}

impl<K, F> fmt::Debug for FromFn<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

impl<K: 'static, F> Predicate<K> for FromFn<K, F>
where
    F: Fn(&K) -> bool + Send + Sync + 'static,
{
    fn create(&self, object: &K) -> bool {
        (self.filter)(object)
    }

    fn update(&self, _old: &K, new: &K) -> bool {
        (self.filter)(new)
    }

    fn delete(&self, object: &K) -> bool {
        (self.filter)(object)
    }
}

type ObjectFn<K> = Box<dyn Fn(&K) -> bool + Send + Sync>;
type UpdateFn<K> = Box<dyn Fn(&K, &K) -> bool + Send + Sync>;

/// A [`Predicate`] made of one closure per event (controller-runtime's `predicate.Funcs`);
/// events without a closure pass. Built by [`from_fns`].
///
/// ```
/// use ferrokube_runtime::predicate::{self, Predicate};
/// use k8s_openapi::api::core::v1::Secret;
///
/// // Ignore deletes; reconcile updates only when the data changed.
/// let filter = predicate::from_fns::<Secret>()
///     .on_update(|old, new| old.data != new.data)
///     .on_delete(|_| false);
/// assert!(filter.create(&Secret::default()));
/// assert!(!filter.delete(&Secret::default()));
/// ```
pub struct Funcs<K> {
    create: Option<ObjectFn<K>>,
    update: Option<UpdateFn<K>>,
    delete: Option<ObjectFn<K>>,
}

/// A [`Funcs`] that lets everything through until closures are set.
#[must_use]
pub fn from_fns<K>() -> Funcs<K> {
    Funcs::default()
}

impl<K> Default for Funcs<K> {
    fn default() -> Self {
        Self {
            create: None,
            update: None,
            delete: None,
        }
    }
}

impl<K> Funcs<K> {
    /// Decides creates.
    #[must_use]
    pub fn on_create(mut self, f: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        self.create = Some(Box::new(f));
        self
    }

    /// Decides updates (old, new).
    #[must_use]
    pub fn on_update(mut self, f: impl Fn(&K, &K) -> bool + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }

    /// Decides deletes.
    #[must_use]
    pub fn on_delete(mut self, f: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<K> fmt::Debug for Funcs<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Funcs")
            .field("create", &self.create.is_some())
            .field("update", &self.update.is_some())
            .field("delete", &self.delete.is_some())
            .finish()
    }
}

impl<K: 'static> Predicate<K> for Funcs<K> {
    fn create(&self, object: &K) -> bool {
        self.create.as_ref().is_none_or(|f| f(object))
    }

    fn update(&self, old: &K, new: &K) -> bool {
        self.update.as_ref().is_none_or(|f| f(old, new))
    }

    fn delete(&self, object: &K) -> bool {
        self.delete.as_ref().is_none_or(|f| f(object))
    }
}

// === combinators ===

/// The predicate of [`and`]: both must pass (the second is asked only if the first passes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct And<A, B>(A, B);

/// The predicate of [`or`]: either must pass (the second is asked only if the first fails).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Or<A, B>(A, B);

/// The predicate of [`not`]: passes what the inner predicate rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Not<P>(P);

/// Lets an event through when both `a` and `b` do (controller-runtime's `predicate.And`).
///
/// A [`Predicate<K>`] when both are, an [`EventFilter`](controller::EventFilter) when
/// both are.
#[must_use]
pub fn and<A, B>(a: A, b: B) -> And<A, B> {
    And(a, b)
}

/// Lets an event through when `a` or `b` does (controller-runtime's `predicate.Or`).
///
/// A [`Predicate<K>`] when both are, an [`EventFilter`](controller::EventFilter) when
/// both are.
#[must_use]
pub fn or<A, B>(a: A, b: B) -> Or<A, B> {
    Or(a, b)
}

/// Lets an event through when `predicate` does not (controller-runtime's `predicate.Not`).
///
/// Beware with the update predicates: `not(generation_changed())` also rejects every create
/// and delete, which `generation_changed()` lets through.
#[must_use]
pub fn not<P>(predicate: P) -> Not<P> {
    Not(predicate)
}

impl<K, A: Predicate<K>, B: Predicate<K>> Predicate<K> for And<A, B> {
    fn create(&self, object: &K) -> bool {
        self.0.create(object) && self.1.create(object)
    }

    fn update(&self, old: &K, new: &K) -> bool {
        self.0.update(old, new) && self.1.update(old, new)
    }

    fn delete(&self, object: &K) -> bool {
        self.0.delete(object) && self.1.delete(object)
    }
}

impl<K, A: Predicate<K>, B: Predicate<K>> Predicate<K> for Or<A, B> {
    fn create(&self, object: &K) -> bool {
        self.0.create(object) || self.1.create(object)
    }

    fn update(&self, old: &K, new: &K) -> bool {
        self.0.update(old, new) || self.1.update(old, new)
    }

    fn delete(&self, object: &K) -> bool {
        self.0.delete(object) || self.1.delete(object)
    }
}

impl<K, P: Predicate<K>> Predicate<K> for Not<P> {
    fn create(&self, object: &K) -> bool {
        !self.0.create(object)
    }

    fn update(&self, old: &K, new: &K) -> bool {
        !self.0.update(old, new)
    }

    fn delete(&self, object: &K) -> bool {
        !self.0.delete(object)
    }
}

/// The [`Predicate`] of [`all`].
pub struct All<K> {
    predicates: Vec<Box<dyn Predicate<K>>>,
}

/// The [`Predicate`] of [`any`].
pub struct Any<K> {
    predicates: Vec<Box<dyn Predicate<K>>>,
}

/// Lets an event through when every predicate does, asking them in order until one rejects it
/// (controller-runtime's `predicate.And` of many). No predicates let everything through.
#[must_use]
pub fn all<K>(predicates: Vec<Box<dyn Predicate<K>>>) -> All<K> {
    All { predicates }
}

/// Lets an event through when some predicate does, asking them in order until one passes it
/// (controller-runtime's `predicate.Or` of many). No predicates let nothing through.
#[must_use]
pub fn any<K>(predicates: Vec<Box<dyn Predicate<K>>>) -> Any<K> {
    Any { predicates }
}

impl<K: 'static> Predicate<K> for All<K> {
    fn create(&self, object: &K) -> bool {
        self.predicates.iter().all(|p| p.create(object))
    }

    fn update(&self, old: &K, new: &K) -> bool {
        self.predicates.iter().all(|p| p.update(old, new))
    }

    fn delete(&self, object: &K) -> bool {
        self.predicates.iter().all(|p| p.delete(object))
    }
}

impl<K: 'static> Predicate<K> for Any<K> {
    fn create(&self, object: &K) -> bool {
        self.predicates.iter().any(|p| p.create(object))
    }

    fn update(&self, old: &K, new: &K) -> bool {
        self.predicates.iter().any(|p| p.update(old, new))
    }

    fn delete(&self, object: &K) -> bool {
        self.predicates.iter().any(|p| p.delete(object))
    }
}

impl<K> fmt::Debug for All<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("All")
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

impl<K> fmt::Debug for Any<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Any")
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

/// [`and`], [`or`] and [`not`] as methods.
///
/// Implemented for this module's predicates and for `Box` / `Arc`; a predicate type of your own
/// gets the methods with an empty `impl PredicateExt for MyPredicate {}`. The trait is not
/// generic over the object type, so combining predicates that work for every type (like
/// [`generation_changed`]) needs no annotation: the object type is fixed where the result is
/// used.
///
/// ```
/// use ferrokube_runtime::predicate::{self, Predicate, PredicateExt};
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let filter = predicate::labels_changed()
///     .or(predicate::annotations_changed())
///     .and(predicate::from_fn(|cm: &ConfigMap| cm.metadata.name.as_deref() != Some("ignored")));
/// let cm = ConfigMap::default();
/// assert!(!filter.update(&cm, &cm));
/// ```
pub trait PredicateExt: Sized {
    /// Both this and `other` must pass ([`and`]).
    #[must_use]
    fn and<P>(self, other: P) -> And<Self, P> {
        and(self, other)
    }

    /// This or `other` must pass ([`or`]).
    #[must_use]
    fn or<P>(self, other: P) -> Or<Self, P> {
        or(self, other)
    }

    /// Passes what this rejects ([`not`]).
    #[must_use]
    fn not(self) -> Not<Self> {
        not(self)
    }

    /// This predicate, boxed (to put it in [`all`] or [`any`]).
    #[must_use]
    fn boxed<K>(self) -> Box<dyn Predicate<K>>
    where
        Self: Predicate<K>,
    {
        Box::new(self)
    }
}

impl PredicateExt for GenerationChanged {}
impl PredicateExt for ResourceVersionChanged {}
impl PredicateExt for LabelsChanged {}
impl PredicateExt for AnnotationsChanged {}
impl PredicateExt for MatchingLabels {}
impl<K, F> PredicateExt for FromFn<K, F> {}
impl<K> PredicateExt for Funcs<K> {}
impl<A, B> PredicateExt for And<A, B> {}
impl<A, B> PredicateExt for Or<A, B> {}
impl<P> PredicateExt for Not<P> {}
impl<K> PredicateExt for All<K> {}
impl<K> PredicateExt for Any<K> {}
impl<P: ?Sized> PredicateExt for Box<P> {}
impl<P: ?Sized> PredicateExt for Arc<P> {}

// === event filters ===

// The metadata predicates and their combinations filter every watch of a controller
// (`Builder::with_event_filter`), whatever its object type.

impl controller::EventFilter for GenerationChanged {
    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        old.generation.unwrap_or(0) != new.generation.unwrap_or(0)
    }
}

impl controller::EventFilter for ResourceVersionChanged {
    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        old.resource_version.as_deref().unwrap_or("")
            != new.resource_version.as_deref().unwrap_or("")
    }
}

impl controller::EventFilter for LabelsChanged {
    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        !maps_equal(old.labels.as_ref(), new.labels.as_ref())
    }
}

impl controller::EventFilter for AnnotationsChanged {
    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        !maps_equal(old.annotations.as_ref(), new.annotations.as_ref())
    }
}

impl controller::EventFilter for MatchingLabels {
    fn create(&self, meta: &ObjectMeta) -> bool {
        self.selector.matches(meta.labels.as_ref())
    }

    fn update(&self, _old: &ObjectMeta, new: &ObjectMeta) -> bool {
        self.selector.matches(new.labels.as_ref())
    }

    fn delete(&self, meta: &ObjectMeta) -> bool {
        self.selector.matches(meta.labels.as_ref())
    }
}

impl<A, B> controller::EventFilter for And<A, B>
where
    A: controller::EventFilter,
    B: controller::EventFilter,
{
    fn create(&self, meta: &ObjectMeta) -> bool {
        self.0.create(meta) && self.1.create(meta)
    }

    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        self.0.update(old, new) && self.1.update(old, new)
    }

    fn delete(&self, meta: &ObjectMeta) -> bool {
        self.0.delete(meta) && self.1.delete(meta)
    }
}

impl<A, B> controller::EventFilter for Or<A, B>
where
    A: controller::EventFilter,
    B: controller::EventFilter,
{
    fn create(&self, meta: &ObjectMeta) -> bool {
        self.0.create(meta) || self.1.create(meta)
    }

    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        self.0.update(old, new) || self.1.update(old, new)
    }

    fn delete(&self, meta: &ObjectMeta) -> bool {
        self.0.delete(meta) || self.1.delete(meta)
    }
}

impl<P: controller::EventFilter> controller::EventFilter for Not<P> {
    fn create(&self, meta: &ObjectMeta) -> bool {
        !self.0.create(meta)
    }

    fn update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        !self.0.update(old, new)
    }

    fn delete(&self, meta: &ObjectMeta) -> bool {
        !self.0.delete(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::{ApiResource, DynamicObject, PartialObjectMetaExt};

    fn cm(generation: Option<i64>, rv: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("cm".into());
        cm.metadata.namespace = Some("default".into());
        cm.metadata.generation = generation;
        cm.metadata.resource_version = Some(rv.into());
        cm
    }

    fn with_labels(pairs: &[(&str, &str)]) -> ConfigMap {
        let mut cm = cm(Some(1), "1");
        cm.metadata.labels = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        cm
    }

    fn with_annotations(pairs: &[(&str, &str)]) -> ConfigMap {
        let mut cm = cm(Some(1), "1");
        cm.metadata.annotations = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        cm
    }

    /// Asserts create and delete pass (the update predicates' contract).
    fn passes_create_and_delete<P: Predicate<ConfigMap>>(p: &P) {
        let o = cm(None, "");
        assert!(p.create(&o));
        assert!(p.delete(&o));
    }

    #[test]
    fn generation_changed_passes_spec_changes_only() {
        let p = generation_changed();
        passes_create_and_delete(&p);
        let old = cm(Some(1), "10");
        assert!(p.update(&old, &cm(Some(2), "11")));
        assert!(!p.update(&old, &cm(Some(1), "11")), "status write");
        assert!(!p.update(&old, &old), "resync");
        assert!(!p.update(&cm(None, "1"), &cm(None, "2")), "no generation");
        assert!(!p.update(&cm(None, "1"), &cm(Some(0), "2")), "unset is 0");
        assert!(p.update(&cm(None, "1"), &cm(Some(1), "2")));
    }

    #[test]
    fn resource_version_changed_skips_resyncs() {
        let p = resource_version_changed();
        passes_create_and_delete(&p);
        let old = cm(Some(1), "10");
        assert!(p.update(&old, &cm(Some(1), "11")));
        assert!(!p.update(&old, &old), "resync");
        let mut unset = cm(Some(1), "");
        unset.metadata.resource_version = None;
        assert!(!p.update(&unset, &cm(Some(1), "")), "unset is \"\"");
        assert!(p.update(&unset, &old));
    }

    #[test]
    fn labels_changed_compares_label_maps() {
        let p = labels_changed();
        passes_create_and_delete(&p);
        let a = with_labels(&[("app", "web")]);
        assert!(!p.update(&a, &a), "resync");
        assert!(!p.update(&a, &with_labels(&[("app", "web")])));
        assert!(p.update(&a, &with_labels(&[("app", "db")])));
        assert!(p.update(&a, &with_labels(&[("app", "web"), ("x", "y")])));
        assert!(p.update(&a, &cm(Some(1), "1")), "labels removed");
        assert!(
            !p.update(&cm(Some(1), "1"), &with_labels(&[])),
            "none equals empty"
        );
        assert!(!p.update(&with_annotations(&[("a", "b")]), &cm(Some(1), "2")));
    }

    #[test]
    fn annotations_changed_compares_annotation_maps() {
        let p = annotations_changed();
        passes_create_and_delete(&p);
        let a = with_annotations(&[("note", "x")]);
        assert!(!p.update(&a, &a), "resync");
        assert!(p.update(&a, &with_annotations(&[("note", "y")])));
        assert!(p.update(&cm(Some(1), "1"), &a));
        assert!(!p.update(&cm(Some(1), "1"), &with_annotations(&[])));
        assert!(!p.update(&with_labels(&[("a", "b")]), &cm(Some(1), "2")));
    }

    #[test]
    fn label_selector_filters_all_events_by_labels() {
        let p = label_selector(Selector::parse("app=web").unwrap());
        let web = with_labels(&[("app", "web")]);
        let db = with_labels(&[("app", "db")]);
        let none = cm(Some(1), "1");
        assert!(p.create(&web) && p.delete(&web));
        assert!(!p.create(&db) && !p.delete(&db) && !p.create(&none));
        assert!(p.update(&db, &web), "the new object decides");
        assert!(!p.update(&web, &db));
        assert!(p.update(&web, &web));
        let everything = label_selector(Selector::everything());
        assert!(everything.create(&none) && everything.update(&none, &none));

        let from_k8s = label_selector_from(&LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: None,
        })
        .unwrap();
        assert_eq!(from_k8s, p);
        assert!(from_k8s.create(&web) && !from_k8s.create(&db));
        let invalid = LabelSelector {
            match_labels: Some([("app".to_owned(), "not valid".to_owned())].into()),
            match_expressions: None,
        };
        assert!(matches!(
            MatchingLabels::try_from(&invalid),
            Err(Error::InvalidValue { .. })
        ));
    }

    #[test]
    fn from_fn_asks_about_the_new_object_of_updates() {
        let p = from_fn(|cm: &ConfigMap| cm.metadata.generation == Some(2));
        let one = cm(Some(1), "1");
        let two = cm(Some(2), "2");
        assert!(!p.create(&one) && p.create(&two));
        assert!(!p.delete(&one) && p.delete(&two));
        assert!(p.update(&one, &two) && !p.update(&two, &one));
    }

    #[test]
    fn funcs_pass_events_without_a_closure() {
        let everything = from_fns::<ConfigMap>();
        let o = cm(Some(1), "1");
        assert!(everything.create(&o) && everything.update(&o, &o) && everything.delete(&o));

        let p = from_fns::<ConfigMap>()
            .on_create(|_| false)
            .on_update(|old, new| old.metadata.resource_version != new.metadata.resource_version);
        assert!(!p.create(&o));
        assert!(!p.update(&o, &o));
        assert!(p.update(&o, &cm(Some(1), "2")));
        assert!(p.delete(&o), "no delete closure");
        let p = p.on_delete(|_| false);
        assert!(!p.delete(&o));
        assert_eq!(
            format!("{p:?}"),
            "Funcs { create: true, update: true, delete: true }"
        );
    }

    fn yes() -> Funcs<ConfigMap> {
        from_fns()
    }

    fn no() -> Funcs<ConfigMap> {
        from_fns()
            .on_create(|_| false)
            .on_update(|_, _| false)
            .on_delete(|_| false)
    }

    fn check(p: &impl Predicate<ConfigMap>, expected: bool) {
        let o = cm(Some(1), "1");
        assert_eq!(p.create(&o), expected, "create");
        assert_eq!(p.update(&o, &o), expected, "update");
        assert_eq!(p.delete(&o), expected, "delete");
    }

    #[test]
    fn and_or_not_combine() {
        check(&and(yes(), yes()), true);
        check(&and(yes(), no()), false);
        check(&and(no(), yes()), false);
        check(&or(no(), no()), false);
        check(&or(no(), yes()), true);
        check(&or(yes(), no()), true);
        check(&not(yes()), false);
        check(&not(no()), true);
        check(&yes().and(no()), false);
        check(&no().or(yes()), true);
        check(&no().not(), true);
        check(&yes().and(yes()).and(no().not()), true);
    }

    #[test]
    fn combinators_short_circuit() {
        let panics = from_fns::<ConfigMap>()
            .on_create(|_| panic!("asked"))
            .on_update(|_, _| panic!("asked"))
            .on_delete(|_| panic!("asked"));
        let shared = Arc::new(panics);
        check(&and(no(), Arc::clone(&shared)), false);
        check(&or(yes(), Arc::clone(&shared)), true);
        check(
            &all(vec![no().boxed(), Box::new(Arc::clone(&shared))]),
            false,
        );
        check(&any(vec![yes().boxed(), Box::new(shared)]), true);
    }

    #[test]
    fn all_and_any_fold_many() {
        check(&all(vec![yes().boxed(), yes().boxed()]), true);
        check(&all(vec![yes().boxed(), no().boxed()]), false);
        check(&all::<ConfigMap>(Vec::new()), true);
        check(&any(vec![no().boxed(), yes().boxed()]), true);
        check(&any(vec![no().boxed(), no().boxed()]), false);
        check(&any::<ConfigMap>(Vec::new()), false);
    }

    #[test]
    fn combined_metadata_predicates_on_updates() {
        let p = generation_changed().or(labels_changed());
        let base = with_labels(&[("app", "web")]);
        assert!(!p.update(&base, &base), "resync");
        let mut relabeled = with_labels(&[("app", "db")]);
        relabeled.metadata.resource_version = Some("2".into());
        assert!(p.update(&base, &relabeled));
        let mut bumped = base.clone();
        bumped.metadata.generation = Some(2);
        assert!(p.update(&base, &bumped));
        // `not` of an update predicate also flips creates and deletes.
        let n = not(generation_changed());
        assert!(!n.create(&base) && !n.delete(&base));
        assert!(n.update(&base, &base));
    }

    #[test]
    fn metadata_predicates_are_event_filters() {
        use crate::controller::EventFilter;

        let filter: Box<dyn EventFilter> = Box::new(
            generation_changed()
                .or(labels_changed())
                .and(not(label_selector(Selector::parse("skip").unwrap()))),
        );
        let base = with_labels(&[("app", "web")]).metadata;
        let mut bumped = base.clone();
        bumped.generation = Some(2);
        let mut relabeled = base.clone();
        relabeled.labels = Some([("app".to_owned(), "db".to_owned())].into());
        let mut skipped = bumped.clone();
        skipped.labels = Some([("skip".to_owned(), String::new())].into());
        assert!(EventFilter::create(&*filter, &base));
        assert!(!EventFilter::create(&*filter, &skipped));
        assert!(!EventFilter::update(&*filter, &base, &base), "resync");
        assert!(EventFilter::update(&*filter, &base, &bumped));
        assert!(EventFilter::update(&*filter, &base, &relabeled));
        assert!(!EventFilter::update(&*filter, &base, &skipped));
        assert!(EventFilter::delete(&*filter, &base));
        assert!(!EventFilter::delete(&*filter, &skipped));

        let rv: &dyn EventFilter = &resource_version_changed();
        let mut rv2 = base.clone();
        rv2.resource_version = Some("2".into());
        assert!(!rv.update(&base, &base) && rv.update(&base, &rv2));
        let annotations: &dyn EventFilter = &annotations_changed();
        let mut annotated = base.clone();
        annotated.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        assert!(!annotations.update(&base, &base) && annotations.update(&base, &annotated));
    }

    #[test]
    fn predicates_work_for_dynamic_and_metadata_objects() {
        let ar = ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        let mut old = DynamicObject::new("w", &ar);
        old.metadata.generation = Some(1);
        let mut new = old.clone();
        new.metadata.generation = Some(2);
        let p: Box<dyn Predicate<DynamicObject>> = generation_changed().boxed();
        assert!(p.update(&old, &new) && !p.update(&old, &old));

        let meta = with_labels(&[("app", "web")])
            .metadata
            .into_response_partial::<ConfigMap>();
        let p = label_selector(Selector::parse("app").unwrap()).and(labels_changed());
        assert!(p.create(&meta) && !p.update(&meta, &meta));
    }
}
