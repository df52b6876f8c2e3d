//! Decoding list bodies and watch frames straight into `Arc<K>`, one object at a time,
//! without `metadata.managedFields` (unless kept).
//!
//! A list body is decoded while it streams in: as soon as an item's bytes are complete it is
//! decoded and its bytes are dropped, so the whole body, a `serde_json::Value` and the decoded
//! objects never coexist. A list larger than one batch of items (64 KiB) is decoded in tasks
//! on the runtime's worker threads, up to one per worker (at most four), while the body is
//! still being read (module `pool`). Items take the fast path (module `fast`: simd-json, exact
//! `Vec` capacities, `managedFields` cut from the bytes) with serde_json as the reference;
//! watch frames are parsed by serde_json in one pass, skipping `managedFields` while parsing
//! (see `SkipManagedFields`).

use std::sync::Arc;

use serde::Deserializer;
use serde::de::DeserializeOwned;

use ferrokube_client::skip::SkipManagedFields;

mod fast;
pub(crate) mod frame;
mod list;
mod pool;
#[cfg(test)]
mod tests;

pub(crate) use frame::split_frame;
#[cfg(test)]
pub(crate) use list::ListDecoder;
pub(crate) use pool::ParallelDecoder;

/// A function applied to each object after decoding and before it is stored or delivered
/// (client-go's `TransformFunc`).
#[doc(alias = "TransformFunc")]
pub type Transform<K> = Arc<dyn Fn(K) -> K + Send + Sync>;

/// Why bytes from the server could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// An object (list item or watch event object) is not a valid `K`.
    #[error("{what} is not a valid {kind}")]
    Object {
        /// Which object, e.g. "list item 12".
        what: String,
        /// The Rust type expected.
        kind: &'static str,
        /// Where serde stopped.
        #[source]
        source: serde_json::Error,
    },
    /// The body is not a Kubernetes list or a watch frame.
    #[error("{0}")]
    Malformed(String),
    /// The tasks decoding a list were stopped before it was decoded (the runtime is shutting
    /// down).
    #[error("decoding the list stopped before its end: the runtime is shutting down")]
    Stopped,
}

/// How objects are decoded.
pub struct Decoder<K> {
    strip_managed_fields: bool,
    transform: Option<Transform<K>>,
}

impl<K> Clone for Decoder<K> {
    fn clone(&self) -> Self {
        Self {
            strip_managed_fields: self.strip_managed_fields,
            transform: self.transform.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Decoder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("strip_managed_fields", &self.strip_managed_fields)
            .field("transform", &self.transform.is_some())
            .finish()
    }
}

impl<K: DeserializeOwned> Decoder<K> {
    /// A decoder that strips `managedFields` when `strip` and then applies `transform`.
    pub fn new(strip: bool, transform: Option<Transform<K>>) -> Self {
        Self {
            strip_managed_fields: strip,
            transform,
        }
    }

    /// Decodes one object's JSON (the whole of `bytes`).
    pub fn object(&self, bytes: &[u8], what: impl FnOnce() -> String) -> Result<K, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let object = self
            .deserialize(&mut de)
            .and_then(|object| de.end().map(|()| object))
            .map_err(|source| self.error(what(), source))?;
        Ok(self.transform(object))
    }

    /// Whether `managedFields` are left out.
    pub(crate) fn strips_managed_fields(&self) -> bool {
        self.strip_managed_fields
    }

    /// Deserializes one object from `d`, skipping `managedFields` unless they are kept.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(&self, d: D) -> Result<K, D::Error> {
        if self.strip_managed_fields {
            K::deserialize(SkipManagedFields::new(d))
        } else {
            K::deserialize(d)
        }
    }

    /// Applies the transform, if any.
    pub(crate) fn transform(&self, object: K) -> K {
        match &self.transform {
            Some(t) => t(object),
            None => object,
        }
    }

    /// The error for an object that is not a valid `K`.
    pub(crate) fn error(&self, what: String, source: serde_json::Error) -> DecodeError {
        DecodeError::Object {
            what,
            kind: std::any::type_name::<K>(),
            source,
        }
    }
}
