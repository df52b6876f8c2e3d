//! [`CachedClient`]: the reconciler's client — reads from the manager's cache, writes to the
//! API server (controller-runtime's default `client.Client`).

use std::fmt::Debug;
use std::sync::Arc;

use ferrokube_client::{Api, Client, DeleteOptions, Deleted, Patch, PatchOptions, WriteOptions};
use k8s_openapi::api::autoscaling::v1::Scale;
use serde::Serialize;

use crate::cache::{Cache, CacheObject, ListParams};

/// What a [`CachedClient`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from the cache failed (not started, not synced, namespace not cached…).
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    /// The API server refused a write, or could not be reached.
    #[error(transparent)]
    Api(#[from] ferrokube_client::Error),
    /// The object has no `metadata.name`.
    #[error("the {kind} has no metadata.name")]
    Unnamed {
        /// The object's kind.
        kind: String,
    },
    /// The object could not be serialized for a server-side apply.
    #[error("cannot serialize the {kind} to apply")]
    Serialize {
        /// The object's kind.
        kind: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether the API server answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_not_found())
    }

    /// Whether the API server answered 409 Conflict (a stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_conflict())
    }

    /// Whether the API server answered 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_already_exists())
    }
}

/// The bounds of a type the client writes: a cached type that serializes.
pub trait WriteObject: CacheObject + Clone + Debug + Serialize {}

impl<K: CacheObject + Clone + Debug + Serialize> WriteObject for K {}

/// Reads from the cache (`Arc`s of cached objects, no API call), writes to the API server.
/// Objects returned by writes come without `metadata.managedFields`, like cached ones.
/// Cheap to clone.
///
/// ```no_run
/// use ferrokube_runtime::prelude::*;
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// # async fn demo(client: CachedClient) -> Result<(), ferrokube_runtime::cached_client::Error> {
/// if let Some(cm) = client.get::<ConfigMap>(Some("default"), "settings").await? {
///     let mut cm = (*cm).clone();
///     cm.data.get_or_insert_default().insert("mode".into(), "fast".into());
///     client.update(&cm).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CachedClient {
    cache: Cache,
    client: Client,
    field_manager: Option<Arc<str>>,
}

impl Debug for CachedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedClient")
            .field("cache", &self.cache)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

fn name_of<K: kube::Resource<DynamicType = ()>>(object: &K) -> Result<&str, Error> {
    object.meta().name.as_deref().ok_or_else(|| Error::Unnamed {
        kind: K::kind(&()).into_owned(),
    })
}

impl CachedClient {
    /// A client reading from `cache` and writing through `client`.
    pub fn new(cache: Cache, client: Client) -> Self {
        Self {
            cache,
            client,
            field_manager: None,
        }
    }

    /// Writes name `manager` as their field manager (`?fieldManager=`); server-side applies
    /// use it too.
    #[must_use]
    pub fn with_field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = Some(manager.into().into());
        self
    }

    /// The cache reads come from.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The REST client writes go through (for anything this client does not cover).
    pub fn api_client(&self) -> &Client {
        &self.client
    }

    /// Typed API access for `K` in `namespace` (`None`: cluster-scoped or all namespaces).
    pub fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        Api::new(self.client.clone(), namespace, &())
    }

    /// Writes return objects without `managedFields`, as the cache holds them.
    fn api_for<K: kube::Resource<DynamicType = ()>>(&self, object: &K) -> Api<K> {
        self.api(object.meta().namespace.as_deref())
            .without_managed_fields()
    }

    fn write_options(&self) -> WriteOptions {
        let mut options = WriteOptions::default();
        if let Some(m) = &self.field_manager {
            options = options.manager(m.to_string());
        }
        options
    }

    fn patch_options(&self) -> PatchOptions {
        PatchOptions {
            write: self.write_options(),
            ..PatchOptions::default()
        }
    }

    // === reads (cache) ===

    /// The cached object, or `None` if the cache has no such object.
    pub async fn get<K>(&self, namespace: Option<&str>, name: &str) -> Result<Option<Arc<K>>, Error>
    where
        K: CacheObject<DynamicType = ()>,
    {
        Ok(self.cache.get::<K>(namespace, name).await?)
    }

    /// The cached object a request names.
    pub async fn get_request<K>(
        &self,
        request: &crate::reconcile::Request,
    ) -> Result<Option<Arc<K>>, Error>
    where
        K: CacheObject<DynamicType = ()>,
    {
        self.get(request.namespace(), &request.name).await
    }

    /// The cached objects `params` selects.
    pub async fn list<K>(&self, params: &ListParams) -> Result<Vec<Arc<K>>, Error>
    where
        K: CacheObject<DynamicType = ()>,
    {
        Ok(self.cache.list::<K>(params).await?)
    }

    // === writes (API server) ===

    /// Creates `object` in its namespace.
    pub async fn create<K: WriteObject<DynamicType = ()>>(&self, object: &K) -> Result<K, Error> {
        Ok(self
            .api_for(object)
            .create(object, &self.write_options())
            .await?)
    }

    /// Replaces `object` (its resourceVersion guards against lost updates: a stale one gives
    /// a conflict, see [`Error::is_conflict`]).
    pub async fn update<K: WriteObject<DynamicType = ()>>(&self, object: &K) -> Result<K, Error> {
        Ok(self
            .api_for(object)
            .update(object, &self.write_options())
            .await?)
    }

    /// Replaces `object`'s status subresource.
    pub async fn update_status<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
    ) -> Result<K, Error> {
        Ok(self
            .api_for(object)
            .update_status(object, &self.write_options())
            .await?)
    }

    /// Patches the object named by `object`'s namespace and name.
    pub async fn patch<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
        patch: &Patch,
    ) -> Result<K, Error> {
        let name = name_of(object)?;
        let options = self.patch_options();
        Ok(self.api_for(object).patch(name, patch, &options).await?)
    }

    /// Patches the status subresource of the object named by `object`.
    pub async fn patch_status<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
        patch: &Patch,
    ) -> Result<K, Error> {
        let name = name_of(object)?;
        let options = self.patch_options();
        Ok(self
            .api_for(object)
            .patch_status(name, patch, &options)
            .await?)
    }

    /// Server-side applies `object` as `field_manager` (forcing ownership of conflicting
    /// fields when `force`).
    pub async fn apply<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
        field_manager: &str,
        force: bool,
    ) -> Result<K, Error> {
        let name = name_of(object)?;
        let patch = Patch::apply(object).map_err(|source| Error::Serialize {
            kind: K::kind(&()).into_owned(),
            source,
        })?;
        let mut options = PatchOptions::apply(field_manager);
        if force {
            options = options.force();
        }
        Ok(self.api_for(object).patch(name, &patch, &options).await?)
    }

    /// Deletes `object` (by namespace and name).
    pub async fn delete<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
        options: &DeleteOptions,
    ) -> Result<Deleted<K>, Error> {
        let name = name_of(object)?;
        Ok(self.api_for(object).delete(name, options).await?)
    }

    /// The scale subresource of the object named by `object`.
    pub async fn get_scale<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
    ) -> Result<Scale, Error> {
        let name = name_of(object)?;
        Ok(self.api_for(object).get_scale(name).await?)
    }

    /// Replaces the scale subresource of the object named by `object`.
    pub async fn update_scale<K: WriteObject<DynamicType = ()>>(
        &self,
        object: &K,
        scale: &Scale,
    ) -> Result<Scale, Error> {
        let name = name_of(object)?;
        Ok(self
            .api_for(object)
            .update_scale(name, scale, &self.write_options())
            .await?)
    }
}
