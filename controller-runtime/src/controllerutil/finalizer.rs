//! Finalizers: add, remove and look for a name in `metadata.finalizers`
//! (controller-runtime's `AddFinalizer`, `RemoveFinalizer`, `ContainsFinalizer`).

use kube::Resource;

/// Adds `finalizer` to `object`'s `metadata.finalizers` unless it is already there; true if
/// the list changed (then the object needs writing back).
///
/// ```
/// use ferrokube_runtime::controllerutil::{add_finalizer, contains_finalizer};
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let mut cm = ConfigMap::default();
/// assert!(add_finalizer(&mut cm, "example.com/cleanup"));
/// assert!(!add_finalizer(&mut cm, "example.com/cleanup"));
/// assert!(contains_finalizer(&cm, "example.com/cleanup"));
/// ```
pub fn add_finalizer<K: Resource>(object: &mut K, finalizer: &str) -> bool {
    let finalizers = object.meta_mut().finalizers.get_or_insert_default();
    if finalizers.iter().any(|f| f == finalizer) {
        return false;
    }
    finalizers.push(finalizer.to_owned());
    true
}

/// Removes every occurrence of `finalizer` from `object`'s `metadata.finalizers`; true if the
/// list changed. An emptied list becomes `None`, as the API server returns it, so that
/// adding then removing a finalizer leaves the object as it was.
///
/// ```
/// use ferrokube_runtime::controllerutil::{add_finalizer, remove_finalizer};
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let mut cm = ConfigMap::default();
/// add_finalizer(&mut cm, "example.com/cleanup");
/// assert!(remove_finalizer(&mut cm, "example.com/cleanup"));
/// assert!(!remove_finalizer(&mut cm, "example.com/cleanup"));
/// assert_eq!(cm, ConfigMap::default());
/// ```
pub fn remove_finalizer<K: Resource>(object: &mut K, finalizer: &str) -> bool {
    let meta = object.meta_mut();
    let Some(finalizers) = meta.finalizers.as_mut() else {
        return false;
    };
    let before = finalizers.len();
    finalizers.retain(|f| f != finalizer);
    let changed = finalizers.len() != before;
    if finalizers.is_empty() {
        meta.finalizers = None;
    }
    changed
}

/// Whether `object`'s `metadata.finalizers` holds `finalizer`.
pub fn contains_finalizer<K: Resource>(object: &K, finalizer: &str) -> bool {
    object
        .meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == finalizer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};

    fn finalizers<K: Resource>(object: &K) -> Vec<String> {
        object.meta().finalizers.clone().unwrap_or_default()
    }

    #[test]
    fn add_appends_once_and_keeps_order() {
        let mut cm = ConfigMap::default();
        assert!(add_finalizer(&mut cm, "a"));
        assert!(add_finalizer(&mut cm, "b"));
        assert!(!add_finalizer(&mut cm, "a"));
        assert_eq!(finalizers(&cm), ["a", "b"]);
        assert!(contains_finalizer(&cm, "a"));
        assert!(contains_finalizer(&cm, "b"));
        assert!(!contains_finalizer(&cm, "c"));
    }

    #[test]
    fn remove_takes_every_copy_and_keeps_the_others() {
        let mut ns = Namespace::default();
        ns.metadata.finalizers = Some(vec!["a".into(), "x".into(), "b".into(), "x".into()]);
        assert!(remove_finalizer(&mut ns, "x"));
        assert_eq!(finalizers(&ns), ["a", "b"]);
        assert!(!remove_finalizer(&mut ns, "x"));
        assert!(!contains_finalizer(&ns, "x"));
        assert_eq!(finalizers(&ns), ["a", "b"]);
    }

    #[test]
    fn removing_the_last_finalizer_leaves_none() {
        let mut cm = ConfigMap::default();
        assert!(!remove_finalizer(&mut cm, "a"));
        assert_eq!(cm.metadata.finalizers, None);
        add_finalizer(&mut cm, "a");
        assert!(remove_finalizer(&mut cm, "a"));
        assert_eq!(cm.metadata.finalizers, None);
        // An empty list from elsewhere is normalised too, and reported as unchanged.
        cm.metadata.finalizers = Some(Vec::new());
        assert!(!remove_finalizer(&mut cm, "a"));
        assert_eq!(cm.metadata.finalizers, None);
        assert!(!contains_finalizer(&cm, "a"));
    }

    #[test]
    fn dynamic_objects_have_finalizers_too() {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
        let mut widget = DynamicObject::new("w", &resource);
        assert!(add_finalizer(&mut widget, "example.com/cleanup"));
        assert!(contains_finalizer(&widget, "example.com/cleanup"));
        assert!(remove_finalizer(&mut widget, "example.com/cleanup"));
        assert!(!contains_finalizer(&widget, "example.com/cleanup"));
    }
}
