//! Filtering JSON bodies in place, on the raw bytes.
//!
//! A small validating tokenizer ([`walk`]) finds every string literal and tells keys
//! from values; only the matched spans inside a changed string literal are rewritten
//! (with the replacement JSON-escaped), every other byte of the body stays identical.
//! A literal without a backslash is filtered as it is (borrowed); one with escapes is
//! decoded (`\n`, `\"`, `\uXXXX` with surrogate pairs; a lone surrogate reads as
//! U+FFFD) and a match is mapped back to its raw span, so escapes outside the match
//! survive.

use bytes::BytesMut;
use memchr::{memchr, memchr2};

use super::{select, BannedWords, Blocked, Cand, Filters, Hit, Redactor};

/// A rewritten body and the hits that changed it.
pub type Filtered = (Vec<u8>, Vec<Hit>);

/// Keys whose string values are identifiers, not prose: never redacted, never checked
/// for banned words. A string inside an array counts under the array's key.
///
/// `model`, `type`, `id`, `tool_use_id`, `signature` (thinking signatures), `data`
/// (base64 images/documents, `redacted_thinking`), `media_type`, `role`, `stop_reason`,
/// `name` (tool and server names), `file_id`, `thinking` (a thinking block's text is
/// covered by its signature; changing it makes the API refuse the request),
/// `authorization_token` (MCP servers).
pub const SKIP_KEYS: &[&str] = &[
    "model",
    "type",
    "id",
    "tool_use_id",
    "signature",
    "data",
    "media_type",
    "role",
    "stop_reason",
    "name",
    "file_id",
    "thinking",
    "authorization_token",
];

/// A container being walked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub object: bool,
    /// The current key of an object (raw literal span).
    pub key: Option<Lit>,
}

/// A string literal: `body[start..end]` is its content between the quotes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lit {
    pub start: usize,
    pub end: usize,
    pub escaped: bool,
}

impl Lit {
    /// The literal's raw content (valid UTF-8, checked by the walker).
    pub fn raw<'b>(&self, body: &'b [u8]) -> &'b str {
        std::str::from_utf8(&body[self.start..self.end]).unwrap_or("")
    }

    /// True if the literal decodes to `s`.
    pub fn is(&self, body: &[u8], s: &str) -> bool {
        if self.escaped {
            let mut d = String::new();
            decode(self.raw(body), &mut d, &mut Vec::new());
            d == s
        } else {
            &body[self.start..self.end] == s.as_bytes()
        }
    }
}

pub(crate) enum WalkError<E> {
    Invalid,
    Stop(E),
}

