//! The JSON of object bodies: Python's `json.dumps` defaults for writing, a small
//! order-preserving parser for reading.
//!
//! `json.dumps` separates items with `", "` and keys with `": "`, keeps insertion order and
//! escapes every character outside `' '..='~'` (`ensure_ascii`), non-BMP characters as
//! UTF-16 surrogate pairs.

use std::fmt::Write;

/// Appends `s` as a JSON string literal, escaped as Python's `json.dumps` does.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `{"k": "v", ...}` for string pairs, in the given order.
pub(crate) fn string_map<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(&mut out, k);
        out.push_str(": ");
        write_str(&mut out, v);
    }
    out.push('}');
    out
}

/// `[a, b, ...]` for displayable items.
pub(crate) fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// A parsed JSON value; objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// A number, kept as its source text.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses a complete JSON text.
    pub(crate) fn parse(text: &[u8]) -> Result<Json, String> {
        let mut p = Parser { s: text, pos: 0 };
        let value = p.value(0)?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(format!("unexpected data at byte {} of the JSON body", p.pos));
        }
        Ok(value)
    }

    /// The value as a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// The value of `key` in an object (the last one, as Python's `json.loads` keeps).
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(items) => items.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {} of the JSON body", self.pos))
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        let hit = self.s.get(self.pos) == Some(&c);
        self.pos += usize::from(hit);
        hit
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return self.err("JSON nested too deeply");
        }
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => Ok(self.number()),
            _ => self.literal(),
        }
    }

    fn literal(&mut self) -> Result<Json, String> {
        for (word, value) in [("true", Json::Bool(true)), ("false", Json::Bool(false)), ("null", Json::Null)] {
            if self.s[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                return Ok(value);
            }
        }
        self.err("expected a JSON value")
    }

    fn number(&mut self) -> Json {
        let start = self.pos;
        while matches!(self.s.get(self.pos), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.pos += 1;
        }
        Json::Number(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn array(&mut self, depth: usize) -> Result<Json, String> {
        self.pos += 1;
        let mut items = Vec::new();
        if self.eat(b']') {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.eat(b']') {
                return Ok(Json::Array(items));
            }
            if !self.eat(b',') {
                return self.err("expected ',' or ']'");
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
        self.pos += 1;
        let mut items = Vec::new();
        if self.eat(b'}') {
            return Ok(Json::Object(items));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return self.err("expected a string key");
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return self.err("expected ':'");
            }
            items.push((key, self.value(depth + 1)?));
            if self.eat(b'}') {
                return Ok(Json::Object(items));
            }
            if !self.eat(b',') {
                return self.err("expected ',' or '}'");
            }
        }
    }

    /// Parses a string literal starting at the opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run = self.s[self.pos..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let Some(run) = run else {
                return self.err("unterminated string");
            };
            let text = std::str::from_utf8(&self.s[self.pos..self.pos + run])
                .map_err(|_| format!("invalid UTF-8 at byte {} of the JSON body", self.pos))?;
            out.push_str(text);
            self.pos += run;
            match self.s[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => out.push(self.escape()?),
                _ => return self.err("control character in string"),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let c = self.s.get(self.pos + 1).copied();
        self.pos += 2;
        Ok(match c {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{08}',
            Some(b'f') => '\u{0c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return self.err("invalid escape"),
        })
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first.into()).map_or_else(|| self.err("lone surrogate"), Ok);
        }
        if !self.s[self.pos..].starts_with(b"\\u") {
            return self.err("lone surrogate");
        }
        self.pos += 2;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return self.err("lone surrogate");
        }
        let code = 0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
        char::from_u32(code).map_or_else(|| self.err("invalid surrogate pair"), Ok)
    }

    fn hex4(&mut self) -> Result<u16, String> {
        let digits = self.s.get(self.pos..self.pos + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or("");
        let value = text.bytes().all(|b| b.is_ascii_hexdigit()).then(|| u16::from_str_radix(text, 16).ok()).flatten();
        match value {
            Some(v) if text.len() == 4 => {
                self.pos += 4;
                Ok(v)
            }
            _ => self.err("invalid \\u escape"),
        }
    }
}
