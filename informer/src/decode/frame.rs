//! Watch frames: `{"type":…,"object":{…}}` split without decoding the object.

use super::DecodeError;
use crate::json::Scanner;

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