pub(crate) trait Visitor {
    type Stop;
    /// A string value (not a key); `stack` holds the enclosing containers.
    fn string(
        &mut self,
        body: &[u8],
        stack: &[Frame],
        lit: Lit,
        raw: &str,
    ) -> Result<(), Self::Stop>;
    /// A container is about to close; it is the last frame of `stack`.
    fn close(&mut self, _body: &[u8], _stack: &[Frame]) -> Result<(), Self::Stop> {
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Value,
    ValueOrEnd,
    Key,
    KeyOrEnd,
    After,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Walks a JSON document (RFC 8259: one value, UTF-8, strings without raw control
/// characters, well-formed escapes and numbers). Nesting is limited only by memory.
pub(crate) fn walk<V: Visitor>(body: &[u8], v: &mut V) -> Result<(), WalkError<V::Stop>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let mut st = Expect::Value;
    loop {
        i = skip_ws(body, i);
        match st {
            Expect::Value => {
                let Some(&b) = body.get(i) else {
                    return Err(WalkError::Invalid);
                };
                match b {
                    b'{' => {
                        stack.push(Frame {
                            object: true,
                            key: None,
                        });
                        i += 1;
                        st = Expect::KeyOrEnd;
                        continue;
                    }
                    b'[' => {
                        stack.push(Frame {
                            object: false,
                            key: None,
                        });
                        i += 1;
                        st = Expect::ValueOrEnd;
                        continue;
                    }
                    b'"' => {
                        let (lit, raw) = scan_string(body, i + 1).ok_or(WalkError::Invalid)?;
                        v.string(body, &stack, lit, raw).map_err(WalkError::Stop)?;
                        i = lit.end + 1;
                    }
                    b'-' | b'0'..=b'9' => i = scan_number(body, i).ok_or(WalkError::Invalid)?,
                    b't' | b'f' | b'n' => {
                        let lit: &[u8] = match b {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        if !body[i..].starts_with(lit) {
                            return Err(WalkError::Invalid);
                        }
                        i += lit.len();
                    }
                    _ => return Err(WalkError::Invalid),
                }
                st = Expect::After;
            }
            Expect::ValueOrEnd => {
                if body.get(i) == Some(&b']') {
                    v.close(body, &stack).map_err(WalkError::Stop)?;
                    stack.pop();
                    i += 1;
                    st = Expect::After;
                } else {
                    st = Expect::Value;
                }
            }
            Expect::KeyOrEnd => {
                if body.get(i) == Some(&b'}') {
                    v.close(body, &stack).map_err(WalkError::Stop)?;
                    stack.pop();
                    i += 1;
                    st = Expect::After;
                } else {
                    st = Expect::Key;
                }
            }
            Expect::Key => {
                if body.get(i) != Some(&b'"') {
                    return Err(WalkError::Invalid);
                }
                let (lit, _) = scan_string(body, i + 1).ok_or(WalkError::Invalid)?;
                if let Some(top) = stack.last_mut() {
                    top.key = Some(lit);
                }
                i = skip_ws(body, lit.end + 1);
                if body.get(i) != Some(&b':') {
                    return Err(WalkError::Invalid);
                }
                i += 1;
                st = Expect::Value;
            }
            Expect::After => {
                let Some(top) = stack.last() else {
                    return if i == body.len() {
                        Ok(())
                    } else {
                        Err(WalkError::Invalid)
                    };
                };
                match body.get(i) {
                    Some(b',') => {
                        i += 1;
                        st = if top.object {
                            Expect::Key
                        } else {
                            Expect::Value
                        };
                    }
                    Some(b'}') if top.object => {
                        v.close(body, &stack).map_err(WalkError::Stop)?;
                        stack.pop();
                        i += 1;
                    }
                    Some(b']') if !top.object => {
                        v.close(body, &stack).map_err(WalkError::Stop)?;
                        stack.pop();
                        i += 1;
                    }
                    _ => return Err(WalkError::Invalid),
                }
            }
        }
    }
}

/// Scans a string literal whose content starts at `start` (after the quote).
pub(crate) fn scan_string(body: &[u8], start: usize) -> Option<(Lit, &str)> {
    let mut p = start;
    let mut escaped = false;
    loop {
        let q = p + memchr2(b'"', b'\\', body.get(p..)?)?;
        if body[q] == b'"' {
            let raw = &body[start..q];
            if has_control(raw) {
                return None;
            }
            let s = std::str::from_utf8(raw).ok()?;
            return Some((
                Lit {
                    start,
                    end: q,
                    escaped,
                },
                s,
            ));
        }
        escaped = true;
        match body.get(q + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => p = q + 2,
            b'u' => {
                let hex = body.get(q + 2..q + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                p = q + 6;
            }
            _ => return None,
        }
    }
}

/// Any byte below 0x20 (SWAR, 8 bytes at a time).
fn has_control(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let v = u64::from_le_bytes(a);
        if v.wrapping_sub(0x2020_2020_2020_2020) & !v & 0x8080_8080_8080_8080 != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&x| x < 0x20)
}

fn scan_number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], mut i: usize| {
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i > s).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i)?,
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Decodes the content of a string literal into `out`. `anchors` receives (decoded,
/// raw) offset pairs around every escape, starting with (0, 0); see [`raw_pos`].
/// Malformed escapes (only possible outside a validated document) are kept verbatim.
pub(crate) fn decode(raw: &str, out: &mut String, anchors: &mut Vec<(usize, usize)>) {
    out.clear();
    anchors.clear();
    anchors.push((0, 0));
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr(b'\\', &b[i..]) {
        let p = i + k;
        out.push_str(&raw[i..p]);
        anchors.push((out.len(), p));
        let simple = |c: u8| match c {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            _ => None,
        };
        let (ch, len) = match b.get(p + 1) {
            Some(b'u') => match b.get(p + 2..).and_then(hex4) {
                Some(hi @ 0xD800..=0xDBFF) => {
                    let lo = if b.get(p + 6..p + 8) == Some(b"\\u") {
                        b.get(p + 8..).and_then(hex4)
                    } else {
                        None
                    };
                    match lo {
                        Some(lo @ 0xDC00..=0xDFFF) => {
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
                        }
                        _ => ('\u{FFFD}', 6),
                    }
                }
                Some(c) => (char::from_u32(c).unwrap_or('\u{FFFD}'), 6),
                None => ('\\', 1),
            },
            Some(&c) => match simple(c) {
                Some(ch) => (ch, 2),
                None => ('\\', 1),
            },
            None => ('\\', 1),
        };
        out.push(ch);
        i = p + len;
        anchors.push((out.len(), i));
    }
    out.push_str(&raw[i..]);
}

/// Raw offset (inside the literal) of decoded offset `d` (a char boundary).
pub(crate) fn raw_pos(anchors: &[(usize, usize)], d: usize) -> usize {
    let i = anchors.partition_point(|a| a.0 <= d);
    match i {
        0 => d,
        _ => {
            let (ds, rs) = anchors[i - 1];
            rs + (d - ds)
        }
    }
}

/// Appends `s` JSON-escaped (without quotes): `"`, `\` and control characters.
pub(crate) fn escape_into(s: &str, out: &mut Vec<u8>) {
    let b = s.as_bytes();
    let mut last = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[last..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 0xF) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        last = i + 1;
    }
    out.extend_from_slice(&b[last..]);
}

/// Collects the replacements of a body (raw byte ranges, in order) and builds the
/// output from them: a new buffer, or the input buffer itself rewritten in place.
struct Splicer {
    /// `(start, end, replacement index)` of every replaced raw range, in body order.
    edits: Vec<(usize, usize, u8)>,
    /// Escaped replacements: [redaction, mask].
    repl: [Vec<u8>; 2],
    hits: Vec<Hit>,
    dec: String,
    anchors: Vec<(usize, usize)>,
    cands: Vec<Cand>,
}

impl Splicer {
    fn new(filters: &Filters<'_>) -> Self {
        let mut r0 = Vec::new();
        let mut r1 = Vec::new();
        if let Some(r) = filters.redactor {
            escape_into(r.replacement(), &mut r0);
        }
        if let Some((_, m)) = filters.masker {
            escape_into(m, &mut r1);
        }
        Splicer {
            edits: Vec::new(),
            repl: [r0, r1],
            hits: Vec::new(),
            dec: String::new(),
            anchors: Vec::new(),
            cands: Vec::new(),
        }
    }

