//! [`Compact<T>`]: an object kept as its compact JSON bytes plus its metadata.

use std::borrow::Cow;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::strip::strip_managed_fields;

/// An object of type `T` held as compact JSON (without `managedFields`), with its metadata
/// decoded for keys, resourceVersions and label selection. [`decode`](Self::decode) gives
/// the full object.
///
/// The metadata keeps name, namespace, uid, resourceVersion, generation, labels, owner
/// references, finalizers and timestamps; annotations are only in the JSON (they can be
/// large, e.g. `last-applied-configuration`).
pub struct Compact<T> {
    meta: ObjectMeta,
    json: Box<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Compact<T> {
    /// The object's JSON.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Bytes held for this object (JSON plus the main metadata strings), for accounting.
    pub fn held_bytes(&self) -> usize {
        self.json.len() + std::mem::size_of::<Self>()
    }
}

impl<T: DeserializeOwned> Compact<T> {
    /// Decodes the full object.
    pub fn decode(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}

impl<T> std::fmt::Debug for Compact<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compact")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("resource_version", &self.meta.resource_version)
            .field("json_bytes", &self.json.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// Decoding checks that the JSON is a valid `T` (so bad input fails at the reflector, where
/// it is reported, not later at a reader), then keeps only the bytes and the metadata.
impl<'de, T: DeserializeOwned> Deserialize<'de> for Compact<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        let json: Box<str> = match strip_managed_fields(raw.get().as_bytes()) {
            // Cutting a member out of valid JSON leaves valid UTF-8.
            Some(stripped) => String::from_utf8(stripped)
                .map_err(D::Error::custom)?
                .into_boxed_str(),
            None => raw.get().into(),
        };
        serde_json::from_str::<T>(&json).map_err(D::Error::custom)?;
        let MetadataOnly { mut metadata } =
            serde_json::from_str(&json).map_err(D::Error::custom)?;
        metadata.annotations = None;
        Ok(Self {
            meta: metadata,
            json,
            _type: PhantomData,
        })
    }
}

impl<T> Resource for Compact<T>
where
    T: Resource<DynamicType = ()>,
{
    type DynamicType = ();
    type Scope = T::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        T::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        T::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        T::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        T::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn keeps_bytes_and_metadata() {
        let json = r#"{"metadata":{"name":"a","namespace":"n","resourceVersion":"7","labels":{"x":"y"},"annotations":{"big":"zzz"}},"data":{"k":"v"}}"#;
        let c: Compact<ConfigMap> = serde_json::from_str(json).unwrap();
        assert_eq!(c.meta().name.as_deref(), Some("a"));
        assert_eq!(c.meta().resource_version.as_deref(), Some("7"));
        assert!(c.meta().annotations.is_none());
        let full = c.decode().unwrap();
        assert_eq!(full.data.unwrap()["k"], "v");
        assert_eq!(full.metadata.annotations.unwrap()["big"], "zzz");
        assert_eq!(Compact::<ConfigMap>::plural(&()), "configmaps");
    }

    #[test]
    fn managed_fields_are_not_kept() {
        let json = r#"{"metadata":{"name":"a","managedFields":[{"manager":"m","fieldsV1":{"f:data":{}}}]},"data":{"k":"v"}}"#;
        let c: Compact<ConfigMap> = serde_json::from_str(json).unwrap();
        assert!(!c.json().contains("managedFields"), "{}", c.json());
        assert!(c.meta().managed_fields.is_none());
        assert_eq!(c.decode().unwrap().data.unwrap()["k"], "v");
    }

    #[test]
    fn invalid_objects_are_rejected_when_decoded() {
        let err =
            serde_json::from_str::<Compact<ConfigMap>>(r#"{"metadata":{"name":1}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
