//! A list body scanned item by item as its chunks arrive ([`ListScanner`]), its complete items
//! handed out in [`Batch`]es to decode, here ([`ListDecoder`]) or on other threads
//! ([`ParallelDecoder`](super::pool::ParallelDecoder)).

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::de::DeserializeOwned;

use super::fast::FastPath;
use super::{DecodeError, Decoder};
use crate::json::Scanner;

/// Where a [`ListScanner`] is in the body.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Start,
    Members { first: bool },
    Items { first: bool },
    Done,
}

/// One complete item of a [`Batch`].
#[derive(Debug)]
struct Item {
    /// The item's JSON in the batch's bytes.
    bytes: Range<usize>,
    /// Its `metadata.managedFields` member, relative to the item, when it is to be cut.
    cut: Option<Range<usize>>,
    /// How deeply it nests.
    depth: usize,
}

/// Complete list items, in order, with the bytes that hold them.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Bytes,
    items: Vec<Item>,
    /// The list index of the first item.
    first: usize,
}

impl Batch {
    /// Decodes every item, in order; the first invalid one is the error.
    pub(crate) fn decode<K: DeserializeOwned>(
        &self,
        decoder: &Decoder<K>,
        fast: &mut FastPath,
    ) -> Result<Vec<Arc<K>>, DecodeError> {
        let mut objects = Vec::with_capacity(self.items.len());
        for (n, item) in self.items.iter().enumerate() {
            let index = self.first + n;
            let object = fast.decode(
                decoder,
                &self.bytes[item.bytes.clone()],
                item.cut.clone(),
                item.depth,
                || format!("list item {index}"),
            )?;
            objects.push(Arc::new(object));
        }
        Ok(objects)
    }
}

/// Finds the items of a list body fed in chunks, and its metadata.
#[derive(Debug)]
pub(crate) struct ListScanner {
    strip: bool,
    /// The bytes of the items scanned but not handed out yet, then bytes not scanned yet.
    buf: BytesMut,
    /// How much of `buf` was scanned.
    scanned: usize,
    state: State,
    metadata: Option<ListMeta>,
    /// Items scanned but not handed out yet; their ranges index `buf`.
    items: Vec<Item>,
    /// Items handed out in batches so far.
    handed_out: usize,
    /// How many unscanned bytes to wait for before scanning again: after a step found its
    /// value incomplete, twice what it looked at. A value spread over many chunks (a large
    /// item, a slow connection) is rescanned from its start a logarithmic number of times,
    /// not once per chunk.
    wait_for: usize,
    /// Bytes looked at by steps that needed more input (the rescanning cost).
    #[cfg(test)]
    pub(crate) rescanned: usize,
}

impl ListScanner {
    /// A scanner for one list response; `strip` marks `managedFields` to cut.
    pub(crate) fn new(strip: bool) -> Self {
        Self {
            strip,
            buf: BytesMut::new(),
            scanned: 0,
            state: State::Start,
            metadata: None,
            items: Vec::new(),
            handed_out: 0,
            wait_for: 0,
            #[cfg(test)]
            rescanned: 0,
        }
    }

    /// Takes the next chunk of the body and scans every item it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() - self.scanned >= self.wait_for {
            self.scan()?;
        }
        if self.items.is_empty() {
            // Nothing to keep: drop what was scanned.
            self.buf.advance(self.scanned);
            self.scanned = 0;
        }
        Ok(())
    }

    /// Steps while values are complete; then waits for twice the bytes the last step needed.
    fn scan(&mut self) -> Result<(), DecodeError> {
        while let Some(next) = self.step(self.scanned)? {
            self.scanned = next;
        }
        let pending = self.buf.len() - self.scanned;
        #[cfg(test)]
        {
            self.rescanned += pending;
        }
        self.wait_for = pending.saturating_mul(2);
        Ok(())
    }

    /// The items scanned so far, once their bytes reach `min_bytes`.
    pub(crate) fn batch(&mut self, min_bytes: usize) -> Option<Batch> {
        if self.items.is_empty() || self.scanned < min_bytes {
            return None;
        }
        // Copied at their exact size: the buffer is reused for the chunks to come, and a batch
        // holds no more memory than its items while it waits to be decoded. (Sharing the
        // buffer instead, `split_to().freeze()`, measured ~1 % less CPU but +0.7 MiB of peak
        // for 5,000 Pods: every batch then pins a whole chunk-sized allocation.)
        let bytes = Bytes::copy_from_slice(&self.buf[..self.scanned]);
        self.buf.advance(self.scanned);
        self.scanned = 0;
        let items = std::mem::take(&mut self.items);
        let first = self.handed_out;
        self.handed_out += items.len();
        Some(Batch {
            bytes,
            items,
            first,
        })
    }

    /// The list's metadata and its last items, once the whole body was fed.
    pub(crate) fn finish(&mut self) -> Result<(ListMeta, Option<Batch>), DecodeError> {
        // What arrived since the last scan (it may not have reached `wait_for`).
        self.scan()?;
        if self.state != State::Done {
            return Err(DecodeError::Malformed(format!(
                "the list body ended early or is not a Kubernetes list ({} items read, {} bytes left over)",
                self.handed_out + self.items.len(),
                self.buf.len() - self.scanned
            )));
        }
        let last = self.batch(0);
        Ok((self.metadata.take().unwrap_or_default(), last))
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
                    .filter(|_| self.strip)
                    .map(|c| c.start - start..c.end - start);
                self.items.push(Item {
                    bytes: start..s.i,
                    cut,
                    depth: s.deepest + 1,
                });
                self.state = State::Items { first: false };
                Ok(Some(s.i))
            }
        }
    }
}

/// Decodes a list body fed in chunks, on the calling thread (the reference for the
/// parallel decoder's tests).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct ListDecoder<K> {
    decoder: Decoder<K>,
    scanner: ListScanner,
    fast: FastPath,
    items: Vec<Arc<K>>,
}

#[cfg(test)]
impl<K: DeserializeOwned> ListDecoder<K> {
    /// A decoder for one list response.
    pub fn new(decoder: Decoder<K>) -> Self {
        Self {
            scanner: ListScanner::new(decoder.strips_managed_fields()),
            decoder,
            fast: FastPath::new(),
            items: Vec::new(),
        }
    }

    /// Takes the next chunk of the body and decodes every item it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        self.scanner.feed(chunk)?;
        if let Some(batch) = self.scanner.batch(0) {
            self.items
                .extend(batch.decode(&self.decoder, &mut self.fast)?);
        }
        Ok(())
    }

    /// The list's metadata and items, once the whole body was fed.
    pub fn finish(mut self) -> Result<(ListMeta, Vec<Arc<K>>), DecodeError> {
        let (metadata, last) = self.scanner.finish()?;
        if let Some(batch) = last {
            self.items
                .extend(batch.decode(&self.decoder, &mut self.fast)?);
        }
        Ok((metadata, self.items))
    }
}
