//! Owner references: who owns an object, and which owner is its controller
//! (controller-runtime's `SetControllerReference`, `SetOwnerReference`,
//! `RemoveOwnerReference`, `HasControllerReference`, `HasOwnerReference`,
//! `RemoveControllerReference`).
//!
//! Two references name the same owner when their API *group* (not version), kind and name
//! agree — as controller-runtime's `referSameObject` — so an owner read at `apps/v1` replaces a
//! reference written at `apps/v1beta1`.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::core::{ApiResource, DynamicObject};

use super::Error;
use crate::cache::is_cluster_scoped;

/// The owner's identity, whatever its Rust type.
struct Owner<'a> {
    api_version: Cow<'a, str>,
    kind: Cow<'a, str>,
    meta: &'a ObjectMeta,
    /// From the owner's type; `None` when the type does not say (dynamic types).
    cluster_scoped: Option<bool>,
}

impl<'a> Owner<'a> {
    fn new<O: Resource>(owner: &'a O, dt: &'a O::DynamicType) -> Self {
        Self {
            api_version: O::api_version(dt),
            kind: O::kind(dt),
            meta: owner.meta(),
            cluster_scoped: is_cluster_scoped::<O>(),
        }
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    /// A reference with no controller or blockOwnerDeletion flag, for matching.
    fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone().into_owned(),
            kind: self.kind.clone().into_owned(),
            name: self.name().to_owned(),
            uid: self.meta.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        }
    }

    fn incomplete(&self, missing: &'static str) -> Error {
        Error::IncompleteOwner {
            kind: self.kind.clone().into_owned(),
            name: self.name().to_owned(),
            missing,
        }
    }

    /// controller-runtime's `validateOwner`, plus: the owner must have a name and a uid (the
    /// API server refuses references without them).
    fn validate<K: Resource>(&self, object: &K) -> Result<(), Error> {
        if self.meta.name.as_deref().is_none_or(str::is_empty) {
            return Err(self.incomplete("metadata.name"));
        }
        if self.meta.uid.as_deref().is_none_or(str::is_empty) {
            return Err(self.incomplete("metadata.uid"));
        }
        let owner_namespace = non_empty(&self.meta.namespace);
        let owner_namespace = match self.cluster_scoped {
            Some(true) => None,
            Some(false) => {
                Some(owner_namespace.ok_or_else(|| self.incomplete("metadata.namespace"))?)
            }
            None => owner_namespace,
        };
        let Some(owner_namespace) = owner_namespace else {
            // A cluster-scoped owner may own anything.
            return Ok(());
        };
        let object_namespace = non_empty(&object.meta().namespace);
        let object_cluster_scoped = is_cluster_scoped::<K>().unwrap_or(object_namespace.is_none());
        if object_cluster_scoped {
            return Err(Error::ClusterScopedObjectWithNamespacedOwner {
                owner_namespace: owner_namespace.to_owned(),
            });
        }
        if object_namespace != Some(owner_namespace) {
            return Err(Error::CrossNamespaceOwner {
                owner_namespace: owner_namespace.to_owned(),
                object_namespace: object_namespace.map(str::to_owned),
            });
        }
        Ok(())
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The API group of an `apiVersion` (`""` for the core group's `v1`).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// controller-runtime's `referSameObject`: same group, kind and name (any version).
fn same_object(a: &OwnerReference, b: &OwnerReference) -> bool {
    group_of(&a.api_version) == group_of(&b.api_version) && a.kind == b.kind && a.name == b.name
}

fn is_controller(reference: &OwnerReference) -> bool {
    reference.controller == Some(true)
}

fn set_reference<K: Resource>(
    owner: &Owner<'_>,
    object: &mut K,
    controller: bool,
) -> Result<(), Error> {
    owner.validate(object)?;
    let mut reference = owner.reference();
    if controller {
        reference.controller = Some(true);
        reference.block_owner_deletion = Some(true);
        if let Some(existing) = controller_of(object)
            && !same_object(existing, &reference)
        {
            return Err(Error::AlreadyOwned {
                owner_kind: existing.kind.clone(),
                owner_name: existing.name.clone(),
            });
        }
    }
    let references = object.meta_mut().owner_references.get_or_insert_default();
    match references.iter_mut().find(|r| same_object(r, &reference)) {
        Some(existing) => *existing = reference,
        None => references.push(reference),
    }
    Ok(())
}

/// Removes the first reference to `owner` (if `only_controller`, only when it is the
/// controller); an emptied list becomes `None`.
fn remove_reference<K: Resource>(owner: &Owner<'_>, object: &mut K, only_controller: bool) -> bool {
    let wanted = owner.reference();
    let meta = object.meta_mut();
    let Some(references) = meta.owner_references.as_mut() else {
        return false;
    };
    let Some(index) = references.iter().position(|r| same_object(r, &wanted)) else {
        return false;
    };
    if only_controller && !is_controller(&references[index]) {
        return false;
    }
    references.remove(index);
    if references.is_empty() {
        meta.owner_references = None;
    }
    true
}

fn has_reference<K: Resource>(owner: &Owner<'_>, object: &K) -> bool {
    let wanted = owner.reference();
    object
        .meta()
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| same_object(r, &wanted)))
}

