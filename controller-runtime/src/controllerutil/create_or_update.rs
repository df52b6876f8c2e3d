//! `create_or_update` and `create_or_patch`: bring one object to the state a closure
//! describes, writing only when something changed (controller-runtime's `CreateOrUpdate` and
//! `CreateOrPatch`).

use std::fmt;

use ferrokube_client::Patch;
use serde_json::{Map, Value};

use super::{Error, merge_patch};
use crate::cached_client::{self, CachedClient, WriteObject};
use crate::reconcile::BoxError;

/// What [`create_or_update`] or [`create_or_patch`] did to the object (controller-runtime's
/// `OperationResult`). Displays as controller-runtime's strings, which complete the
/// sentence "ConfigMap default/web has been …".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationResult {
    /// Nothing changed: no write (`unchanged`).
    Unchanged,
    /// The object did not exist and was created (`created`).
    Created,
    /// The object was updated or patched; its status, if any, was left alone (`updated`).
    Updated,
    /// The object and its status subresource were patched (`updatedStatus`;
    /// [`create_or_patch`] only).
    UpdatedStatus,
    /// Only the status subresource was patched (`updatedStatusOnly`; [`create_or_patch`]
    /// only).
    UpdatedStatusOnly,
}

impl OperationResult {
    /// controller-runtime's string for this result.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Created => "created",
            Self::Updated => "updated",
            Self::UpdatedStatus => "updatedStatus",
            Self::UpdatedStatusOnly => "updatedStatusOnly",
        }
    }
}

impl fmt::Display for OperationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object's namespace and name, to read it and to check the mutate function keeps them.
#[derive(PartialEq, Eq)]
struct Key {
    namespace: Option<String>,
    name: Option<String>,
}

impl Key {
    fn of<K: kube::Resource>(object: &K) -> Self {
        let meta = object.meta();
        Self {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.as_deref().unwrap_or("<unnamed>");
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{name}"),
            None => f.write_str(name),
        }
    }
}

fn kind<K: kube::Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}

fn client_error<K: kube::Resource<DynamicType = ()>>(
    verb: &'static str,
    key: &Key,
) -> impl FnOnce(cached_client::Error) -> Error {
    move |source| Error::Client {
        verb,
        kind: kind::<K>(),
        key: key.to_string(),
        source: Box::new(source),
    }
}

/// Runs the user's mutate function and checks it left the object's name and namespace alone.
fn mutate<K, F, E>(f: F, key: &Key, object: &mut K) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()>,
    F: FnOnce(&mut K) -> Result<(), E>,
    E: Into<BoxError>,
{
    f(object).map_err(|e| Error::Mutate(e.into()))?;
    let after = Key::of(object);
    if after != *key {
        return Err(Error::KeyMutated {
            kind: kind::<K>(),
            before: key.to_string(),
            after: after.to_string(),
        });
    }
    Ok(())
}

fn to_value<K: WriteObject<DynamicType = ()>>(object: &K) -> Result<Value, Error> {
    serde_json::to_value(object).map_err(|source| Error::Serialize {
        kind: kind::<K>(),
        source,
    })
}

/// Reads the object named by `object` from the client's cache: `Ok(None)` if absent.
async fn read<K: WriteObject<DynamicType = ()>>(
    client: &CachedClient,
    object: &K,
) -> Result<(Key, Option<K>), Error> {
    let key = Key::of(object);
    let Some(name) = key.name.as_deref().filter(|n| !n.is_empty()) else {
        return Err(Error::Unnamed { kind: kind::<K>() });
    };
    let current = client
        .get::<K>(key.namespace.as_deref(), name)
        .await
        .map_err(client_error::<K>("get", &key))?;
    Ok((key, current.map(|c| (*c).clone())))
}

