//! [`ListDecoder`]: a list body decoded item by item as its chunks arrive.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::DeserializeOwned;

use super::fast::FastPath;
use super::{DecodeError, Decoder};
use crate::json::Scanner;

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
    fast: FastPath,
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
            fast: FastPath::new(),
        }
    }

    /// Takes the next chunk of the body and decodes every item it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(chunk);
        self.drain()
    }

    /// Decodes what the buffer holds and drops the bytes consumed.
    fn drain(&mut self) -> Result<(), DecodeError> {
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
                // Find the item's end, and where its managedFields are, in one pass.
                let cut = if s.peek() == Some(b'{') {
                    let Some(cut) = s.object_and_managed_fields() else {
                        return Ok(None);
                    };
                    cut
                } else {
                    // Not an object: decoding it says what is wrong.
                    if s.value().is_none() {
                        return Ok(None);
                    }
                    None
                };
                let cut = cut
                    .filter(|_| self.decoder.strips_managed_fields())
                    .map(|c| c.start - start..c.end - start);
                let index = self.items.len();
                let object = self.fast.decode(
                    &self.decoder,
                    &self.buf[start..s.i],
                    cut,
                    s.deepest + 1,
                    || format!("list item {index}"),
                )?;
                self.items.push(Arc::new(object));
                self.state = State::Items { first: false };
                Ok(Some(s.i))
            }
        }
    }
}