// === controller references ===

/// Makes `owner` the controller of `object`: adds (or replaces) its owner reference with
/// `controller: true` and `blockOwnerDeletion: true`. The garbage collector then deletes
/// `object` with its owner, and a controller built with `owns::<K>()` reconciles the owner when
/// `object` changes.
///
/// An object has at most one controller: if another one holds it, nothing changes and the
/// error is [`Error::AlreadyOwned`]. Setting the same controller again (any version of its
/// API group) refreshes the reference.
///
/// # Errors
///
/// - [`Error::IncompleteOwner`]: `owner` has no name or uid (or, for a namespaced type, no
///   namespace): use the owner as read from the API server.
/// - [`Error::ClusterScopedObjectWithNamespacedOwner`], [`Error::CrossNamespaceOwner`]:
///   a namespaced owner can only own objects of its own namespace.
/// - [`Error::AlreadyOwned`]: another controller holds `object`.
///
/// ```
/// use ferrokube_runtime::controllerutil::{has_controller_reference, set_controller_reference};
/// use k8s_openapi::api::apps::v1::Deployment;
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// let mut owner = Deployment::default();
/// owner.metadata.name = Some("web".into());
/// owner.metadata.namespace = Some("default".into());
/// owner.metadata.uid = Some("5a2f…".into());
/// let mut cm = ConfigMap::default();
/// cm.metadata.name = Some("web-config".into());
/// cm.metadata.namespace = Some("default".into());
/// set_controller_reference(&owner, &mut cm)?;
/// assert!(has_controller_reference(&cm));
/// # Ok::<(), ferrokube_runtime::controllerutil::Error>(())
/// ```
pub fn set_controller_reference<O, K>(owner: &O, object: &mut K) -> Result<(), Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    set_reference(&Owner::new(owner, &()), object, true)
}

/// [`set_controller_reference`] with an owner of a type known at run time.
///
/// The owner's scope comes from its namespace: an owner with a namespace is namespaced.
pub fn set_controller_reference_dyn<K: Resource>(
    owner: &DynamicObject,
    resource: &ApiResource,
    object: &mut K,
) -> Result<(), Error> {
    set_reference(&Owner::new(owner, resource), object, true)
}

/// Whether any owner reference of `object` has `controller: true`.
pub fn has_controller_reference<K: Resource>(object: &K) -> bool {
    controller_of(object).is_some()
}

/// The owner reference of `object`'s controller, if it has one (apimachinery's
/// `metav1.GetControllerOf`).
pub fn controller_of<K: Resource>(object: &K) -> Option<&OwnerReference> {
    object
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| is_controller(r))
}

/// Removes `owner`'s reference from `object` if it is `object`'s controller; true if removed.
/// False when `owner` has no reference or a non-controller one (left in place).
pub fn remove_controller_reference<O, K>(owner: &O, object: &mut K) -> bool
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    remove_reference(&Owner::new(owner, &()), object, true)
}

/// [`remove_controller_reference`] with an owner of a type known at run time.
pub fn remove_controller_reference_dyn<K: Resource>(
    owner: &DynamicObject,
    resource: &ApiResource,
    object: &mut K,
) -> bool {
    remove_reference(&Owner::new(owner, resource), object, true)
}

// === plain owner references ===

/// Adds (or replaces) an owner reference to `owner` on `object`, without making it the
/// controller: `object` depends on `owner` (the garbage collector deletes it once all its
/// owners are gone). A reference to the same owner is replaced whole, so setting a plain
/// reference over a controller reference takes the controller flag away.
///
/// # Errors
///
/// [`Error::IncompleteOwner`], [`Error::ClusterScopedObjectWithNamespacedOwner`] and
/// [`Error::CrossNamespaceOwner`], as for [`set_controller_reference`].
pub fn set_owner_reference<O, K>(owner: &O, object: &mut K) -> Result<(), Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    set_reference(&Owner::new(owner, &()), object, false)
}

