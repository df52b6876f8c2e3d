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

mod combinators;
mod filter;
#[cfg(test)]
mod tests;

pub use self::combinators::*;
