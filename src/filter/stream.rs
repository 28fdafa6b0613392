//! Streaming response filter over raw SSE bytes.
//!
//! Events are framed exactly as the SSE parser does (lines end with `\r\n`, `\n` or
//! `\r`; a blank line ends an event), on the raw bytes, in any chunking. Every event
//! passes through byte for byte, except `content_block_delta` events carrying a
//! `text_delta`: their text is appended to a per-content-block buffer, and a rewritten
//! delta (`{"type":"content_block_delta","index":N,"delta":{"type":"text_delta",
//! "text":…}}`, encoded with serde_json) carries the part that can no longer belong to
//! a match, filtered; nothing is emitted when nothing can be released yet. When nothing
//! was held and nothing matched, the original event bytes go out unchanged.
//!
//! Hold-back (minimal, per block, never more than [`StreamFilter::window`] chars): a
//! trailing digit run / card chain / `+86` prefix that may still grow; a trailing run
//! of e-mail local-part chars (an `@` may follow) or an address whose domain touches
//! the end; the longest suffix that is a proper prefix of a banned word (folded); for a
//! custom regex, the last `max_len` chars (or its match touching the end). Anything
//! else is released at once. The concatenated text of a block's output deltas equals
//! [`filter_text`](super::filter_text) of the block's whole text, however the stream
//! was cut (exactly for the built-ins and banned words; for a custom regex as long as
//! its matches are at most `max_len` chars).
//!
//! Held text of a block is flushed (filtered as final) before `content_block_stop` /
//! `content_block_start` / any other `content_block_delta` of that index, before
//! `message_delta`, `message_stop` and `error` (all blocks), and at
//! [`finish`](StreamFilter::finish). Other events (`ping`, `message_start`, unknown
//! ones, events whose data is not JSON) pass through without flushing.
//!
//! A rewritten event has only `event:` and `data:` lines (`id:`/`retry:`/comments of
//! the original text delta are dropped; Anthropic sends none). An event larger than
//! [`MAX_EVENT_SIZE`] is passed through unfiltered (held text is flushed first), so
//! memory stays bounded by that size plus the held text.

use std::borrow::Cow;
use std::sync::Arc;

use memchr::{memchr, memchr2};
use serde::Deserialize;

use super::json::{decode, escape_into, scan_string};
use super::{select, BannedWords, Cand, Filters, Hit, Redactor};

/// Events larger than this (bytes, raw) are passed through unfiltered.
pub const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// Released text kept as left context of a block's held text (boundaries, e-mail
/// local parts), in bytes.
const CTX_BYTES: usize = 80;

/// Buffers whose capacity grew beyond this are shrunk after use.
const RETAINED_CAPACITY: usize = 64 * 1024;

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<DeltaHead<'a>>,
}

#[derive(Deserialize)]
struct DeltaHead<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// Text of one content block: `buf[..ctx]` is released context, `buf[ctx..]` is held.
#[derive(Debug)]
struct Block {
    index: u64,
    buf: String,
    ctx: usize,
}

impl Block {
    fn held(&self) -> &str {
        &self.buf[self.ctx..]
    }

    /// Marks `buf[..c]` released, keeping up to [`CTX_BYTES`] of it as context.
    fn release(&mut self, c: usize) {
        let mut keep = c.saturating_sub(CTX_BYTES);
        while !self.buf.is_char_boundary(keep) {
            keep -= 1;
        }
        self.buf.drain(..keep);
        self.ctx = c - keep;
    }
}

#[derive(Debug)]
struct Config {
    redactor: Option<Arc<Redactor>>,
    masker: Option<(Arc<BannedWords>, String)>,
    window: usize,
}

impl Config {
    fn filters(&self) -> Filters<'_> {
        Filters {
            redactor: self.redactor.as_deref(),
            masker: self.masker.as_ref().map(|(b, r)| (&**b, r.as_str())),
        }
    }
}

