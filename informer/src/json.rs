//! A minimal JSON scanner: finds member and value boundaries without decoding.

use std::ops::Range;

/// A forward-only scanner over JSON bytes that skips values without decoding them. Every
/// method returns `None` when the input ends early or is not JSON.
pub(crate) struct Scanner<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }

    pub(crate) fn at(b: &'a [u8], i: usize) -> Self {
        Self { b, i }
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

    /// Skips any JSON value.
    pub(crate) fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(&c) = self.b.get(self.i) {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                None
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
