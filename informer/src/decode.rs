//! Decoding list bodies and watch frames straight into `Arc<K>`, one object at a time, with
//! `managedFields` cut from the bytes first (unless kept).
//!
//! A list body is decoded while it streams in: items are split out of the buffer as soon as
//! they are complete and their bytes are dropped, so the whole body, a `serde_json::Value`
//! and the decoded objects never coexist.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::DeserializeOwned;

use crate::json::Scanner;
use crate::strip::strip_managed_fields;

/// A function applied to each object after decoding and before it is stored or delivered
/// (client-go's `TransformFunc`).
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

    /// Decodes one object's JSON.
    pub fn object(&self, bytes: &[u8], what: impl FnOnce() -> String) -> Result<K, DecodeError> {
        let stripped = self
            .strip_managed_fields
            .then(|| strip_managed_fields(bytes))
            .flatten();
        let bytes = stripped.as_deref().unwrap_or(bytes);
        let object = serde_json::from_slice::<K>(bytes).map_err(|source| DecodeError::Object {
            what: what(),
            kind: std::any::type_name::<K>(),
            source,
        })?;
        Ok(match &self.transform {
            Some(t) => t(object),
            None => object,
        })
    }
}

/// Where a [`ListDecoder`] is in the body.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Start,
    Members { first: bool },
    Items { first: bool },
    Done,
}

/// Decodes a list body fed in chunks.
#[derive(Debug)]
pub struct ListDecoder<K> {
    decoder: Decoder<K>,
    buf: BytesMut,
    state: State,
    metadata: Option<ListMeta>,
    items: Vec<Arc<K>>,
}

impl<K: DeserializeOwned> ListDecoder<K> {
    /// A decoder for one list response.
    pub fn new(decoder: Decoder<K>) -> Self {
        Self {
            decoder,
            buf: BytesMut::new(),
            state: State::Start,
            metadata: None,
            items: Vec::new(),
        }
    }

    /// Takes the next chunk of the body and decodes every item it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(next) = self.step(pos)? {
            pos = next;
        }
        self.buf.advance(pos);
        Ok(())
    }

    /// The list's metadata and items, once the whole body was fed.
    pub fn finish(self) -> Result<(ListMeta, Vec<Arc<K>>), DecodeError> {
        if self.state != State::Done {
            return Err(DecodeError::Malformed(format!(
                "the list body ended early or is not a Kubernetes list ({} items decoded, {} bytes left over)",
                self.items.len(),
                self.buf.len()
            )));
        }
        Ok((self.metadata.unwrap_or_default(), self.items))
    }

    /// One step from `pos`; `Ok(None)` when more input is needed (or the body is done).
    fn step(&mut self, pos: usize) -> Result<Option<usize>, DecodeError> {
        let mut s = Scanner::at(&self.buf, pos);
        match self.state {
            State::Done => {
                if s.peek().is_some() {
                    return Err(DecodeError::Malformed(
                        "data after the end of the list".into(),
                    ));
                }
                Ok(None)
            }
            State::Start => match s.peek() {
                None => Ok(None),
                Some(b'{') => {
                    s.i += 1;
                    self.state = State::Members { first: true };
                    Ok(Some(s.i))
                }
                Some(c) => Err(DecodeError::Malformed(format!(
                    "expected a JSON object, found {:?}",
                    char::from(c)
                ))),
            },
            State::Members { first } => {
                match s.peek() {
                    None => return Ok(None),
                    Some(b'}') => {
                        s.i += 1;
                        self.state = State::Done;
                        return Ok(Some(s.i));
                    }
                    Some(b',') if !first => s.i += 1,
                    Some(_) if first => {}
                    Some(c) => {
                        return Err(DecodeError::Malformed(format!(
                            "expected ',' between list members, found {:?}",
                            char::from(c)
                        )));
                    }
                }
                let Some(key) = s.string() else {
                    return Ok(None);
                };
                if s.eat(b':').is_none() {
                    return Ok(None);
                }
                let is_items = &self.buf[key.clone()] == b"items";
                if is_items {
                    return match s.peek() {
                        None => Ok(None),
                        Some(b'[') => {
                            s.i += 1;
                            self.state = State::Items { first: true };
                            Ok(Some(s.i))
                        }
                        // `"items": null` is an empty list.
                        Some(_) => {
                            if s.value().is_none() {
                                return Ok(None);
                            }
                            self.state = State::Members { first: false };
                            Ok(Some(s.i))
                        }
                    };
                }
                s.ws();
                let start = s.i;
                if s.value().is_none() {
                    return Ok(None);
                }
                if &self.buf[key] == b"metadata" {
                    let meta = serde_json::from_slice(&self.buf[start..s.i]).map_err(|source| {
                        DecodeError::Object {
                            what: "list metadata".into(),
                            kind: "ListMeta",
                            source,
                        }
                    })?;
                    self.metadata = Some(meta);
                }
                self.state = State::Members { first: false };
                Ok(Some(s.i))
            }
            State::Items { first } => {
                match s.peek() {
                    None => return Ok(None),
                    Some(b']') => {
                        s.i += 1;
                        self.state = State::Members { first: false };
                        return Ok(Some(s.i));
                    }
                    Some(b',') if !first => s.i += 1,
                    Some(_) if first => {}
                    Some(c) => {
                        return Err(DecodeError::Malformed(format!(
                            "expected ',' between list items, found {:?}",
                            char::from(c)
                        )));
                    }
                }
                s.ws();
                let start = s.i;
                if s.value().is_none() {
                    return Ok(None);
                }
                let index = self.items.len();
                let object = self
                    .decoder
                    .object(&self.buf[start..s.i], || format!("list item {index}"))?;
                self.items.push(Arc::new(object));
                self.state = State::Items { first: false };
                Ok(Some(s.i))
            }
        }
    }
}

