//! Reads from the cache: get, list (namespace, labels, field index) and field indexes.

use std::any::TypeId;
use std::sync::Arc;

use ferrokube_informer::labels::Selector;

use super::informer::Part;
use super::{
    ALL_NAMESPACES, Cache, CacheObject, Error, FIELD_INDEX_PREFIX, Informer, resource_name,
};

/// What a cache list selects (controller-runtime's `client.ListOption`s for reads).
///
/// ```
/// use ferrokube_runtime::cache::ListParams;
///
/// let params = ListParams::default().namespace("default").labels("app=web")?.field("spec.nodeName", "node-1");
/// # Ok::<(), ferrokube_runtime::informer::labels::ParseError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ListParams {
    namespace: Option<String>,
    selector: Selector,
    field: Option<(String, String)>,
}

impl ListParams {
    /// Only this namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects whose labels match `selector` (label selector syntax).
    pub fn labels(
        mut self,
        selector: &str,
    ) -> Result<Self, ferrokube_informer::labels::ParseError> {
        self.selector = Selector::parse(selector)?;
        Ok(self)
    }

    /// Only objects whose labels match `selector`.
    pub fn selector(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// Only objects whose field index `field` has `value` (see [`Cache::index_field`]).
    pub fn field(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.field = Some((field.into(), value.into()));
        self
    }
}

impl Cache {
    /// The informer a read of `K` uses: existing, or (unless told otherwise) created now;
    /// synced either way.
    async fn informer_for_read<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
    ) -> Result<Informer<K>, Error> {
        let resource = resource_name::<K>(dt);
        let existing = self
            .inner
            .informers
            .lock()
            .get(&(TypeId::of::<K>(), resource.clone()))
            .and_then(|e| e.informer.downcast_ref::<Informer<K>>().cloned());
        let informer = match existing {
            Some(i) => i,
            None if self.inner.options.fail_on_missing_informer => {
                return Err(Error::NotCached { resource });
            }
            None => self.informer_with::<K>(dt, None),
        };
        self.wait_for_informer(&informer).await?;
        Ok(informer)
    }

    /// Registers a field index on `K` (controller-runtime's `IndexField`): `extract` gives
    /// the values of `field` for an object, and [`ListParams::field`] looks them up. The
    /// index may be added before or after the informer started (objects are re-indexed).
    ///
    /// # Errors
    ///
    /// [`Error::Index`] if the field already has an index for `K`.
    pub fn index_field<K>(
        &self,
        field: &str,
        extract: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) -> Result<(), Error>
    where
        K: CacheObject,
        K::DynamicType: Default,
    {
        self.index_field_with(&K::DynamicType::default(), field, extract)
    }

    /// [`index_field`](Self::index_field) for a type with a dynamic type.
    pub fn index_field_with<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
        field: &str,
        extract: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let informer = self.informer_with::<K>(dt, None);
        let index: ferrokube_informer::store::IndexFunc<K> = Arc::new(move |object: &K| {
            let values = extract(object);
            let namespace = object.meta().namespace.as_deref();
            let mut keys = Vec::with_capacity(values.len() * 2);
            for v in values {
                if let Some(ns) = namespace {
                    keys.push(format!("{ns}/{v}"));
                }
                keys.push(format!("{ALL_NAMESPACES}/{v}"));
            }
            keys
        });
        let name = format!("{FIELD_INDEX_PREFIX}{field}");
        for (_, part) in informer.parts.iter() {
            part.add_index(&name, Arc::clone(&index))
                .map_err(|source| Error::Index {
                    resource: informer.resource().to_owned(),
                    field: field.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The cached `K` named `name` in `namespace` (`None` for cluster-scoped objects).
    pub async fn get<K>(&self, namespace: Option<&str>, name: &str) -> Result<Option<Arc<K>>, Error>
    where
        K: CacheObject,
        K::DynamicType: Default,
    {
        self.get_with(&K::DynamicType::default(), namespace, name)
            .await
    }

    /// [`get`](Self::get) for a type with a dynamic type.
    pub async fn get_with<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Arc<K>>, Error> {
        let informer = self.informer_for_read::<K>(dt).await?;
        let part = informer
            .part_for(namespace)
            .ok_or_else(|| Error::NamespaceNotCached {
                resource: informer.resource().to_owned(),
                namespace: namespace.unwrap_or_default().to_owned(),
            })?;
        Ok(part.get(namespace, name))
    }

    /// The cached `K`s that `params` selects.
    pub async fn list<K>(&self, params: &ListParams) -> Result<Vec<Arc<K>>, Error>
    where
        K: CacheObject,
        K::DynamicType: Default,
    {
        self.list_with(&K::DynamicType::default(), params).await
    }

    /// [`list`](Self::list) for a type with a dynamic type.
    pub async fn list_with<K: CacheObject>(
        &self,
        dt: &K::DynamicType,
        params: &ListParams,
    ) -> Result<Vec<Arc<K>>, Error> {
        let informer = self.informer_for_read::<K>(dt).await?;
        let parts: Vec<&Arc<dyn Part<K>>> = match params.namespace.as_deref() {
            Some(ns) => {
                vec![
                    informer
                        .part_for(Some(ns))
                        .ok_or_else(|| Error::NamespaceNotCached {
                            resource: informer.resource().to_owned(),
                            namespace: ns.to_owned(),
                        })?,
                ]
            }
            None => informer.parts.iter().map(|(_, p)| p).collect(),
        };
        let mut out = Vec::new();
        for part in parts {
            match (&params.field, params.namespace.as_deref()) {
                (Some((field, value)), ns) => {
                    let index = format!("{FIELD_INDEX_PREFIX}{field}");
                    if !part.has_index(&index) {
                        return Err(Error::NoIndex {
                            resource: informer.resource().to_owned(),
                            field: field.clone(),
                        });
                    }
                    let key = format!("{}/{value}", ns.unwrap_or(ALL_NAMESPACES));
                    let mut found = part.by_index(&index, &key).unwrap_or_default();
                    if !params.selector.is_empty() {
                        found.retain(|o| params.selector.matches(o.meta().labels.as_ref()));
                    }
                    out.extend(found);
                }
                (None, Some(ns)) => out.extend(part.list_namespaced(ns, &params.selector)),
                (None, None) => out.extend(part.list(&params.selector)),
            }
        }
        Ok(out)
    }
}