    /// Filters the literal `lit` and splices the matches; returns the decoded text's
    /// banned-word verdict first if `banned` is given.
    fn literal(
        &mut self,
        lit: Lit,
        raw: &str,
        filters: &Filters<'_>,
        banned: Option<&BannedWords>,
    ) -> Result<(), Blocked> {
        let text: &str = if lit.escaped {
            decode(raw, &mut self.dec, &mut self.anchors);
            &self.dec
        } else {
            raw
        };
        if let Some(b) = banned {
            if let Some(word) = b.find(text) {
                return Err(Blocked { word });
            }
        }
        if filters.is_empty() {
            return Ok(());
        }
        filters.scan(text, 0, true, &mut self.cands);
        if self.cands.is_empty() {
            return Ok(());
        }
        select(&mut self.cands);
        for c in &self.cands {
            let (s, e) = if lit.escaped {
                (
                    raw_pos(&self.anchors, c.start),
                    raw_pos(&self.anchors, c.end),
                )
            } else {
                (c.start, c.end)
            };
            let k = u8::from(matches!(c.src, super::Src::Word(_)));
            self.edits.push((lit.start + s, lit.start + e, k));
            self.hits.push(filters.hit(c.src));
        }
        Ok(())
    }

    /// The output as a new buffer; `None` if nothing was replaced.
    fn finish(self, body: &[u8]) -> Option<Filtered> {
        if self.edits.is_empty() {
            return None;
        }
        let mut len = body.len();
        for &(s, e, k) in &self.edits {
            len = len - (e - s) + self.repl[usize::from(k)].len();
        }
        let mut out = Vec::with_capacity(len);
        let mut copied = 0;
        for &(s, e, k) in &self.edits {
            out.extend_from_slice(&body[copied..s]);
            out.extend_from_slice(&self.repl[usize::from(k)]);
            copied = e;
        }
        out.extend_from_slice(&body[copied..]);
        Some((out, self.hits))
    }