/// Mutates `object` and creates it.
async fn create<K, F, E>(
    client: &CachedClient,
    key: &Key,
    mut object: K,
    f: F,
) -> Result<(K, OperationResult), Error>
where
    K: WriteObject<DynamicType = ()>,
    F: FnOnce(&mut K) -> Result<(), E>,
    E: Into<BoxError>,
{
    mutate(f, key, &mut object)?;
    let created = client
        .create(&object)
        .await
        .map_err(client_error::<K>("create", key))?;
    Ok((created, OperationResult::Created))
}

/// Brings the object named by `object` (its namespace and name) to the state `f` makes of it:
/// controller-runtime's `CreateOrUpdate`.
///
/// - Not in the client's cache: `f` mutates `object`, which is created → [`Created`].
/// - In the cache: `f` mutates a copy of the cached object (the rest of `object` is not
///   used); if that changed nothing (compared as JSON) → [`Unchanged`], no write; otherwise
///   the whole object is updated, guarded by the cached resourceVersion → [`Updated`].
///
/// Returns the object as the API server answered (the cached copy when unchanged).
///
/// `f` must set every field it cares about, each time, and must not change the name or
/// namespace. Setting a field the API server defaults back to its unset value makes every
/// call an update; changes to the status are discarded by the API server when the type has
/// a status subresource (use [`create_or_patch`]).
///
/// The read comes from the cache, which may lag behind this process's own writes: right
/// after a create, the next call may try to create again and fail with AlreadyExists, and an
/// update from a stale cache fails with a conflict. Both are reported as
/// [`Error::Client`] ([`Error::is_already_exists`], [`Error::is_conflict`]): return the error
/// and let the controller retry.
///
/// # Errors
///
/// [`Error::Unnamed`], [`Error::Mutate`], [`Error::KeyMutated`], [`Error::Serialize`],
/// [`Error::Client`].
///
/// ```no_run
/// use ferrokube_runtime::controllerutil::{self, OperationResult};
/// use ferrokube_runtime::CachedClient;
/// use k8s_openapi::api::core::v1::ConfigMap;
///
/// # async fn demo(client: CachedClient) -> Result<(), controllerutil::Error> {
/// let mut cm = ConfigMap::default();
/// cm.metadata.name = Some("settings".into());
/// cm.metadata.namespace = Some("default".into());
/// let (cm, result) = controllerutil::create_or_update(&client, cm, |cm| {
///     cm.data.get_or_insert_default().insert("mode".into(), "fast".into());
///     Ok::<_, std::convert::Infallible>(())
/// })
/// .await?;
/// if result != OperationResult::Unchanged {
///     tracing::info!(name = ?cm.metadata.name, %result, "ConfigMap reconciled");
/// }
/// # Ok(()) }
/// ```
///
/// [`Created`]: OperationResult::Created
/// [`Updated`]: OperationResult::Updated
/// [`Unchanged`]: OperationResult::Unchanged
pub async fn create_or_update<K, F, E>(
    client: &CachedClient,
    object: K,
    f: F,
) -> Result<(K, OperationResult), Error>
where
    K: WriteObject<DynamicType = ()>,
    F: FnOnce(&mut K) -> Result<(), E>,
    E: Into<BoxError>,
{
    let (key, current) = read(client, &object).await?;
    let Some(mut object) = current else {
        return create(client, &key, object, f).await;
    };
    let before = to_value(&object)?;
    mutate(f, &key, &mut object)?;
    if to_value(&object)? == before {
        return Ok((object, OperationResult::Unchanged));
    }
    let updated = client
        .update(&object)
        .await
        .map_err(client_error::<K>("update", &key))?;
    Ok((updated, OperationResult::Updated))
}

/// Splits a serialized object into everything but `status`, and `status` (`Null` if absent).
fn split_status(value: Value) -> (Value, Value) {
    match value {
        Value::Object(mut map) => {
            let status = map.remove("status").unwrap_or(Value::Null);
            (Value::Object(map), status)
        }
        other => (other, Value::Null),
    }
}