/// A watch frame split into its type and its object's bytes.
#[derive(Debug)]
pub struct Frame<'a> {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub kind: &'a [u8],
    /// The object's JSON.
    pub object: &'a [u8],
}

/// Splits a watch frame `{"type":…,"object":{…}}` without decoding the object.
pub fn split_frame(line: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let malformed = || {
        let shown = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
        DecodeError::Malformed(format!("not a watch event: {shown:?}"))
    };
    let mut s = Scanner::new(line);
    s.eat(b'{').ok_or_else(malformed)?;
    let (mut kind, mut object) = (None, None);
    loop {
        let key = s.string().ok_or_else(malformed)?;
        s.eat(b':').ok_or_else(malformed)?;
        s.ws();
        let start = s.i;
        match &line[key] {
            b"type" => kind = Some(s.string().ok_or_else(malformed)?),
            b"object" => {
                s.value().ok_or_else(malformed)?;
                object = Some(start..s.i);
            }
            _ => s.value().ok_or_else(malformed)?,
        }
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b'}') => break,
            _ => return Err(malformed()),
        }
    }
    match (kind, object) {
        (Some(k), Some(o)) => Ok(Frame {
            kind: &line[k],
            object: &line[o],
        }),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn list_json(n: usize) -> Vec<u8> {
        let items: Vec<_> = (0..n)
            .map(|i| {
                json!({"metadata": {"name": format!("cm-{i}"), "namespace": "ns", "resourceVersion": i.to_string(),
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]},
                    "data": {"k": "v\"}]"}})
            })
            .collect();
        serde_json::to_vec(&json!({"kind": "ConfigMapList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "777", "continue": "tok"}, "items": items}))
        .unwrap()
    }

    fn decode_in_chunks(
        body: &[u8],
        chunk: usize,
        strip: bool,
    ) -> Result<(ListMeta, Vec<Arc<ConfigMap>>), DecodeError> {
        let mut d = ListDecoder::<ConfigMap>::new(Decoder::new(strip, None));
        for c in body.chunks(chunk) {
            d.feed(c)?;
        }
        d.finish()
    }

    #[test]
    fn decodes_lists_split_anywhere() {
        let body = list_json(7);
        for chunk in [1, 2, 3, 7, 64, 1000, body.len()] {
            let (meta, items) = decode_in_chunks(&body, chunk, true).unwrap();
            assert_eq!(meta.resource_version.as_deref(), Some("777"));
            assert_eq!(meta.continue_.as_deref(), Some("tok"));
            assert_eq!(items.len(), 7, "chunk {chunk}");
            assert_eq!(items[3].metadata.name.as_deref(), Some("cm-3"));
            assert!(items[3].metadata.managed_fields.is_none());
            assert_eq!(items[3].data.as_ref().unwrap()["k"], "v\"}]");
        }
        let (_, kept) = decode_in_chunks(&body, 5, false).unwrap();
        assert_eq!(
            kept[0].metadata.managed_fields.as_ref().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn empty_and_null_items() {
        let (meta, items) = decode_in_chunks(
            br#"{"metadata":{"resourceVersion":"5"},"items":[]}"#,
            3,
            true,
        )
        .unwrap();
        assert_eq!(
            (meta.resource_version.as_deref(), items.len()),
            (Some("5"), 0)
        );
        let (_, items) = decode_in_chunks(br#"{"metadata":{},"items":null}"#, 3, true).unwrap();
        assert!(items.is_empty());
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors() {
        let body = list_json(3);
        let err = decode_in_chunks(&body[..body.len() - 10], 16, true).unwrap_err();
        assert!(err.to_string().contains("ended early"), "{err}");
        assert!(decode_in_chunks(b"<html>oops</html>", 4, true).is_err());
        let bad_item = br#"{"items":[{"metadata":{"name":5}}]}"#;
        let err = decode_in_chunks(bad_item, 100, true).unwrap_err();
        assert!(err.to_string().contains("list item 0"), "{err}");
    }

    #[test]
    fn splits_watch_frames() {
        let line = br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#;
        let f = split_frame(line).unwrap();
        assert_eq!(f.kind, b"ADDED");
        assert_eq!(f.object, br#"{"metadata":{"name":"a"}}"#);
        let reversed = br#"{"object":{"kind":"Status"},"type":"ERROR"}"#;
        assert_eq!(split_frame(reversed).unwrap().kind, b"ERROR");
        for bad in [
            &b"garbage"[..],
            b"{\"type\":\"ADDED\"}",
            b"{\"type\":\"ADDED\",\"object\":{",
        ] {
            assert!(split_frame(bad).is_err());
        }
    }

    #[test]
    fn transform_is_applied() {
        let d = Decoder::<ConfigMap>::new(
            true,
            Some(Arc::new(|mut cm: ConfigMap| {
                cm.data = None;
                cm
            })),
        );
        let cm = d
            .object(
                br#"{"metadata":{"name":"a"},"data":{"x":"y"}}"#,
                String::new,
            )
            .unwrap();
        assert!(cm.data.is_none());
    }
}