    /// Rewrites `body` itself when no replacement is longer than the range it replaces
    /// (the usual case: `[REDACTED]` is shorter than any ID or card number), so a large
    /// body is not held twice; otherwise builds a new buffer. `None` if nothing changed.
    fn finish_in_place(self, body: &mut BytesMut) -> Option<Vec<Hit>> {
        if self.edits.is_empty() {
            return None;
        }
        let shrinks = self
            .edits
            .iter()
            .all(|&(s, e, k)| self.repl[usize::from(k)].len() <= e - s);
        if !shrinks {
            let (out, hits) = self.finish(body)?;
            *body = BytesMut::from(&out[..]);
            return Some(hits);
        }
        // Output never overtakes input: each replacement fits in the range it replaces,
        // so the write position stays at or behind the read position.
        let mut w = self.edits[0].0;
        for (i, &(_, e, k)) in self.edits.iter().enumerate() {
            let r = &self.repl[usize::from(k)];
            body[w..w + r.len()].copy_from_slice(r);
            w += r.len();
            let next = self.edits.get(i + 1).map_or(body.len(), |x| x.0);
            body.copy_within(e..next, w);
            w += next - e;
        }
        body.truncate(w);
        Some(self.hits)
    }
}

/// The key a string value counts under: the nearest enclosing object's current key.
fn value_key(stack: &[Frame]) -> Option<Lit> {
    stack.iter().rev().find(|f| f.object).and_then(|f| f.key)
}

fn is_skipped(body: &[u8], key: Option<Lit>) -> bool {
    let Some(k) = key else {
        return false;
    };
    if k.escaped {
        let mut d = String::new();
        decode(k.raw(body), &mut d, &mut Vec::new());
        SKIP_KEYS.contains(&d.as_str())
    } else {
        let raw = &body[k.start..k.end];
        SKIP_KEYS.iter().any(|s| s.as_bytes() == raw)
    }
}

/// Request-side filters: redaction and banned words.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    redactor: Option<Redactor>,
    banned: Option<BannedWords>,
}

struct RequestVisitor<'a> {
    filters: Filters<'a>,
    banned: Option<&'a BannedWords>,
    splicer: Splicer,
}

impl Visitor for RequestVisitor<'_> {
    type Stop = Blocked;

    fn string(&mut self, body: &[u8], stack: &[Frame], lit: Lit, raw: &str) -> Result<(), Blocked> {
        if is_skipped(body, value_key(stack)) {
            return Ok(());
        }
        self.splicer.literal(lit, raw, &self.filters, self.banned)
    }
}

impl RequestFilter {
    /// A filter with an optional redactor (`filters.request.redact`) and banned-word
    /// list (`filters.request.block`).
    pub fn new(redactor: Option<Redactor>, banned: Option<BannedWords>) -> Self {
        RequestFilter { redactor, banned }
    }