/// The merge patch for the status subresource, `{"status": …}`, if the status changed.
fn status_patch(before: &Value, after: &Value) -> Option<Value> {
    merge_patch(before, after).map(|p| Value::Object(Map::from_iter([("status".to_owned(), p)])))
}

/// Brings the object named by `object` to the state `f` makes of it, writing JSON merge
/// patches of what `f` changed: controller-runtime's `CreateOrPatch`.
///
/// - Not in the client's cache: `f` mutates `object`, which is created → [`Created`] (a
///   status set by `f` is dropped by the API server; set it on the next reconcile).
/// - In the cache: `f` mutates a copy of the cached object, then
///   - if anything but `status` changed, a merge patch of those changes goes to the object;
///   - if `status` changed, a merge patch of its changes goes to the status subresource
///     (the type must have one);
///
///   → [`Updated`], [`UpdatedStatus`] (both), [`UpdatedStatusOnly`], or [`Unchanged`] (no
///   write).
///
/// Only the changed fields are sent and no resourceVersion, so a patch does not conflict with
/// writes to other fields made since the cache saw the object. Returns the object as the API
/// server last answered (the cached copy when unchanged). The caveats of
/// [`create_or_update`] about defaulted fields and cache lag hold here too.
///
/// # Errors
///
/// [`Error::Unnamed`], [`Error::Mutate`], [`Error::KeyMutated`], [`Error::Serialize`],
/// [`Error::Client`] (if the status patch fails after the object patch succeeded, the
/// object patch stays).
///
/// [`Created`]: OperationResult::Created
/// [`Updated`]: OperationResult::Updated
/// [`UpdatedStatus`]: OperationResult::UpdatedStatus
/// [`UpdatedStatusOnly`]: OperationResult::UpdatedStatusOnly
/// [`Unchanged`]: OperationResult::Unchanged
pub async fn create_or_patch<K, F, E>(
    client: &CachedClient,
    object: K,
    f: F,
) -> Result<(K, OperationResult), Error>
where
    K: WriteObject<DynamicType = ()>,
    F: FnOnce(&mut K) -> Result<(), E>,
    E: Into<BoxError>,
{
    let (key, current) = read(client, &object).await?;
    let Some(mut object) = current else {
        return create(client, &key, object, f).await;
    };
    let (before, before_status) = split_status(to_value(&object)?);
    mutate(f, &key, &mut object)?;
    let (after, after_status) = split_status(to_value(&object)?);

    let mut result = OperationResult::Unchanged;
    let mut latest = None;
    if let Some(patch) = merge_patch(&before, &after) {
        latest = Some(
            client
                .patch(&object, &Patch::Merge(patch))
                .await
                .map_err(client_error::<K>("patch", &key))?,
        );
        result = OperationResult::Updated;
    }
    if let Some(body) = status_patch(&before_status, &after_status) {
        latest = Some(
            client
                .patch_status(&object, &Patch::Merge(body))
                .await
                .map_err(client_error::<K>("patch the status of", &key))?,
        );
        result = match result {
            OperationResult::Updated => OperationResult::UpdatedStatus,
            _ => OperationResult::UpdatedStatusOnly,
        };
    }
    Ok((latest.unwrap_or(object), result))
}