/// [`set_owner_reference`] with an owner of a type known at run time.
pub fn set_owner_reference_dyn<K: Resource>(
    owner: &DynamicObject,
    resource: &ApiResource,
    object: &mut K,
) -> Result<(), Error> {
    set_reference(&Owner::new(owner, resource), object, false)
}

/// Removes the reference to `owner` (controller or not) from `object`; true if there was one.
/// An emptied list becomes `None`.
pub fn remove_owner_reference<O, K>(owner: &O, object: &mut K) -> bool
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    remove_reference(&Owner::new(owner, &()), object, false)
}

/// [`remove_owner_reference`] with an owner of a type known at run time.
pub fn remove_owner_reference_dyn<K: Resource>(
    owner: &DynamicObject,
    resource: &ApiResource,
    object: &mut K,
) -> bool {
    remove_reference(&Owner::new(owner, resource), object, false)
}

/// Whether `object` has an owner reference to `owner` (same group, kind and name).
pub fn has_owner_reference<O, K>(object: &K, owner: &O) -> bool
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    has_reference(&Owner::new(owner, &()), object)
}

/// [`has_owner_reference`] with an owner of a type known at run time.
pub fn has_owner_reference_dyn<K: Resource>(
    object: &K,
    owner: &DynamicObject,
    resource: &ApiResource,
) -> bool {
    has_reference(&Owner::new(owner, resource), object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume};
    use kube::core::GroupVersionKind;

    fn meta(name: &str, namespace: Option<&str>, uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
            uid: uid.map(Into::into),
            ..ObjectMeta::default()
        }
    }

    fn deployment(name: &str, namespace: &str) -> Deployment {
        Deployment {
            metadata: meta(name, Some(namespace), Some(&format!("uid-{name}"))),
            ..Deployment::default()
        }
    }

    fn configmap(name: &str, namespace: &str) -> ConfigMap {
        ConfigMap {
            metadata: meta(name, Some(namespace), None),
            ..ConfigMap::default()
        }
    }

    fn refs<K: Resource>(object: &K) -> Vec<OwnerReference> {
        object.meta().owner_references.clone().unwrap_or_default()
    }

    fn widgets() -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
    }

    #[test]
    fn controller_reference_names_the_owner() {
        let owner = deployment("web", "default");
        let mut cm = configmap("web-config", "default");
        set_controller_reference(&owner, &mut cm).unwrap();
        assert_eq!(
            refs(&cm),
            [OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        );
        assert!(has_controller_reference(&cm));
        assert!(has_owner_reference(&cm, &owner));
        assert_eq!(controller_of(&cm).map(|r| r.name.as_str()), Some("web"));
        // Idempotent.
        set_controller_reference(&owner, &mut cm).unwrap();
        assert_eq!(refs(&cm).len(), 1);
    }

    #[test]
    fn a_second_controller_is_refused_and_nothing_changes() {
        let first = deployment("web", "default");
        let second = deployment("api", "default");
        let mut cm = configmap("cfg", "default");
        set_controller_reference(&first, &mut cm).unwrap();
        let before = cm.clone();
        let err = set_controller_reference(&second, &mut cm).unwrap_err();
        match &err {
            Error::AlreadyOwned {
                owner_kind,
                owner_name,
            } => assert_eq!(
                (owner_kind.as_str(), owner_name.as_str()),
                ("Deployment", "web")
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("Deployment web"), "{err}");
        assert_eq!(cm, before);
        // Same name, other kind: a different owner too.
        let rs = ReplicaSet {
            metadata: meta("web", Some("default"), Some("uid-rs")),
            ..ReplicaSet::default()
        };
        assert!(matches!(
            set_controller_reference(&rs, &mut cm),
            Err(Error::AlreadyOwned { .. })
        ));
        // A plain reference alongside the controller is fine.
        set_owner_reference(&second, &mut cm).unwrap();
        assert_eq!(refs(&cm).len(), 2);
        assert_eq!(controller_of(&cm).map(|r| r.name.as_str()), Some("web"));
    }

    #[test]
    fn references_match_by_group_kind_and_name_not_version() {
        let mut cm = configmap("cfg", "default");
        cm.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1beta1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "old-uid".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let owner = deployment("web", "default");
        assert!(has_owner_reference(&cm, &owner));
        // The same owner at another version is not "another controller": it is replaced.
        set_controller_reference(&owner, &mut cm).unwrap();
        let r = refs(&cm);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].api_version.as_str(), r[0].uid.as_str()),
            ("apps/v1", "uid-web")
        );
        // Another group with the same kind and name is another owner.
        let mut other = cm.clone();
        other.metadata.owner_references.as_mut().unwrap()[0].api_version = "example.com/v1".into();
        assert!(!has_owner_reference(&other, &owner));
        assert!(matches!(
            set_controller_reference(&owner, &mut other),
            Err(Error::AlreadyOwned { .. })
        ));
        // Core-group kinds: "v1" has the empty group.
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("a.b.example.com/v1alpha1"), "a.b.example.com");
    }

    #[test]
    fn plain_reference_upserts_and_drops_the_controller_flag() {
        let owner = deployment("web", "default");
        let mut cm = configmap("cfg", "default");
        set_owner_reference(&owner, &mut cm).unwrap();
        let r = refs(&cm);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].controller, r[0].block_owner_deletion), (None, None));
        assert!(!has_controller_reference(&cm));
        set_controller_reference(&owner, &mut cm).unwrap();
        assert!(has_controller_reference(&cm));
        set_owner_reference(&owner, &mut cm).unwrap();
        assert_eq!(refs(&cm).len(), 1);
        assert!(!has_controller_reference(&cm));
    }

    #[test]
    fn owner_without_name_or_uid_is_refused() {
        let mut cm = configmap("cfg", "default");
        let mut owner = deployment("web", "default");
        owner.metadata.uid = None;
        let err = set_controller_reference(&owner, &mut cm).unwrap_err();
        assert!(
            matches!(&err, Error::IncompleteOwner { missing: "metadata.uid", name, .. } if name == "web"),
            "{err:?}"
        );
        owner.metadata.uid = Some(String::new());
        assert!(matches!(
            set_owner_reference(&owner, &mut cm),
            Err(Error::IncompleteOwner {
                missing: "metadata.uid",
                ..
            })
        ));
        let mut unnamed = deployment("web", "default");
        unnamed.metadata.name = None;
        assert!(matches!(
            set_controller_reference(&unnamed, &mut cm),
            Err(Error::IncompleteOwner {
                missing: "metadata.name",
                ..
            })
        ));
        let mut no_namespace = deployment("web", "default");
        no_namespace.metadata.namespace = None;
        assert!(matches!(
            set_controller_reference(&no_namespace, &mut cm),
            Err(Error::IncompleteOwner {
                missing: "metadata.namespace",
                ..
            })
        ));
        assert_eq!(cm.metadata.owner_references, None);
    }

    #[test]
    fn namespaced_owner_must_share_the_object_namespace() {
        let owner = deployment("web", "default");
        let mut cm = configmap("cfg", "other");
        let err = set_controller_reference(&owner, &mut cm).unwrap_err();
        assert!(
            matches!(&err, Error::CrossNamespaceOwner { owner_namespace, object_namespace }
                if owner_namespace == "default" && object_namespace.as_deref() == Some("other")),
            "{err:?}"
        );
        assert!(err.to_string().contains("cross-namespace"), "{err}");
        // A namespaced object without its namespace cannot be checked: refused.
        let mut unset = ConfigMap::default();
        unset.metadata.name = Some("cfg".into());
        assert!(matches!(
            set_owner_reference(&owner, &mut unset),
            Err(Error::CrossNamespaceOwner {
                object_namespace: None,
                ..
            })
        ));
    }

    #[test]
    fn cluster_scoped_objects_cannot_have_namespaced_owners() {
        let owner = deployment("web", "default");
        let mut pv = PersistentVolume {
            metadata: meta("pv", None, None),
            ..PersistentVolume::default()
        };
        assert!(matches!(
            set_controller_reference(&owner, &mut pv),
            Err(Error::ClusterScopedObjectWithNamespacedOwner { owner_namespace }) if owner_namespace == "default"
        ));
        // The type decides, even if a namespace was set by mistake.
        pv.metadata.namespace = Some("default".into());
        assert!(matches!(
            set_controller_reference(&owner, &mut pv),
            Err(Error::ClusterScopedObjectWithNamespacedOwner { .. })
        ));
    }

    #[test]
    fn cluster_scoped_owner_may_own_anything() {
        let ns = Namespace {
            metadata: meta("team-a", None, Some("uid-ns")),
            ..Namespace::default()
        };
        let mut cm = configmap("cfg", "team-a");
        set_controller_reference(&ns, &mut cm).unwrap();
        assert_eq!(
            refs(&cm)[0],
            OwnerReference {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                name: "team-a".into(),
                uid: "uid-ns".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }
        );
        let mut pv = PersistentVolume {
            metadata: meta("pv", None, None),
            ..PersistentVolume::default()
        };
        set_owner_reference(&ns, &mut pv).unwrap();
        assert!(has_owner_reference(&pv, &ns));
        // A stray namespace on a cluster-scoped owner is ignored: its type says cluster.
        let mut odd = ns.clone();
        odd.metadata.namespace = Some("x".into());
        set_owner_reference(&odd, &mut cm).unwrap();
    }

    #[test]
    fn remove_owner_reference_takes_only_that_owner() {
        let web = deployment("web", "default");
        let api = deployment("api", "default");
        let mut cm = configmap("cfg", "default");
        set_controller_reference(&web, &mut cm).unwrap();
        set_owner_reference(&api, &mut cm).unwrap();
        assert!(remove_owner_reference(&web, &mut cm));
        assert!(!remove_owner_reference(&web, &mut cm));
        assert!(!has_controller_reference(&cm));
        assert!(has_owner_reference(&cm, &api));
        assert!(remove_owner_reference(&api, &mut cm));
        assert_eq!(cm.metadata.owner_references, None);
        assert!(!remove_owner_reference(&api, &mut cm));
    }

    #[test]
    fn remove_controller_reference_leaves_plain_references() {
        let web = deployment("web", "default");
        let api = deployment("api", "default");
        let mut cm = configmap("cfg", "default");
        set_owner_reference(&api, &mut cm).unwrap();
        assert!(!remove_controller_reference(&api, &mut cm));
        assert!(has_owner_reference(&cm, &api));
        set_controller_reference(&web, &mut cm).unwrap();
        assert!(!remove_controller_reference(
            &deployment("other", "default"),
            &mut cm
        ));
        assert!(remove_controller_reference(&web, &mut cm));
        assert!(!has_controller_reference(&cm));
        assert_eq!(refs(&cm).len(), 1);
    }

    #[test]
    fn dynamic_owners_and_objects() {
        let resource = widgets();
        let mut widget = DynamicObject::new("w", &resource).within("default");
        widget.metadata.uid = Some("uid-w".into());
        let mut cm = configmap("cfg", "default");
        set_controller_reference_dyn(&widget, &resource, &mut cm).unwrap();
        let r = refs(&cm);
        assert_eq!(
            (
                r[0].api_version.as_str(),
                r[0].kind.as_str(),
                r[0].name.as_str()
            ),
            ("example.com/v1", "Widget", "w")
        );
        assert!(has_owner_reference_dyn(&cm, &widget, &resource));
        // A namespaced dynamic owner (it has a namespace) of an object elsewhere.
        let mut elsewhere = configmap("cfg", "other");
        assert!(matches!(
            set_owner_reference_dyn(&widget, &resource, &mut elsewhere),
            Err(Error::CrossNamespaceOwner { .. })
        ));
        // A dynamic object without a namespace counts as cluster-scoped.
        let mut cluster_widget = DynamicObject::new("cw", &resource);
        assert!(matches!(
            set_owner_reference_dyn(&widget, &resource, &mut cluster_widget),
            Err(Error::ClusterScopedObjectWithNamespacedOwner { .. })
        ));
        // A dynamic owner without a namespace counts as cluster-scoped: it may own anything.
        let mut cluster_owner = DynamicObject::new("co", &resource);
        cluster_owner.metadata.uid = Some("uid-co".into());
        set_owner_reference_dyn(&cluster_owner, &resource, &mut cluster_widget).unwrap();
        // Typed owner, dynamic object.
        let owner = deployment("web", "default");
        let mut namespaced_widget = DynamicObject::new("nw", &resource).within("default");
        set_controller_reference(&owner, &mut namespaced_widget).unwrap();
        assert!(matches!(
            set_controller_reference_dyn(&widget, &resource, &mut namespaced_widget),
            Err(Error::AlreadyOwned { .. })
        ));
        assert!(!remove_controller_reference_dyn(
            &widget,
            &resource,
            &mut namespaced_widget
        ));
        assert!(remove_owner_reference(&owner, &mut namespaced_widget));
        set_controller_reference_dyn(&widget, &resource, &mut namespaced_widget).unwrap();
        assert!(remove_controller_reference_dyn(
            &widget,
            &resource,
            &mut namespaced_widget
        ));
        set_owner_reference_dyn(&widget, &resource, &mut namespaced_widget).unwrap();
        assert!(remove_owner_reference_dyn(
            &widget,
            &resource,
            &mut namespaced_widget
        ));
        assert_eq!(namespaced_widget.metadata.owner_references, None);
    }
}