    /// True if the filter has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.redactor.is_none() && self.banned.is_none()
    }

    /// The redactor, if any.
    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.as_ref()
    }

    /// The banned-word list, if any.
    pub fn banned(&self) -> Option<&BannedWords> {
        self.banned.as_ref()
    }

    /// Applies the filter to a raw JSON request body.
    ///
    /// * `Ok(None)`: unchanged — forward the original bytes.
    /// * `Ok(Some((body, hits)))`: the redacted body; only matched spans inside string
    ///   literals differ, and it is valid JSON whenever the input was.
    /// * `Err(Blocked)`: a banned word is in a string value (escapes decoded).
    ///
    /// Every string value is covered (messages, system, tool results and inputs,
    /// metadata) except values under [`SKIP_KEYS`]; object keys are never touched.
    ///
    /// A body that is not valid JSON is not redacted (`Ok(None)`), but banned words
    /// are still looked for in the whole body read as text — once as it is and once
    /// with JSON escapes decoded — so a malformed body cannot smuggle a word through.
    pub fn apply(&self, body: &[u8]) -> Result<Option<Filtered>, Blocked> {
        self.run(body).map(|s| s.and_then(|s| s.finish(body)))
    }

    /// Like [`RequestFilter::apply`], but rewrites `body` in place (no second copy of a
    /// large body when every replacement is shorter than what it replaces). `Ok(Some)`:
    /// the hits, `body` changed; `Ok(None)`: `body` untouched.
    pub fn apply_in_place(&self, body: &mut BytesMut) -> Result<Option<Vec<Hit>>, Blocked> {
        Ok(self.run(body)?.and_then(|s| s.finish_in_place(body)))
    }

    /// Walks `body`: the collected replacements, `None` for a body that is not JSON.
    fn run(&self, body: &[u8]) -> Result<Option<Splicer>, Blocked> {
        if self.is_empty() {
            return Ok(None);
        }
        let filters = Filters {
            redactor: self.redactor.as_ref(),
            masker: None,
        };
        let mut v = RequestVisitor {
            filters,
            banned: self.banned.as_ref(),
            splicer: Splicer::new(&filters),
        };
        match walk(body, &mut v) {
            Ok(()) => Ok(Some(v.splicer)),
            Err(WalkError::Stop(b)) => Err(b),
            Err(WalkError::Invalid) => {
                if let Some(b) = &self.banned {
                    let text = String::from_utf8_lossy(body);
                    if let Some(word) = b.find(&text) {
                        return Err(Blocked { word });
                    }
                    if text.contains('\\') {
                        let mut d = String::new();
                        decode(&text, &mut d, &mut Vec::new());
                        if let Some(word) = b.find(&d) {
                            return Err(Blocked { word });
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

/// Visitor for a non-streaming `message`: `content[i].text` of blocks whose `type` is
/// `text`.
struct MessageVisitor<'a> {
    filters: Filters<'a>,
    splicer: Splicer,
    is_text: bool,
    text: Option<Lit>,
}

impl MessageVisitor<'_> {
    /// `stack` is [root object, `content` array, block object].
    fn in_block(body: &[u8], stack: &[Frame]) -> bool {
        matches!(stack, [root, arr, blk]
            if root.object && !arr.object && blk.object
                && root.key.is_some_and(|k| k.is(body, "content")))
    }
}

impl Visitor for MessageVisitor<'_> {
    type Stop = ();

    fn string(&mut self, body: &[u8], stack: &[Frame], lit: Lit, _raw: &str) -> Result<(), ()> {
        if Self::in_block(body, stack) {
            if let Some(k) = stack[2].key {
                if k.is(body, "type") {
                    self.is_text = lit.is(body, "text");
                } else if k.is(body, "text") {
                    self.text = Some(lit);
                }
            }
        }
        Ok(())
    }

    fn close(&mut self, body: &[u8], stack: &[Frame]) -> Result<(), ()> {
        if Self::in_block(body, stack) {
            if let (true, Some(lit)) = (self.is_text, self.text) {
                let raw = lit.raw(body);
                // No banned-word blocking on responses; cannot fail.
                let _ = self.splicer.literal(lit, raw, &self.filters, None);
            }
            self.is_text = false;
            self.text = None;
        }
        Ok(())
    }
}

/// Filters a non-streaming Messages response (`{"type":"message","content":[…]}`):
/// the `text` of every `content` block of type `text` goes through the redactor and
/// the banned-word masker (`(words, replacement)`); the rest of the body is kept byte
/// for byte. `None` if nothing changed or the body is not such a JSON object.
pub fn filter_message_json(
    body: &[u8],
    redactor: Option<&Redactor>,
    masker: Option<(&BannedWords, &str)>,
) -> Option<Filtered> {
    let filters = Filters { redactor, masker };
    if filters.is_empty() {
        return None;
    }
    let mut v = MessageVisitor {
        filters,
        splicer: Splicer::new(&filters),
        is_text: false,
        text: None,
    };
    walk(body, &mut v).ok()?;
    v.splicer.finish(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Strings(Vec<(Option<String>, String)>);
    impl Visitor for Strings {
        type Stop = ();
        fn string(&mut self, body: &[u8], stack: &[Frame], lit: Lit, raw: &str) -> Result<(), ()> {
            let key = value_key(stack).map(|k| k.raw(body).to_string());
            let _ = lit;
            self.0.push((key, raw.to_string()));
            Ok(())
        }
    }

    fn valid(b: &str) -> bool {
        walk(b.as_bytes(), &mut Strings(Vec::new())).is_ok()
    }

    #[test]
    fn walker_accepts_and_rejects_like_serde() {
        let cases = [
            r#"{}"#,
            r#"[]"#,
            r#" {"a" : [1, -2.5e+3, true, false, null, "x", {"b": []}]} "#,
            r#""str""#,
            r#"0"#,
            r#"{"a":"\u00e9\ud83d\ude00\n\"\\\/"}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"01"#,
            r#"1."#,
            r#"-"#,
            r#"tru"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"raw\nnewline\"}",
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"[1 2]"#,
            "",
            "   ",
        ];
        for c in cases {
            let serde_ok = serde_json::from_str::<serde_json::Value>(c).is_ok();
            assert_eq!(valid(c), serde_ok, "{c:?}");
        }
    }

    #[test]
    fn keys_and_array_values() {
        let mut s = Strings(Vec::new());
        assert!(walk(br#"{"k":"v","arr":["a",{"in":"b"}],"n":{"x":"y"}}"#, &mut s).is_ok());
        let got: Vec<(Option<&str>, &str)> =
            s.0.iter()
                .map(|(k, v)| (k.as_deref(), v.as_str()))
                .collect();
        assert_eq!(
            got,
            vec![
                (Some("k"), "v"),
                (Some("arr"), "a"),
                (Some("in"), "b"),
                (Some("x"), "y")
            ]
        );
    }

    #[test]
    fn decode_and_map_back() {
        let raw = r#"a\n\u0031\ud83d\ude00b\"c"#;
        let mut d = String::new();
        let mut anchors = Vec::new();
        decode(raw, &mut d, &mut anchors);
        assert_eq!(d, "a\n1😀b\"c");
        let map = |s: &str| raw_pos(&anchors, d.find(s).unwrap());
        assert_eq!(map("1"), raw.find("\\u0031").unwrap());
        assert_eq!(map("😀"), raw.find("\\ud83d").unwrap());
        assert_eq!(map("b"), raw.find('b').unwrap());
        assert_eq!(raw_pos(&anchors, d.len()), raw.len());
        // Lone surrogates become U+FFFD.
        decode(r#"x\ud800y\udc00"#, &mut d, &mut anchors);
        assert_eq!(d, "x\u{FFFD}y\u{FFFD}");
    }

    #[test]
    fn escape_roundtrips_through_serde() {
        let s = "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀\u{2028}";
        let mut out = b"\"".to_vec();
        escape_into(s, &mut out);
        out.push(b'"');
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
    }

    #[test]
    fn has_control_finds_every_position() {
        for len in 0..20 {
            for pos in 0..len {
                let mut v = vec![b'a'; len];
                v[pos] = 0x1f;
                assert!(has_control(&v));
                v[pos] = 0xff;
                assert!(!has_control(&v));
            }
        }
    }
}
