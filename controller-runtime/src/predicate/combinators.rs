//! and / or / not / all / any, and [`PredicateExt`].

use super::*;

// === combinators ===

/// The predicate of [`and`]: both must pass (the second is asked only if the first passes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct And<A, B>(pub(super) A, pub(super) B);

/// The predicate of [`or`]: either must pass (the second is asked only if the first fails).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Or<A, B>(pub(super) A, pub(super) B);

/// The predicate of [`not`]: passes what the inner predicate rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Not<P>(pub(super) P);

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
