//! Skipping `metadata.managedFields` while an object is deserialized (shared by the
//! informer's decoders and [`Api::without_managed_fields`](crate::Api::without_managed_fields)).
//!
//! [`SkipManagedFields`] wraps any serde `Deserializer` for a whole Kubernetes object. It
//! watches the keys of the object's top-level map and of its `metadata` map, and consumes
//! the value of `metadata.managedFields` with [`IgnoredAny`] instead of handing it to the
//! target type: the parser steps over those bytes without allocating, so the field-ownership
//! tree is never built and the object's bytes are read once. Everything else is passed
//! through untouched, so any `K: Deserialize` (typed, `DynamicObject`, `PartialObjectMeta`)
//! decodes exactly as it would without the wrapper, only without `managedFields`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Where in the object a wrapped deserializer stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    /// The object itself: its `metadata` member is wrapped.
    Object,
    /// The object's `metadata`: its `managedFields` member is skipped.
    Metadata,
}

/// A deserializer for a whole object that leaves `metadata.managedFields` out.
pub struct SkipManagedFields<D> {
    inner: D,
    level: Level,
}

impl<D> SkipManagedFields<D> {
    /// Wraps the deserializer of a whole object.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            level: Level::Object,
        }
    }
}

/// Forwards `deserialize_*` methods to the inner deserializer with a wrapped visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* Wrapped { visitor, level: self.level })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for SkipManagedFields<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The target type's visitor, with maps (and the deserializers behind `Some` and newtypes)
/// wrapped at the same level.
struct Wrapped<V> {
    visitor: V,
    level: Level,
}

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrapped<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(SkipManagedFields {
            inner: d,
            level: self.level,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(SkipManagedFields {
            inner: d,
            level: self.level,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Members {
            map,
            level: self.level,
            wrap_next: false,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// The members of the object (`Level::Object`) or of its metadata (`Level::Metadata`).
struct Members<A> {
    map: A,
    level: Level,
    /// The key just returned was the object's `metadata`: wrap its value.
    wrap_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            let name = key.as_str();
            match self.level {
                Level::Metadata if name == "managedFields" => {
                    self.map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Level::Object => self.wrap_next = name == "metadata",
                Level::Metadata => {}
            }
            return match key {
                Key::Borrowed(s) => seed
                    .deserialize(de::value::BorrowedStrDeserializer::new(s))
                    .map(Some),
                Key::Owned(s) => seed
                    .deserialize(de::value::StringDeserializer::new(s))
                    .map(Some),
            };
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.wrap_next) {
            self.map.next_value_seed(MetadataSeed(seed))
        } else {
            self.map.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The seed of the object's `metadata` value, deserialized at `Level::Metadata`.
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(SkipManagedFields {
            inner: d,
            level: Level::Metadata,
        })
    }
}

/// A map key, borrowed from the input when it has no escapes.
pub enum Key<'de> {
    /// Borrowed from the input.
    Borrowed(&'de str),
    /// Unescaped into a new string.
    Owned(String),
}

impl Key<'_> {
    /// The key.
    pub fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use serde::Deserialize;
    use serde_json::{Value, json};

    fn decode<K: for<'de> Deserialize<'de>>(v: &Value) -> K {
        let bytes = serde_json::to_vec(v).unwrap();
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let k = K::deserialize(SkipManagedFields::new(&mut de)).unwrap();
        de.end().unwrap();
        k
    }

    fn mf() -> Value {
        json!([{"manager": "m", "operation": "Apply", "fieldsV1": {"f:data": {"f:a{": {}, "k:{\"x\":1}": {}}}}])
    }

    #[test]
    fn typed_objects_lose_managed_fields_only() {
        let cm: ConfigMap = decode(&json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "a", "managedFields": mf(), "labels": {"managedFields": "kept"}, "uid": "u"},
            "data": {"managedFields": "kept too"}
        }));
        assert!(cm.metadata.managed_fields.is_none());
        assert_eq!(cm.metadata.name.as_deref(), Some("a"));
        assert_eq!(cm.metadata.uid.as_deref(), Some("u"));
        assert_eq!(cm.metadata.labels.unwrap()["managedFields"], "kept");
        assert_eq!(cm.data.unwrap()["managedFields"], "kept too");

        let pod: Pod = decode(&json!({
            "metadata": {"managedFields": mf(), "name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }));
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.spec.unwrap().containers[0].name, "c");
    }

    #[test]
    fn escaped_keys_and_untyped_objects() {
        // `"managed\u0046ields"` is `managedFields` spelled with an escape: an owned key.
        let text = br#"{"metadata":{"name":"a","managed\u0046ields":[{"manager":"m"}]},"data":{}}"#;
        let mut de = serde_json::Deserializer::from_slice(text);
        let cm = ConfigMap::deserialize(SkipManagedFields::new(&mut de)).unwrap();
        assert!(cm.metadata.managed_fields.is_none());

        let value: Value = decode(
            &json!({"metadata": {"managedFields": mf(), "name": "x"}, "spec": {"metadata": {"managedFields": 1}}}),
        );
        assert_eq!(
            value,
            json!({"metadata": {"name": "x"}, "spec": {"metadata": {"managedFields": 1}}})
        );

        let dynamic: kube::api::DynamicObject = decode(
            &json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "d", "managedFields": mf()}, "spec": {"a": 1}}),
        );
        assert!(dynamic.metadata.managed_fields.is_none());
        assert_eq!(dynamic.data["spec"]["a"], 1);

        let partial: kube::core::PartialObjectMeta<Pod> = decode(
            &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "m", "managedFields": mf()}}),
        );
        assert!(partial.metadata.managed_fields.is_none());
        assert_eq!(partial.metadata.name.as_deref(), Some("m"));
    }

    #[test]
    fn errors_pass_through() {
        let mut de = serde_json::Deserializer::from_slice(br#"{"metadata":{"name":5}}"#);
        let err = ConfigMap::deserialize(SkipManagedFields::new(&mut de)).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let mut de = serde_json::Deserializer::from_slice(br#"{"metadata":{"managedFields":[{"#);
        assert!(
            ConfigMap::deserialize(SkipManagedFields::new(&mut de))
                .unwrap_err()
                .is_eof()
        );
    }
}
