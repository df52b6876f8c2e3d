//! [`CacheOptions`] and [`ByObject`]: what the manager's cache watches, and how.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferrokube_client::Client;
use ferrokube_informer::InformerConfig;
use ferrokube_informer::compact::CompactInformer;
use ferrokube_informer::decode::Transform;
use ferrokube_informer::reflector::InitialList;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::informer::Part;

/// controller-runtime's default `SyncPeriod`: every cached object is resynced to every
/// handler this often (with [`SYNC_PERIOD_JITTER`]).
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(10 * 60 * 60);

/// The fraction by which each informer's sync period is randomly lengthened (0.1 = up to 10 %),
/// so that informers of one manager do not resync at the same moment.
pub const SYNC_PERIOD_JITTER: f64 = 0.1;

/// What an informer is built from, whatever it stores.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) resync: Option<Duration>,
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) initial_list: InitialList,
    pub(crate) metadata_only: bool,
}

impl Settings {
    pub(crate) fn config<T>(&self) -> InformerConfig<T> {
        let mut config = InformerConfig::default()
            .resync_period(self.resync)
            .initial_list(self.initial_list)
            .metadata_only(self.metadata_only);
        if let Some(s) = &self.label_selector {
            config = config.label_selector(s.clone());
        }
        if let Some(s) = &self.field_selector {
            config = config.field_selector(s.clone());
        }
        config
    }
}

/// Builds a compact informer (kept apart because it needs `DynamicType = ()`).
pub(crate) type CompactFactory<K> =
    Arc<dyn Fn(&Client, Option<&str>, &Settings) -> Arc<dyn Part<K>> + Send + Sync>;

/// How the cache watches one type (controller-runtime's `cache.ByObject`).
///
/// ```
/// use ferrokube_runtime::cache::{ByObject, CacheOptions};
/// use k8s_openapi::api::core::v1::{ConfigMap, Pod};
///
/// let options = CacheOptions::default()
///     .namespaces(["team-a", "team-b"])
///     .by_object(ByObject::<Pod>::new().label_selector("app=web").compact())
///     .by_object(ByObject::<ConfigMap>::new().field_selector("metadata.name!=kube-root-ca.crt"));
/// # let _ = options;
/// ```
#[must_use]
pub struct ByObject<K> {
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) transform: Option<Transform<K>>,
    pub(crate) namespaces: Option<Vec<String>>,
    pub(crate) compact: Option<CompactFactory<K>>,
}

impl<K> Default for ByObject<K> {
    fn default() -> Self {
        Self {
            label_selector: None,
            field_selector: None,
            transform: None,
            namespaces: None,
            compact: None,
        }
    }
}

impl<K> Clone for ByObject<K> {
    fn clone(&self) -> Self {
        Self {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            transform: self.transform.clone(),
            namespaces: self.namespaces.clone(),
            compact: self.compact.clone(),
        }
    }
}

impl<K> std::fmt::Debug for ByObject<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByObject")
            .field("label_selector", &self.label_selector)
            .field("field_selector", &self.field_selector)
            .field("transform", &self.transform.is_some())
            .field("namespaces", &self.namespaces)
            .field("compact", &self.compact.is_some())
            .finish()
    }
}

impl<K> ByObject<K> {
    /// No restriction beyond the cache's own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only objects matching this label selector are cached.
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Only objects matching this field selector are cached.
    pub fn field_selector(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Applied to every object before it is cached (after `managedFields` are stripped),
    /// e.g. to drop fields the controller never reads. Not applied in compact mode.
    ///
    /// Cached objects are then not what the server holds: never write one back whole
    /// (`update`, `create_or_update`), or the dropped fields are erased on the server; patch
    /// instead (`patch`, `create_or_patch`).
    pub fn transform(mut self, transform: impl Fn(K) -> K + Send + Sync + 'static) -> Self {
        self.transform = Some(Arc::new(transform));
        self
    }

    /// These namespaces instead of the cache's (for a namespaced type).
    pub fn namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.namespaces = Some(namespaces.into_iter().map(Into::into).collect());
        self
    }
}

impl<K> ByObject<K>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    /// Keep objects of this type as compact JSON and decode them on read (see
    /// [`ferrokube_informer::compact`]): a fraction of the memory for large caches that are
    /// rarely read.
    pub fn compact(mut self) -> Self {
        self.compact = Some(Arc::new(|client, namespace, settings| {
            Arc::new(CompactInformer::<K>::new(
                client,
                namespace,
                settings.config(),
            )) as Arc<dyn Part<K>>
        }));
        self
    }
}

/// What the manager's cache watches and how (controller-runtime's `cache.Options`).
///
/// Defaults: every namespace, a sync period of 10 h (+ up to 10 % jitter per informer),
/// paged initial lists, `managedFields` stripped, and a read of a type not cached yet starts
/// its informer and waits for it to sync.
#[must_use]
#[derive(Debug)]
pub struct CacheOptions {
    pub(crate) namespaces: Vec<String>,
    pub(crate) sync_period: Option<Duration>,
    pub(crate) initial_list: InitialList,
    pub(crate) fail_on_missing_informer: bool,
    pub(crate) by_object: HashMap<TypeId, ErasedByObject>,
}

/// A `ByObject<K>` with `K` erased.
pub(crate) struct ErasedByObject(Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for ErasedByObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByObject")
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            sync_period: Some(DEFAULT_SYNC_PERIOD),
            initial_list: InitialList::Paged,
            fail_on_missing_informer: false,
            by_object: HashMap::new(),
        }
    }
}

impl CacheOptions {
    /// Cache namespaced objects of these namespaces only (controller-runtime's
    /// `DefaultNamespaces`); cluster-scoped objects are still cached cluster-wide. Empty: all.
    pub fn namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.namespaces = namespaces.into_iter().map(Into::into).collect();
        self.namespaces.sort();
        self.namespaces.dedup();
        self
    }

    /// How often every cached object is handed to the handlers again (`None`: never).
    pub fn sync_period(mut self, period: Option<Duration>) -> Self {
        self.sync_period = period.filter(|p| !p.is_zero());
        self
    }

    /// Paged (default) or streaming (`sendInitialEvents`) initial lists.
    pub fn initial_list(mut self, mode: InitialList) -> Self {
        self.initial_list = mode;
        self
    }

    /// Make a read of a type that has no informer yet an error instead of starting one
    /// (controller-runtime's `ReaderFailOnMissingInformer`).
    pub fn fail_on_missing_informer(mut self, fail: bool) -> Self {
        self.fail_on_missing_informer = fail;
        self
    }

    /// Options for one type.
    pub fn by_object<K: 'static>(mut self, options: ByObject<K>) -> Self {
        self.by_object
            .insert(TypeId::of::<K>(), ErasedByObject(Box::new(options)));
        self
    }

    pub(crate) fn for_type<K: 'static>(&self) -> Option<&ByObject<K>> {
        self.by_object
            .get(&TypeId::of::<K>())
            .and_then(|b| b.0.downcast_ref::<ByObject<K>>())
    }
}
