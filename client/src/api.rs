//! Typed access ([`Api`]) to one resource type, for any k8s-openapi type, any
//! `#[derive(CustomResource)]` type and [`DynamicObject`](kube::core::DynamicObject).

use std::fmt::Debug;

use futures::Stream;
use http::Method;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::Resource;
use kube::core::ObjectList;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result, Status};
use crate::options::{DeleteOptions, ListOptions, Patch, PatchOptions, WriteOptions};
use crate::request::Request;
use crate::watch::WatchEvent;

/// What a delete returned: the object (still present while finalizers or foreground
/// deletion run, or its final state) or a `Status`.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per delete, never stored in bulk
pub enum Deleted<T> {
    /// The object as the server returned it.
    Object(T),
    /// A success `Status`.
    Status(Status),
}

/// The verbs of one resource type in one namespace (or cluster-wide).
pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    group: String,
    version: String,
    plural: String,
    without_managed_fields: bool,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            group: self.group.clone(),
            version: self.version.clone(),
            plural: self.plural.clone(),
            without_managed_fields: self.without_managed_fields,
            _kind: std::marker::PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("plural", &self.plural)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl<K: Resource> Api<K> {
    /// Access to `K` described by `dynamic_type`, in `namespace` (or cluster-wide).
    pub fn new(client: Client, namespace: Option<&str>, dynamic_type: &K::DynamicType) -> Self {
        Self {
            client,
            namespace: namespace.map(str::to_owned),
            group: K::group(dynamic_type).into_owned(),
            version: K::version(dynamic_type).into_owned(),
            plural: K::plural(dynamic_type).into_owned(),
            without_managed_fields: false,
            _kind: std::marker::PhantomData,
        }
    }

    /// Objects this `Api` returns (from get, create, update, patch and their status
    /// variants) are decoded without `metadata.managedFields`, as informer caches hold them:
    /// cheaper to decode and to keep. Lists and watches are not affected.
    #[must_use]
    pub fn without_managed_fields(mut self) -> Self {
        self.without_managed_fields = true;
        self
    }

    /// The namespace, if scoped to one.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A raw request for this resource type (and namespace), to finish with any verb.
    pub fn request(&self, verb: Method) -> Request {
        self.client
            .request(verb)
            .group_version(&self.group, &self.version)
            .namespace(self.namespace.as_deref())
            .resource(&self.plural)
    }

    /// A raw request for one named object.
    pub fn object_request(&self, verb: Method, name: &str) -> Request {
        self.request(verb).name(name)
    }
}

impl<K> Api<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned + Send + 'static,
{
    /// Sends `request` and decodes the object it returns.
    async fn object(&self, request: Request) -> Result<K> {
        if self.without_managed_fields {
            request.decode_without_managed_fields().await
        } else {
            request.decode().await
        }
    }

    /// Gets an object by name.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.object(self.object_request(Method::GET, name)).await
    }

    /// Gets an object by name; `None` if it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists objects (one page when `options.limit` is set; see `metadata.continue_`).
    pub async fn list(&self, options: &ListOptions) -> Result<ObjectList<K>> {
        self.request(Method::GET)
            .params(options.to_query(false))
            .decode()
            .await
    }

    /// Watches objects. Events arrive as the server sends them; `ERROR` events carry a
    /// `Status`, `BOOKMARK`s a resourceVersion. The stream ends when the server closes it.
    pub async fn watch(
        &self,
        options: &ListOptions,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>>> + Send + use<K>> {
        self.request(Method::GET)
            .params(options.to_query(true))
            .watch()
            .await
    }

    /// Creates an object.
    pub async fn create(&self, object: &K, options: &WriteOptions) -> Result<K> {
        let request = self
            .request(Method::POST)
            .params(options.to_query())
            .json(object);
        self.object(request).await
    }

    /// Replaces an object (its resourceVersion guards against lost updates).
    pub async fn update(&self, object: &K, options: &WriteOptions) -> Result<K> {
        let name = name_of(object)?;
        let request = self
            .object_request(Method::PUT, name)
            .params(options.to_query())
            .json(object);
        self.object(request).await
    }

    /// Replaces an object's status subresource.
    pub async fn update_status(&self, object: &K, options: &WriteOptions) -> Result<K> {
        let name = name_of(object)?;
        let request = self
            .object_request(Method::PUT, name)
            .subresource("status")
            .params(options.to_query())
            .json(object);
        self.object(request).await
    }

    /// Gets an object through its status subresource.
    pub async fn get_status(&self, name: &str) -> Result<K> {
        self.object(self.object_request(Method::GET, name).subresource("status"))
            .await
    }

    /// Patches an object (merge, JSON, strategic merge or server-side apply).
    pub async fn patch(&self, name: &str, patch: &Patch, options: &PatchOptions) -> Result<K> {
        self.object(self.patch_request(name, patch, options)).await
    }

    /// Patches an object's status subresource.
    pub async fn patch_status(
        &self,
        name: &str,
        patch: &Patch,
        options: &PatchOptions,
    ) -> Result<K> {
        self.object(
            self.patch_request(name, patch, options)
                .subresource("status"),
        )
        .await
    }

    fn patch_request(&self, name: &str, patch: &Patch, options: &PatchOptions) -> Request {
        self.object_request(Method::PATCH, name)
            .params(options.to_query())
            .json_as(patch.body(), patch.content_type())
    }

    /// Deletes an object.
    pub async fn delete(&self, name: &str, options: &DeleteOptions) -> Result<Deleted<K>> {
        let request = self
            .object_request(Method::DELETE, name)
            .json(&options.body());
        let url = request.url();
        object_or_status(request.decode().await?, url)
    }

    /// Deletes every object matching `list` (selectors) in scope.
    pub async fn delete_collection(
        &self,
        list: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<Deleted<ObjectList<K>>> {
        let request = self
            .request(Method::DELETE)
            .params(list.to_query(false))
            .json(&options.body());
        let url = request.url();
        object_or_status(request.decode().await?, url)
    }

    /// Gets the scale subresource.
    pub async fn get_scale(&self, name: &str) -> Result<Scale> {
        self.object_request(Method::GET, name)
            .subresource("scale")
            .decode()
            .await
    }

    /// Replaces the scale subresource.
    pub async fn update_scale(
        &self,
        name: &str,
        scale: &Scale,
        options: &WriteOptions,
    ) -> Result<Scale> {
        self.object_request(Method::PUT, name)
            .subresource("scale")
            .params(options.to_query())
            .json(scale)
            .decode()
            .await
    }
}

fn name_of<K: Resource>(object: &K) -> Result<&str> {
    object
        .meta()
        .name
        .as_deref()
        .ok_or_else(|| Error::InvalidRequest("the object has no metadata.name".into()))
}

fn object_or_status<T: DeserializeOwned>(value: Value, url: String) -> Result<Deleted<T>> {
    let decode_error = |source| Error::Decode {
        verb: Method::DELETE,
        url,
        what: std::any::type_name::<T>(),
        source,
    };
    if value.get("kind").and_then(Value::as_str) == Some("Status") {
        serde_json::from_value(value)
            .map(Deleted::Status)
            .map_err(decode_error)
    } else {
        serde_json::from_value(value)
            .map(Deleted::Object)
            .map_err(decode_error)
    }
}