/// The merge patches [`create_or_patch`] sends for a change from `before` to `after`:
/// (object patch, status patch). For tests.
#[cfg(test)]
fn patches(before: Value, after: Value) -> (Option<Value>, Option<Value>) {
    let (before, before_status) = split_status(before);
    let (after, after_status) = split_status(after);
    (
        merge_patch(&before, &after),
        status_patch(&before_status, &after_status),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn deployment() -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("web".into());
        d.metadata.namespace = Some("default".into());
        d.metadata.resource_version = Some("7".into());
        d
    }

    fn value(d: &Deployment) -> Value {
        serde_json::to_value(d).unwrap()
    }

    #[test]
    fn operation_results_print_as_controller_runtime() {
        let all = [
            (OperationResult::Unchanged, "unchanged"),
            (OperationResult::Created, "created"),
            (OperationResult::Updated, "updated"),
            (OperationResult::UpdatedStatus, "updatedStatus"),
            (OperationResult::UpdatedStatusOnly, "updatedStatusOnly"),
        ];
        for (result, s) in all {
            assert_eq!(result.to_string(), s);
            assert_eq!(result.as_str(), s);
        }
    }

    #[test]
    fn status_and_object_patches_are_separate() {
        let before = deployment();
        let mut labels_only = before.clone();
        labels_only.metadata.labels = Some([("app".into(), "web".into())].into());
        assert_eq!(
            patches(value(&before), value(&labels_only)),
            (Some(json!({"metadata": {"labels": {"app": "web"}}})), None)
        );

        let mut status_only = before.clone();
        status_only.status = Some(DeploymentStatus {
            observed_generation: Some(3),
            ..DeploymentStatus::default()
        });
        assert_eq!(
            patches(value(&before), value(&status_only)),
            (None, Some(json!({"status": {"observedGeneration": 3}})))
        );

        let mut both = status_only.clone();
        both.metadata.labels = labels_only.metadata.labels.clone();
        assert_eq!(
            patches(value(&before), value(&both)),
            (
                Some(json!({"metadata": {"labels": {"app": "web"}}})),
                Some(json!({"status": {"observedGeneration": 3}}))
            )
        );

        // Status removed: null, which clears it.
        assert_eq!(
            patches(value(&status_only), value(&before)),
            (None, Some(json!({"status": null})))
        );
        assert_eq!(patches(value(&both), value(&both)), (None, None));
    }

    #[test]
    fn patches_carry_no_resource_version() {
        let before = deployment();
        let mut after = before.clone();
        after.metadata.annotations = Some([("a".into(), "b".into())].into());
        let (patch, _) = patches(value(&before), value(&after));
        let patch = patch.unwrap();
        assert!(
            patch["metadata"].get("resourceVersion").is_none(),
            "{patch}"
        );
    }

    #[test]
    fn mutate_must_keep_name_and_namespace() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("a".into());
        cm.metadata.namespace = Some("ns".into());
        let key = Key::of(&cm);
        mutate(
            |cm: &mut ConfigMap| {
                cm.data = Some([("k".into(), "v".into())].into());
                Ok::<_, BoxError>(())
            },
            &key,
            &mut cm,
        )
        .unwrap();

        let err = mutate(
            |cm: &mut ConfigMap| {
                cm.metadata.name = Some("b".into());
                Ok::<_, BoxError>(())
            },
            &key,
            &mut cm.clone(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::KeyMutated { kind, before, after }
                if kind == "ConfigMap" && before == "ns/a" && after == "ns/b"),
            "{err:?}"
        );
        assert!(err.to_string().contains("name"), "{err}");

        let err = mutate(
            |cm: &mut ConfigMap| {
                cm.metadata.namespace = None;
                Ok::<_, BoxError>(())
            },
            &key,
            &mut cm.clone(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::KeyMutated { .. }), "{err:?}");

        let err = mutate(
            |_: &mut ConfigMap| Err("no such image"),
            &key,
            &mut cm.clone(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Mutate(e) if e.to_string() == "no such image"),
            "{err:?}"
        );
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("no such image".to_owned())
        );
    }

    #[test]
    fn keys_print_like_requests() {
        let mut cm = ConfigMap::default();
        assert_eq!(Key::of(&cm).to_string(), "<unnamed>");
        cm.metadata.name = Some("a".into());
        assert_eq!(Key::of(&cm).to_string(), "a");
        cm.metadata.namespace = Some("ns".into());
        assert_eq!(Key::of(&cm).to_string(), "ns/a");
    }
}
