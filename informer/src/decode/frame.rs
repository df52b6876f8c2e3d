//! Watch frames: `{"type":…,"object":{…}}` split without decoding the object.

use serde::Deserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{DecodeError, Decoder};
use crate::json::Scanner;
use ferrokube_client::skip::Key;

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

/// A watch frame parsed in one pass: an object event's object is decoded while the frame is
/// read (when `type` comes first, as the API server writes it); anything else is left raw.
pub(crate) enum Parsed<'a, K> {
    /// `ADDED`, `MODIFIED` or `DELETED` with its decoded (and transformed) object.
    Object(&'a str, K),
    /// Any other type (`BOOKMARK`, `ERROR`, unknown) with its object's JSON.
    Other(&'a str, &'a [u8]),
}

/// Parses a watch frame in one pass. On any error the caller falls back to [`split_frame`]
/// and [`Decoder::object`], which say precisely what is wrong.
pub(crate) fn parse_frame<'a, K: DeserializeOwned>(
    decoder: &Decoder<K>,
    line: &'a [u8],
) -> Result<Parsed<'a, K>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let parsed = de.deserialize_map(FrameVisitor { decoder })?;
    de.end()?;
    Ok(parsed)
}

fn is_object_event(kind: &str) -> bool {
    matches!(kind, "ADDED" | "MODIFIED" | "DELETED")
}

struct FrameVisitor<'d, K> {
    decoder: &'d Decoder<K>,
}

enum FrameObject<'a, K> {
    Decoded(K),
    Raw(&'a RawValue),
}

impl<'de, K: DeserializeOwned> Visitor<'de> for FrameVisitor<'_, K> {
    type Value = Parsed<'de, K>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a watch event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind: Option<&'de str> = None;
        let mut object = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "type" => kind = Some(map.next_value()?),
                "object" if kind.is_some_and(is_object_event) => {
                    object = Some(FrameObject::Decoded(
                        map.next_value_seed(ObjectSeed(self.decoder))?,
                    ));
                }
                "object" => object = Some(FrameObject::Raw(map.next_value()?)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (Some(kind), Some(object)) = (kind, object) else {
            return Err(de::Error::custom(
                "a watch event needs a type and an object",
            ));
        };
        Ok(match object {
            FrameObject::Decoded(object) => Parsed::Object(kind, object),
            // `object` came before `type`.
            FrameObject::Raw(raw) if is_object_event(kind) => {
                let object = self
                    .decoder
                    .object(raw.get().as_bytes(), String::new)
                    .map_err(de::Error::custom)?;
                Parsed::Object(kind, object)
            }
            FrameObject::Raw(raw) => Parsed::Other(kind, raw.get().as_bytes()),
        })
    }
}

struct ObjectSeed<'d, K>(&'d Decoder<K>);

impl<'de, K: DeserializeOwned> DeserializeSeed<'de> for ObjectSeed<'_, K> {
    type Value = K;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        self.0.deserialize(d).map(|object| self.0.transform(object))
    }
}
