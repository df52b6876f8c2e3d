//! The metadata predicates as [`EventFilter`](crate::controller::EventFilter)s.

use super::*;

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
