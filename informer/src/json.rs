//! A minimal JSON scanner: finds member and value boundaries without decoding.

use std::ops::Range;

/// A forward-only scanner over JSON bytes that skips values without decoding them. Every
/// method returns `None` when the input ends early or is not JSON.
pub(crate) struct Scanner<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
    /// The deepest nesting of the objects and arrays skipped so far (relative to each).
    pub(crate) deepest: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self {
            b,
            i: 0,
            deepest: 0,
        }
    }

    pub(crate) fn at(b: &'a [u8], i: usize) -> Self {
        Self { b, i, deepest: 0 }
    }

    pub(crate) fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Skips a string starting at the current `"`; returns the raw contents' range.
    pub(crate) fn string(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.i;
        // Most strings in Kubernetes JSON are short: look at a few bytes before memchr.
        let short_end = (self.i + 16).min(self.b.len());
        while self.i < short_end {
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(start..self.i - 1);
                }
                b'\\' => break,
                _ => self.i += 1,
            }
        }
        loop {
            let rel = memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
            self.i += rel;
            if self.b[self.i] == b'\\' {
                self.i += 2;
            } else {
                let range = start..self.i;
                self.i += 1;
                return Some(range);
            }
        }
    }

    /// Skips a whole object (a list item) and returns, if its `metadata` has a member
    /// `managedFields`, the range that removes that member and one comma (as
    /// [`find_member_span`](Self::find_member_span)). One pass over the bytes.
    pub(crate) fn object_and_managed_fields(&mut self) -> Option<Option<Range<usize>>> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(None);
        }
        let mut cut = None;
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            if &self.b[key] == b"metadata" && self.peek()? == b'{' {
                let start = self.i;
                cut = self.find_member_span(b"managedFields");
                match &cut {
                    // Go on after the cut member rather than rescanning it.
                    Some(c) => self.i = c.end,
                    // Not there (or not complete yet): skip the metadata object whole.
                    None => self.i = start,
                }
                self.rest_of_object(start)?;
            } else {
                self.value()?;
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(cut);
                }
                _ => return None,
            }
        }
    }

    /// From the object's opening brace at `start`, or from between two of its members,
    /// skips to just after its closing brace.
    fn rest_of_object(&mut self, start: usize) -> Option<()> {
        if self.i == start {
            return self.value();
        }
        loop {
            match self.peek()? {
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                b',' => self.i += 1,
                b'"' => {
                    self.string()?;
                    self.eat(b':')?;
                    self.value()?;
                }
                _ => return None,
            }
        }
    }

    /// Skips any JSON value.
    pub(crate) fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let (end, depth) = skip_container(self.b, self.i)?;
                self.i = end;
                self.deepest = self.deepest.max(depth);
                Some(())
            }
            _ => {
                while !matches!(self.b.get(self.i), Some(b',' | b'}' | b']') | None) {
                    self.i += 1;
                }
                // A literal that runs to the end of the input may be incomplete.
                (self.i < self.b.len()).then_some(())
            }
        }
    }

    /// In the object starting here, finds member `name` and returns where its value starts.
    pub(crate) fn find_member(&mut self, name: &[u8]) -> Option<usize> {
        self.eat(b'{')?;
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            self.ws();
            if &self.b[key] == name {
                return Some(self.i);
            }
            self.value()?;
            match self.peek()? {
                b',' => self.i += 1,
                _ => return None,
            }
        }
    }

    /// In the object starting here, finds member `name` and returns the range that removes
    /// it and one comma.
    pub(crate) fn find_member_span(&mut self, name: &[u8]) -> Option<Range<usize>> {
        self.eat(b'{')?;
        let mut previous_end: Option<usize> = None;
        loop {
            self.ws();
            let member_start = self.i;
            let key = self.string()?;
            self.eat(b':')?;
            self.value()?;
            let member_end = self.i;
            let found = &self.b[key] == name;
            let next = self.peek()?;
            if found {
                return Some(match (previous_end, next) {
                    // `…,"managedFields":[…]` → cut from the previous member's end.
                    (Some(prev), _) => prev..member_end,
                    // `{"managedFields":[…],…` → cut through the following comma.
                    (None, b',') => {
                        self.i += 1;
                        self.ws();
                        member_start..self.i
                    }
                    (None, _) => member_start..member_end,
                });
            }
            match next {
                b',' => {
                    previous_end = Some(member_end);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// The end of the object or array that starts at `b[i]` and its deepest nesting, or `None` if
/// it does not end in `b`.
/// A tight byte loop: strings in Kubernetes JSON are mostly a few bytes long, too short for
/// `memchr` to pay off.
fn skip_container(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match *b.get(i)? {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((i + 1, deepest));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_managed_fields_finds_the_end_and_the_cut() {
        let mf = r#"[{"manager":"m","fieldsV1":{"f:a{":{},"k:{\"x\":\"]\"}":{}}}]"#;
        let cases = [
            (
                format!(
                    r#"{{"metadata":{{"name":"a","managedFields":{mf},"uid":"u"}},"data":{{"k":"v"}}}}"#
                ),
                true,
            ),
            (
                format!(r#"{{"metadata":{{"managedFields":{mf}, "name":"a"}}}}"#),
                true,
            ),
            (
                format!(r#"{{"kind":"X","metadata":{{"name":"a","managedFields":{mf}}}}}"#),
                true,
            ),
            (
                r#"{"metadata":{"name":"a"},"data":{"metadata":{"managedFields":1}}}"#.to_owned(),
                false,
            ),
            (r#"{"data":{"x":"\"}"}}"#.to_owned(), false),
            ("{}".to_owned(), false),
        ];
        for (item, has) in cases {
            let text = format!("{item} ,next");
            let mut s = Scanner::new(text.as_bytes());
            let cut = s.object_and_managed_fields().expect(&item);
            assert_eq!(s.i, item.len(), "{item}");
            assert_eq!(cut.is_some(), has, "{item}");
            if let Some(cut) = cut {
                let stripped =
                    [&item.as_bytes()[..cut.start], &item.as_bytes()[cut.end..]].concat();
                let v: serde_json::Value = serde_json::from_slice(&stripped).expect(&item);
                assert!(v["metadata"].get("managedFields").is_none(), "{item}");
                assert_eq!(v["metadata"]["name"], "a");
            }
            // Every proper prefix is incomplete.
            for end in 0..item.len() {
                let mut s = Scanner::new(&item.as_bytes()[..end]);
                assert!(
                    s.object_and_managed_fields().is_none(),
                    "{item} cut at {end}"
                );
            }
        }
    }
}
