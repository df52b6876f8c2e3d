//! The fast path for list items: simd-json, with serde_json as the reference.
//!
//! simd-json first indexes an item's structure (SIMD), then deserializes from that tape, so it
//! knows every array's length before serde builds the `Vec` for it: vectors get their exact
//! capacity instead of growing by doubling (for Pods that is ~1.2 KB less per object and no
//! reallocation), and parsing is faster. `managedFields` are cut from the item's bytes first
//! (into a reused scratch buffer), so they are never parsed.
//!
//! serde_json stays the reference: if simd-json rejects an item, the item is decoded again
//! with serde_json, which either accepts it (then simd-json is not used again by this decoder:
//! some types, like `Compact<T>` and its `RawValue`, only work with serde_json) or says
//! precisely what is wrong with it.

use std::ops::Range;

use serde::de::DeserializeOwned;

use super::{DecodeError, Decoder};

/// serde_json's recursion limit.
const MAX_DEPTH: usize = 128;

/// Reused buffers of the fast path.
pub(crate) struct FastPath {
    enabled: bool,
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    pub(crate) fn new() -> Self {
        Self {
            enabled: true,
            scratch: Vec::new(),
            buffers: simd_json::Buffers::default(),
        }
    }

    /// Decodes one complete item (`bytes` is exactly its JSON, nested `depth` deep; `cut` the
    /// bytes of its `managedFields` member to leave out, if any), transformed.
    ///
    /// Items nested deeper than serde_json's recursion limit go to serde_json, which refuses
    /// them cleanly instead of recursing without bound.
    pub(crate) fn decode<K: DeserializeOwned>(
        &mut self,
        decoder: &Decoder<K>,
        bytes: &[u8],
        cut: Option<Range<usize>>,
        depth: usize,
        what: impl FnOnce() -> String,
    ) -> Result<K, DecodeError> {
        if self.enabled && depth <= MAX_DEPTH {
            self.scratch.clear();
            match cut {
                Some(cut) => {
                    self.scratch.extend_from_slice(&bytes[..cut.start]);
                    self.scratch.extend_from_slice(&bytes[cut.end..]);
                }
                None => self.scratch.extend_from_slice(bytes),
            }
            let decoded = simd_json::serde::from_slice_with_buffers::<K>(
                &mut self.scratch,
                &mut self.buffers,
            );
            if let Ok(object) = decoded {
                return Ok(decoder.transform(object));
            }
        }
        let object = decoder.object(bytes, what)?;
        if depth <= MAX_DEPTH {
            // serde_json took what simd-json did not: use serde_json from now on.
            self.enabled = false;
        }
        Ok(object)
    }
}