/// Response-side filter for an SSE stream. See the [module documentation](self).
#[derive(Debug)]
pub struct StreamFilter {
    cfg: Config,
    /// Bytes of the event being received.
    pending: Vec<u8>,
    /// No byte since the last line break.
    line_start: bool,
    /// The last chunk ended with a `\r` that ended a non-blank line.
    cr_mid: bool,
    /// The last chunk ended with a `\r` that ended an event; `Some(passed through)`.
    cr_end: Option<bool>,
    /// The current event is oversized and is being passed through as it arrives.
    oversized: bool,
    blocks: Vec<Block>,
    hits: Vec<Hit>,
    cands: Vec<Cand>,
    scratch: String,
}

impl StreamFilter {
    /// A filter with an optional redactor (`filters.response.redact`) and an optional
    /// banned-word masker with its replacement (`filters.response.block`). With
    /// neither, events pass through unchanged.
    pub fn new(
        redactor: Option<Arc<Redactor>>,
        masker: Option<(Arc<BannedWords>, String)>,
    ) -> Self {
        let mut cfg = Config {
            redactor,
            masker,
            window: 0,
        };
        cfg.window = cfg.filters().window();
        StreamFilter {
            cfg,
            pending: Vec::new(),
            line_start: true,
            cr_mid: false,
            cr_end: None,
            oversized: false,
            blocks: Vec::new(),
            hits: Vec::new(),
            cands: Vec::new(),
            scratch: String::new(),
        }
    }

