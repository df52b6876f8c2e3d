//! Store keys: `namespace/name` for namespaced objects, `name` for cluster-scoped ones
//! (client-go's `MetaNamespaceKeyFunc` and `SplitMetaNamespaceKey`), and the tombstone
//! [`DeletedFinalStateUnknown`].

use std::fmt;
use std::sync::Arc;

use crate::error::Error;

/// The store key of `obj`: `namespace/name`, or `name` when it has no namespace.
///
/// An empty namespace counts as none, as in client-go.
///
/// ```
/// # use k8s_openapi::api::core::v1::ConfigMap;
/// # use kube::api::ObjectMeta;
/// let cm = ConfigMap {
///     metadata: ObjectMeta {
///         namespace: Some("default".into()),
///         name: Some("settings".into()),
///         ..Default::default()
///     },
///     ..Default::default()
/// };
/// assert_eq!(ferrokube_informer::key::object_key(&cm), "default/settings");
/// ```
#[doc(alias = "MetaNamespaceKeyFunc")]
pub fn object_key<K: kube::Resource>(obj: &K) -> String {
    let meta = obj.meta();
    namespace_name_key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// The store key for `name` in `namespace` (`None` or `""`: cluster-scoped).
#[doc(alias = "ObjectName")]
pub fn namespace_name_key(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => {
            let mut key = String::with_capacity(ns.len() + 1 + name.len());
            key.push_str(ns);
            key.push('/');
            key.push_str(name);
            key
        }
        None => name.to_owned(),
    }
}

/// Splits a store key into its namespace (`None` when cluster-scoped) and name.
///
/// # Errors
///
/// [`Error::InvalidKey`] when the key holds more than one `/`.
///
/// ```
/// # use ferrokube_informer::key::split_key;
/// assert_eq!(split_key("default/settings").unwrap(), (Some("default"), "settings"));
/// assert_eq!(split_key("node-1").unwrap(), (None, "node-1"));
/// assert!(split_key("a/b/c").is_err());
/// ```
#[doc(alias = "SplitMetaNamespaceKey")]
pub fn split_key(key: &str) -> Result<(Option<&str>, &str), Error> {
    let mut parts = key.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) => Ok((None, name)),
        (Some(ns), Some(name), None) => Ok(((!ns.is_empty()).then_some(ns), name)),
        _ => Err(Error::InvalidKey {
            key: key.to_owned(),
        }),
    }
}

/// The tombstone for an object deleted while the watch was down: a relist no longer lists
/// it, so its final state is unknown and `obj` is the last state the cache knew, possibly
/// stale.
pub struct DeletedFinalStateUnknown<K> {
    /// The deleted object's store key.
    pub key: String,
    /// The last known state of the object.
    pub obj: Arc<K>,
}

// === impl DeletedFinalStateUnknown ===

impl<K> DeletedFinalStateUnknown<K> {
    /// A tombstone for `obj` under `key`.
    pub fn new(key: impl Into<String>, obj: Arc<K>) -> Self {
        Self {
            key: key.into(),
            obj,
        }
    }
}

impl<K> Clone for DeletedFinalStateUnknown<K> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            obj: Arc::clone(&self.obj),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for DeletedFinalStateUnknown<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeletedFinalStateUnknown")
            .field("key", &self.key)
            .field("obj", &self.obj)
            .finish()
    }
}

impl<K: PartialEq> PartialEq for DeletedFinalStateUnknown<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.obj == other.obj
    }
}

impl<K: Eq> Eq for DeletedFinalStateUnknown<K> {}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use kube::api::ObjectMeta;

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_owned),
            name: Some(name.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn keys_of_namespaced_and_cluster_scoped_objects() {
        let cm = ConfigMap {
            metadata: meta(Some("ns"), "a"),
            ..Default::default()
        };
        assert_eq!(object_key(&cm), "ns/a");
        let ns = Namespace {
            metadata: meta(None, "kube-system"),
            ..Default::default()
        };
        assert_eq!(object_key(&ns), "kube-system");
        let empty_ns = ConfigMap {
            metadata: meta(Some(""), "b"),
            ..Default::default()
        };
        assert_eq!(object_key(&empty_ns), "b");
    }

    #[test]
    fn split_is_the_inverse_of_the_key() {
        for (ns, name) in [(Some("ns"), "a"), (None, "a"), (Some("x"), "")] {
            let key = namespace_name_key(ns, name);
            assert_eq!(split_key(&key).unwrap(), (ns, name), "{key}");
        }
        // client-go: a leading slash is an empty namespace.
        assert_eq!(split_key("/a").unwrap(), (None, "a"));
        assert_eq!(split_key("").unwrap(), (None, ""));
        assert_eq!(
            split_key("a/b/c"),
            Err(Error::InvalidKey {
                key: "a/b/c".into()
            })
        );
    }
}