    /// Feeds the next upstream chunk (split anywhere); appends zero or more complete
    /// events to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        let n = chunk.len();
        let mut pos = 0;
        if let Some(passed) = self.cr_end.take() {
            if chunk[0] == b'\n' {
                // Second half of the `\r\n` that ended the previous event.
                if passed {
                    out.push(b'\n');
                }
                pos = 1;
            }
        }
        let mut ev_start = pos;
        if self.cr_mid && pos < n {
            self.cr_mid = false;
            if chunk[pos] == b'\n' {
                pos += 1;
            }
        }
        while pos < n {
            let Some(k) = memchr2(b'\n', b'\r', &chunk[pos..]) else {
                self.line_start = false;
                break;
            };
            let t = pos + k;
            if k > 0 {
                self.line_start = false;
            }
            if self.line_start {
                // A blank line: the event ends with this line break.
                let mut end = t + 1;
                let mut cr_pending = false;
                if chunk[t] == b'\r' {
                    if t + 1 < n {
                        if chunk[t + 1] == b'\n' {
                            end = t + 2;
                        }
                    } else {
                        cr_pending = true;
                    }
                }
                let passed = self.end_event(&chunk[ev_start..end], out);
                if cr_pending {
                    self.cr_end = Some(passed);
                }
                ev_start = end;
                pos = end;
            } else {
                self.line_start = true;
                pos = t + 1;
                if chunk[t] == b'\r' {
                    if t + 1 < n {
                        if chunk[t + 1] == b'\n' {
                            pos = t + 2;
                        }
                    } else {
                        self.cr_mid = true;
                    }
                }
            }
        }
        if ev_start < n {
            self.add_partial(&chunk[ev_start..], out);
        }
    }

    /// End of the stream: flushes all held text (filtered as final). An incomplete
    /// trailing event (no blank line yet) is dropped, as an SSE client would; returns
    /// `true` if there was one.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        let partial = !self.pending.is_empty() || self.oversized;
        self.flush_all(out);
        self.pending.clear();
        shrink_vec(&mut self.pending);
        self.oversized = false;
        self.line_start = true;
        self.cr_mid = false;
        self.cr_end = None;
        partial
    }

    /// Hits so far (redactions and masked words), in stream order.
    pub fn hits(&self) -> &[Hit] {
        &self.hits
    }

    /// Takes the hits recorded so far.
    pub fn take_hits(&mut self) -> Vec<Hit> {
        std::mem::take(&mut self.hits)
    }

    /// Bytes held back: text of all blocks not yet released plus the incomplete event
    /// being received. The held text of one block is at most [`window`](Self::window)
    /// chars (see [`held_chars`](Self::held_chars)).
    pub fn held_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.held().len()).sum::<usize>() + self.pending.len()
    }

    /// The most chars held back for one content block.
    pub fn held_chars(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.held().chars().count())
            .max()
            .unwrap_or(0)
    }

    /// Hold-back bound per content block, in chars (the redactor's window or the
    /// longest banned word, whichever is larger).
    pub fn window(&self) -> usize {
        self.cfg.window
    }

    /// An event's bytes `tail` completed it (with `pending` before it).
    fn end_event(&mut self, tail: &[u8], out: &mut Vec<u8>) -> bool {
        if self.oversized {
            out.extend_from_slice(tail);
            self.oversized = false;
            return true;
        }
        if self.pending.is_empty() {
            return self.dispatch(tail, out);
        }
        if self.pending.len() + tail.len() > MAX_EVENT_SIZE {
            self.flush_all(out);
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(tail);
            self.pending.clear();
            shrink_vec(&mut self.pending);
            return true;
        }
        let mut ev = std::mem::take(&mut self.pending);
        ev.extend_from_slice(tail);
        let passed = self.dispatch(&ev, out);
        ev.clear();
        shrink_vec(&mut ev);
        self.pending = ev;
        passed
    }

    /// Bytes of an event whose end has not arrived.
    fn add_partial(&mut self, rest: &[u8], out: &mut Vec<u8>) {
        if self.oversized {
            out.extend_from_slice(rest);
            return;
        }
        if self.pending.len() + rest.len() > MAX_EVENT_SIZE {
            self.flush_all(out);
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(rest);
            self.pending.clear();
            shrink_vec(&mut self.pending);
            self.oversized = true;
            return;
        }
        self.pending.extend_from_slice(rest);
    }

    /// One complete event (raw bytes, terminator included). Returns `true` if it was
    /// passed through unchanged.
    fn dispatch(&mut self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        if raw.len() > MAX_EVENT_SIZE {
            self.flush_all(out);
            out.extend_from_slice(raw);
            return true;
        }
        let (name, data) = parse_fields(raw);
        if let Some((ix, text)) = data.as_deref().and_then(fast_text_delta) {
            return self.on_text(ix, &text, raw, out);
        }
        let head = match &data {
            Some(d) if !d.is_empty() => serde_json::from_slice::<Head<'_>>(d).ok(),
            _ => None,
        };
        let kind: &str = match head.as_ref().and_then(|h| h.kind.as_deref()) {
            Some(k) => k,
            None => std::str::from_utf8(name).unwrap_or(""),
        };
        let index = head.as_ref().and_then(|h| h.index);
        match kind {
            "content_block_delta" => {
                if let Some(h) = &head {
                    if let (Some(ix), Some(d)) = (h.index, &h.delta) {
                        if let (Some("text_delta"), Some(text)) = (d.kind.as_deref(), &d.text) {
                            return self.on_text(ix, text, raw, out);
                        }
                    }
                }
                if let Some(ix) = index {
                    self.flush(ix, false, out);
                }
            }
            "content_block_start" | "content_block_stop" => {
                if let Some(ix) = index {
                    self.flush(ix, true, out);
                }
            }
            "message_delta" | "message_stop" | "error" => self.flush_all(out),
            _ => {}
        }
        out.extend_from_slice(raw);
        true
    }

    /// A text delta for block `ix`.
    fn on_text(&mut self, ix: u64, text: &str, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let f = self.cfg.filters();
        if f.is_empty() {
            out.extend_from_slice(raw);
            return true;
        }
        let bi = match self.blocks.iter().position(|b| b.index == ix) {
            Some(i) => i,
            None => {
                self.blocks.push(Block {
                    index: ix,
                    buf: String::new(),
                    ctx: 0,
                });
                self.blocks.len() - 1
            }
        };
        let b = &mut self.blocks[bi];
        let was_clear = b.buf.len() == b.ctx;
        b.buf.push_str(text);
        let from = b.ctx;
        let u = f.scan(&b.buf, from, false, &mut self.cands);
        let mut c = u;
        loop {
            let mut moved = false;
            for cd in &self.cands {
                if cd.start < c && cd.end > c {
                    c = cd.start;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        let held = b.buf[c..].chars().count();
        if held > self.cfg.window {
            let skip = held - self.cfg.window;
            c += b.buf[c..]
                .char_indices()
                .nth(skip)
                .map_or(b.buf.len() - c, |(k, _)| k);
        }
        self.cands.retain(|cd| cd.end <= c);
        select(&mut self.cands);
        if self.cands.is_empty() && c == b.buf.len() && was_clear {
            b.release(c);
            out.extend_from_slice(raw);
            return true;
        }
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        f.render(&b.buf, from, c, &self.cands, &mut s, &mut self.hits);
        b.release(c);
        if !s.is_empty() {
            write_delta(ix, &s, out);
        }
        if s.capacity() > RETAINED_CAPACITY {
            s = String::new();
        }
        self.scratch = s;
        false
    }

    /// Releases all held text of block `ix` (filtered as final); `remove` forgets the
    /// block (its context too).
    fn flush(&mut self, ix: u64, remove: bool, out: &mut Vec<u8>) {
        let Some(bi) = self.blocks.iter().position(|b| b.index == ix) else {
            return;
        };
        self.flush_block(bi, out);
        if remove {
            self.blocks.swap_remove(bi);
        }
    }

    fn flush_all(&mut self, out: &mut Vec<u8>) {
        for bi in 0..self.blocks.len() {
            self.flush_block(bi, out);
        }
        self.blocks.clear();
    }

    fn flush_block(&mut self, bi: usize, out: &mut Vec<u8>) {
        let f = self.cfg.filters();
        let b = &mut self.blocks[bi];
        if b.buf.len() == b.ctx {
            return;
        }
        let from = b.ctx;
        f.scan(&b.buf, from, true, &mut self.cands);
        select(&mut self.cands);
        let mut s = String::new();
        f.render(
            &b.buf,
            from,
            b.buf.len(),
            &self.cands,
            &mut s,
            &mut self.hits,
        );
        let len = b.buf.len();
        b.release(len);
        if !s.is_empty() {
            write_delta(b.index, &s, out);
        }
    }
}

fn shrink_vec(v: &mut Vec<u8>) {
    if v.capacity() > RETAINED_CAPACITY {
        v.shrink_to(RETAINED_CAPACITY);
    }
}

/// The index and text of a text delta in Anthropic's exact serialization
/// (`{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}}`),
/// without a JSON parser; `None` for anything else (then serde_json decides).
fn fast_text_delta(data: &[u8]) -> Option<(u64, Cow<'_, str>)> {
    let rest = data.strip_prefix(b"{\"type\":\"content_block_delta\",\"index\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let ix = rest[..digits]
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    let rest = &rest[digits..];
    let body = rest.strip_prefix(b",\"delta\":{\"type\":\"text_delta\",\"text\":\"")?;
    let start = rest.len() - body.len();
    let (lit, raw) = scan_string(rest, start)?;
    if &rest[lit.end..] != b"\"}}" {
        return None;
    }
    if !lit.escaped {
        return Some((ix, Cow::Borrowed(raw)));
    }
    let mut s = String::with_capacity(raw.len());
    decode(raw, &mut s, &mut Vec::new());
    Some((ix, Cow::Owned(s)))
}

/// Appends a `content_block_delta` text event.
fn write_delta(ix: u64, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    let mut v = ix;
    loop {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[k..]);
    out.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
    let mark = out.len();
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.truncate(mark);
        out.push(b'"');
        escape_into(text, out);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}\n\n");
}

/// The `event` name and joined `data` of a raw event.
fn parse_fields(raw: &[u8]) -> (&[u8], Option<Cow<'_, [u8]>>) {
    let mut name: &[u8] = b"";
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut i = 0;
    while i < raw.len() {
        let (line, next) = match memchr2(b'\n', b'\r', &raw[i..]) {
            Some(k) => {
                let e = i + k;
                let nx = if raw[e] == b'\r' && raw.get(e + 1) == Some(&b'\n') {
                    e + 2
                } else {
                    e + 1
                };
                (&raw[i..e], nx)
            }
            None => (&raw[i..], raw.len()),
        };
        i = next;
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = value,
            b"data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(d) => {
                        let mut v = d.into_owned();
                        v.push(b'\n');
                        v.extend_from_slice(value);
                        Cow::Owned(v)
                    }
                })
            }
            _ => {}
        }
    }
    (name, data)
}

#[cfg(test)]
mod tests;
