//! Incremental Server-Sent-Events parser.
//!
//! [`SseParser`] *observes* a byte stream (the proxy forwards the original
//! bytes unchanged) and reports every complete event to a callback. It
//! survives any chunking of the input: splits inside lines, inside multi-byte
//! UTF-8 sequences and between the `\r` and `\n` of a CRLF line break all
//! yield exactly the same events as feeding the stream in one piece.
//!
//! Parsing follows the WHATWG `text/event-stream` rules with one
//! simplification: an event is dispatched when a blank line ends an event
//! that had at least one `event` or `data` field.
//!
//! * lines end with `\r\n`, `\n` or `\r`;
//! * a blank line dispatches the pending event;
//! * lines starting with `:` are comments;
//! * `field: value` — a single leading space after the colon is stripped;
//!   a line without a colon is a field with an empty value;
//! * `event` sets the event name, `data` lines are joined with `\n`;
//!   `id`, `retry` and unknown fields are ignored.
//!
//! A leading UTF-8 byte-order mark is not stripped (Anthropic never sends
//! one); it would turn the first field name into an unknown field.
//!
//! Performance: line ends are found with `memchr`; a line that lies entirely
//! inside the current chunk is parsed in place, and a single-line `data`
//! field whose event is dispatched within the same chunk is handed to the
//! callback without being copied. Bytes are only copied when a line or an
//! event straddles chunks, or when several `data` lines are joined. Buffers
//! are reused across events.

use memchr::{memchr, memchr2};

/// Default maximum size of one event (event name + joined data): 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// Buffers whose capacity grew beyond this are shrunk back after use, so a
/// single huge event does not pin memory for the rest of a long stream.
const RETAINED_CAPACITY: usize = 1024 * 1024;

/// Slack allowed on top of the event-size limit for one raw line (field name,
/// colon and space), so that a line only overflows when its value alone would
/// also exceed the limit.
const LINE_SLACK: usize = 16;

/// One dispatched event. Borrowed from the parser (or from the chunk being
/// fed); valid only for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field; `""` when absent (the spec's default, `"message"`)
    /// or when it is not valid UTF-8.
    pub event: &'a str,
    /// The `data:` lines joined with `\n` (no trailing newline).
    pub data: &'a [u8],
}

impl<'a> SseEvent<'a> {
    /// The event type with the spec's default applied: `""` becomes
    /// `"message"`.
    pub fn event_type(&self) -> &'a str {
        if self.event.is_empty() {
            "message"
        } else {
            self.event
        }
    }

    /// The data as UTF-8 text, or `None` if it is not valid UTF-8.
    pub fn data_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }
}

/// Where the data of the event being assembled currently lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataLoc {
    /// No `data` line yet.
    Empty,
    /// A single `data` line lying in the chunk currently being fed
    /// (`start..end`); only valid during one `feed` call.
    InChunk(usize, usize),
    /// In `SseParser::data`.
    Buffered,
}

/// Which field a line sets, judged from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Data,
    Event,
    /// Comments, `id`, `retry` and unknown fields.
    Ignored,
}

/// Incremental SSE parser. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The pending line exceeded the size limit; its bytes are being skipped
    /// until the next line break.
    line_overflow: bool,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk
    /// belongs to that line break.
    pending_cr: bool,
    /// Name of the event being assembled.
    event_name: Vec<u8>,
    /// Joined data of the event being assembled (when `data_loc` is
    /// `Buffered`).
    data: Vec<u8>,
    data_loc: DataLoc,
    /// The event being assembled had an `event` or `data` field.
    has_field: bool,
    /// The event being assembled exceeded the limit and will be dropped.
    oversized: bool,
    max_event_size: usize,
    events_seen: u64,
    oversized_dropped: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default event-size limit ([`DEFAULT_MAX_EVENT_SIZE`]).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser that drops (and counts, see [`oversized_dropped`]) every
    /// event whose name plus joined data is larger than `limit` bytes. The
    /// parser keeps going with the next event; its memory use stays bounded
    /// by roughly `limit` plus one chunk.
    ///
    /// [`oversized_dropped`]: SseParser::oversized_dropped
    pub fn with_max_event_size(limit: usize) -> Self {
        SseParser {
            line: Vec::new(),
            line_overflow: false,
            pending_cr: false,
            event_name: Vec::new(),
            data: Vec::new(),
            data_loc: DataLoc::Empty,
            has_field: false,
            oversized: false,
            max_event_size: limit,
            events_seen: 0,
            oversized_dropped: 0,
        }
    }

    /// Feed the next chunk; calls `on_event` for every complete event in
    /// order. Chunks may be split anywhere.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&SseEvent<'_>)) {
        let mut pos = 0;
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                pos = 1;
            }
        }

        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                // No line end in the rest of this chunk: keep the partial line.
                self.append_partial(rest);
                break;
            };
            let end = pos + i;
            let next = if chunk[end] == b'\n' {
                end + 1
            } else if end + 1 < chunk.len() {
                if chunk[end + 1] == b'\n' {
                    end + 2
                } else {
                    end + 1
                }
            } else {
                // `\r` is the last byte: a `\n` may follow in the next chunk.
                self.pending_cr = true;
                end + 1
            };

            if self.line.is_empty() && !self.line_overflow {
                // Fast path: the whole line is inside this chunk.
                self.process_line(&chunk[pos..end], Some(pos), chunk, &mut on_event);
            } else {
                self.append_partial(&chunk[pos..end]);
                if self.line_overflow {
                    self.line_overflow = false;
                } else {
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, None, chunk, &mut on_event);
                    self.line = line;
                }
                self.line.clear();
                shrink(&mut self.line);
            }
            pos = next;
        }

        // Data still pointing into this chunk must be copied before the chunk
        // goes away.
        if let DataLoc::InChunk(start, end) = self.data_loc {
            self.data.clear();
            self.data.extend_from_slice(&chunk[start..end]);
            self.data_loc = DataLoc::Buffered;
        }
    }

    /// End of stream. Returns `true` if an incomplete event or line was
    /// pending (the stream was cut mid-event); that partial event is
    /// discarded, as the spec requires. The parser is reset and can be reused
    /// for another stream; the counters are kept.
    pub fn finish(&mut self) -> bool {
        let pending = !self.line.is_empty() || self.line_overflow || self.has_field;
        self.line.clear();
        shrink(&mut self.line);
        self.line_overflow = false;
        self.pending_cr = false;
        self.reset_event();
        pending
    }

    /// Number of events dispatched to the callback so far.
    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Number of events dropped because they exceeded the size limit.
    pub fn oversized_dropped(&self) -> u64 {
        self.oversized_dropped
    }

    /// The configured event-size limit in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Appends bytes of a line that straddles chunks to `self.line`,
    /// enforcing the size limit.
    fn append_partial(&mut self, bytes: &[u8]) {
        if self.line_overflow || bytes.is_empty() {
            return;
        }
        let limit = self.max_event_size.saturating_add(LINE_SLACK);
        if self.line.len().saturating_add(bytes.len()) <= limit {
            self.line.extend_from_slice(bytes);
            return;
        }
        // The line is too long to be kept. If it is a `data` or `event`
        // line, its value alone exceeds the limit, so the event is oversized
        // — exactly what `process_line` would conclude had the whole line
        // arrived in one chunk. Other lines are simply ignored.
        match field_kind_split(&self.line, bytes) {
            FieldKind::Data | FieldKind::Event => self.mark_oversized(),
            FieldKind::Ignored => {}
        }
        self.line_overflow = true;
        self.line.clear();
        shrink(&mut self.line);
    }

    /// Handles one complete line (without its line break). `chunk_pos` is
    /// the line's offset in `chunk` if the line lies inside it.
    fn process_line<F: FnMut(&SseEvent<'_>)>(
        &mut self,
        line: &[u8],
        chunk_pos: Option<usize>,
        chunk: &[u8],
        on_event: &mut F,
    ) {
        if line.is_empty() {
            self.dispatch(chunk, on_event);
            return;
        }
        let (name, value_start) = match memchr(b':', line) {
            Some(0) => return, // comment
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (&line[..c], v)
            }
            None => (line, line.len()),
        };
        let value = &line[value_start..];
        match field_kind(name) {
            FieldKind::Data => {
                self.has_field = true;
                if self.oversized {
                    return;
                }
                let (cur_len, sep) = match self.data_loc {
                    DataLoc::Empty => (0, 0),
                    DataLoc::InChunk(s, e) => (e - s, 1),
                    DataLoc::Buffered => (self.data.len(), 1),
                };
                let size = self
                    .event_name
                    .len()
                    .saturating_add(cur_len)
                    .saturating_add(sep)
                    .saturating_add(value.len());
                if size > self.max_event_size {
                    self.mark_oversized();
                    return;
                }
                match (self.data_loc, chunk_pos) {
                    (DataLoc::Empty, Some(p)) => {
                        let s = p + value_start;
                        self.data_loc = DataLoc::InChunk(s, s + value.len());
                    }
                    (DataLoc::Empty, None) => {
                        self.data.clear();
                        self.data.extend_from_slice(value);
                        self.data_loc = DataLoc::Buffered;
                    }
                    (DataLoc::InChunk(s, e), _) => {
                        self.data.clear();
                        self.data.extend_from_slice(&chunk[s..e]);
                        self.data.push(b'\n');
                        self.data.extend_from_slice(value);
                        self.data_loc = DataLoc::Buffered;
                    }
                    (DataLoc::Buffered, _) => {
                        self.data.push(b'\n');
                        self.data.extend_from_slice(value);
                    }
                }
            }
            FieldKind::Event => {
                self.has_field = true;
                if self.oversized {
                    return;
                }
                let data_len = match self.data_loc {
                    DataLoc::Empty => 0,
                    DataLoc::InChunk(s, e) => e - s,
                    DataLoc::Buffered => self.data.len(),
                };
                if value.len().saturating_add(data_len) > self.max_event_size {
                    self.mark_oversized();
                    return;
                }
                self.event_name.clear();
                self.event_name.extend_from_slice(value);
            }
            FieldKind::Ignored => {}
        }
    }

    /// A blank line: dispatch the pending event, if any, and reset.
    fn dispatch<F: FnMut(&SseEvent<'_>)>(&mut self, chunk: &[u8], on_event: &mut F) {
        if !self.has_field {
            return;
        }
        if self.oversized {
            self.oversized_dropped += 1;
        } else {
            let data: &[u8] = match self.data_loc {
                DataLoc::Empty => &[],
                DataLoc::InChunk(s, e) => &chunk[s..e],
                DataLoc::Buffered => &self.data,
            };
            let event = std::str::from_utf8(&self.event_name).unwrap_or("");
            self.events_seen += 1;
            on_event(&SseEvent { event, data });
        }
        self.reset_event();
    }

    fn mark_oversized(&mut self) {
        self.has_field = true;
        self.oversized = true;
        self.data.clear();
        self.data_loc = DataLoc::Empty;
        self.event_name.clear();
    }

    fn reset_event(&mut self) {
        self.has_field = false;
        self.oversized = false;
        self.data_loc = DataLoc::Empty;
        self.data.clear();
        shrink(&mut self.data);
        self.event_name.clear();
        shrink(&mut self.event_name);
    }
}

fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > RETAINED_CAPACITY {
        buf.shrink_to(RETAINED_CAPACITY);
    }
}

fn field_kind(name: &[u8]) -> FieldKind {
    match name {
        b"data" => FieldKind::Data,
        b"event" => FieldKind::Event,
        _ => FieldKind::Ignored,
    }
}

/// [`field_kind`] of a line whose start is split over `a` followed by `b`.
fn field_kind_split(a: &[u8], b: &[u8]) -> FieldKind {
    if let Some(c) = memchr(b':', a) {
        return field_kind(&a[..c]);
    }
    let name_tail = match memchr(b':', b) {
        Some(c) => &b[..c],
        // No colon at all: the whole (over-long) line is the field name,
        // which cannot be `data` or `event`.
        None => return FieldKind::Ignored,
    };
    // Only names of at most five bytes can match; a comment (`:` first)
    // yields an empty name.
    let mut name = [0u8; 5];
    let len = a.len() + name_tail.len();
    if len > name.len() {
        return FieldKind::Ignored;
    }
    name[..a.len()].copy_from_slice(a);
    name[a.len()..len].copy_from_slice(name_tail);
    field_kind(&name[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const BASIC: &[u8] = include_bytes!("../tests/data/stream_basic.sse");
    pub(crate) const CRLF: &[u8] = include_bytes!("../tests/data/stream_crlf.sse");
    pub(crate) const ERROR: &[u8] = include_bytes!("../tests/data/stream_error.sse");

    type Ev = (String, Vec<u8>);

    fn collect_chunks(p: &mut SseParser, chunks: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| out.push((e.event.to_string(), e.data.to_vec())));
        }
        out
    }

    fn parse(input: &[u8]) -> Vec<Ev> {
        collect_chunks(&mut SseParser::new(), &[input])
    }

    fn parse_split(input: &[u8], cuts: &[usize], limit: usize) -> (Vec<Ev>, u64, bool) {
        let mut p = SseParser::with_max_event_size(limit);
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            let c = c.clamp(prev, input.len());
            p.feed(&input[prev..c], |e| {
                out.push((e.event.to_string(), e.data.to_vec()))
            });
            prev = c;
        }
        let pending = p.finish();
        (out, p.oversized_dropped(), pending)
    }

    fn ev(name: &str, data: &str) -> Ev {
        (name.to_string(), data.as_bytes().to_vec())
    }

    #[test]
    fn lf_crlf_and_cr_line_endings() {
        let expected = vec![ev("a", "1"), ev("b", "2")];
        assert_eq!(
            parse(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"),
            expected
        );
        assert_eq!(
            parse(b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2\r\n\r\n"),
            expected
        );
        assert_eq!(
            parse(b"event: a\rdata: 1\r\revent: b\rdata: 2\r\r"),
            expected
        );
        // Mixed.
        assert_eq!(
            parse(b"event: a\r\ndata: 1\r\revent: b\ndata: 2\n\r\n"),
            expected
        );
    }

    #[test]
    fn cr_then_lf_across_chunks_is_one_line_break() {
        let mut p = SseParser::new();
        let out = collect_chunks(
            &mut p,
            &[
                b"data: 1\r",
                b"\n",
                b"data: 2\r",
                b"\nevent: x\r",
                b"\n\r",
                b"\n",
            ],
        );
        assert_eq!(out, vec![ev("x", "1\n2")]);
        assert!(!p.finish());
    }

    #[test]
    fn cr_at_chunk_end_followed_by_empty_chunk_then_lf() {
        let mut p = SseParser::new();
        let out = collect_chunks(&mut p, &[b"data: 1\r", b"", b"\n", b"\r", b"", b"\n"]);
        assert_eq!(out, vec![ev("", "1")]);
        assert_eq!(p.events_seen(), 1);
    }

    #[test]
    fn cr_cr_is_a_blank_line() {
        let mut p = SseParser::new();
        let out = collect_chunks(&mut p, &[b"data: 1\r", b"\r", b"data: 2\n\n"]);
        assert_eq!(out, vec![ev("", "1"), ev("", "2")]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(
            parse(b": hello\ndata: x\n: in the middle\ndata: y\n\n:only a comment\n\n"),
            vec![ev("", "x\ny")]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        assert_eq!(
            parse(b"data: a\ndata:b\ndata\ndata:  c\n\n"),
            vec![ev("", "a\nb\n\n c")]
        );
    }

    #[test]
    fn only_one_leading_space_is_stripped_and_colons_in_value_kept() {
        assert_eq!(
            parse(b"event:x\ndata:  {\"a\": 1}\n\n"),
            vec![ev("x", " {\"a\": 1}")]
        );
    }

    #[test]
    fn event_without_event_field_has_empty_name() {
        let mut out = Vec::new();
        SseParser::new().feed(b"data: {\"type\":\"ping\"}\n\n", |e| {
            assert_eq!(e.event_type(), "message");
            assert_eq!(e.data_str(), Some("{\"type\":\"ping\"}"));
            out.push((e.event.to_string(), e.data.to_vec()));
        });
        assert_eq!(out, vec![ev("", "{\"type\":\"ping\"}")]);
    }

    #[test]
    fn event_field_without_data_is_dispatched_with_empty_data() {
        assert_eq!(parse(b"event: ping\n\n"), vec![ev("ping", "")]);
    }

    #[test]
    fn id_retry_unknown_fields_and_extra_blank_lines_do_not_dispatch() {
        let mut p = SseParser::new();
        let out = collect_chunks(&mut p, &[b"\n\nid: 7\nretry: 100\nfoo: bar\n\n\n"]);
        assert!(out.is_empty());
        assert_eq!(p.events_seen(), 0);
        assert!(!p.finish());
    }

    #[test]
    fn last_event_field_wins() {
        assert_eq!(
            parse(b"event: a\nevent: b\ndata: x\n\n"),
            vec![ev("b", "x")]
        );
    }

    #[test]
    fn invalid_utf8_event_name_becomes_empty() {
        let mut out = Vec::new();
        SseParser::new().feed(b"event: \xff\xfe\ndata: \xc3\n\n", |e| {
            out.push((e.event.to_string(), e.data.to_vec()))
        });
        assert_eq!(out, vec![(String::new(), vec![0xc3])]);
    }

    #[test]
    fn utf8_event_name_split_across_chunks() {
        let input = "event: 事件\ndata: 数据😀\n\n".as_bytes();
        for cut in 0..=input.len() {
            let (out, _, pending) = parse_split(input, &[cut], DEFAULT_MAX_EVENT_SIZE);
            assert_eq!(out, vec![ev("事件", "数据😀")], "cut at {cut}");
            assert!(!pending);
        }
    }

    #[test]
    fn data_straddling_chunks_and_multi_line_across_chunks() {
        let mut p = SseParser::new();
        let out = collect_chunks(&mut p, &[b"data: he", b"llo\ndata: wor", b"ld\n", b"\n"]);
        assert_eq!(out, vec![ev("", "hello\nworld")]);
        // Data line complete in one chunk, dispatching blank line in the next.
        let out = collect_chunks(&mut p, &[b"data: one\n", b"data: two\n", b"\n"]);
        assert_eq!(out, vec![ev("", "one\ntwo")]);
        let out = collect_chunks(&mut p, &[b"event: e\ndata: x\n", b"\n"]);
        assert_eq!(out, vec![ev("e", "x")]);
        assert_eq!(p.events_seen(), 3);
    }

    #[test]
    fn oversized_event_is_dropped_and_parser_continues() {
        let big = format!(
            "event: big\ndata: {}\n\nevent: small\ndata: ok\n\n",
            "x".repeat(100)
        );
        for chunking in [
            vec![],
            vec![3usize, 20, 50],
            (0..big.len()).collect::<Vec<_>>(),
        ] {
            let (out, dropped, pending) = parse_split(big.as_bytes(), &chunking, 64);
            assert_eq!(out, vec![ev("small", "ok")]);
            assert_eq!(dropped, 1);
            assert!(!pending);
        }
    }

    #[test]
    fn oversized_by_accumulated_data_lines() {
        let input = b"data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\ndata: fine\n\n";
        let (out, dropped, _) = parse_split(input, &[], 25);
        assert_eq!(out, vec![ev("", "fine")]);
        assert_eq!(dropped, 1);
        // Exactly at the limit is allowed: 10 + 1 + 10 = 21.
        let (out, dropped, _) = parse_split(b"data: 0123456789\ndata: 0123456789\n\n", &[], 21);
        assert_eq!(out.len(), 1);
        assert_eq!(dropped, 0);
        let (out, dropped, _) = parse_split(b"data: 0123456789\ndata: 0123456789\n\n", &[], 20);
        assert!(out.is_empty());
        assert_eq!(dropped, 1);
    }

    #[test]
    fn huge_comment_or_unknown_field_is_ignored_not_counted() {
        let input = format!(
            ":{}\nfoo: {}\ndata: ok\n\n",
            "c".repeat(500),
            "f".repeat(500)
        );
        for cuts in [
            vec![],
            vec![10usize, 200, 400, 700],
            (0..input.len()).step_by(7).collect(),
        ] {
            let (out, dropped, _) = parse_split(input.as_bytes(), &cuts, 32);
            assert_eq!(out, vec![ev("", "ok")]);
            assert_eq!(dropped, 0);
        }
    }

    #[test]
    fn line_buffer_stays_bounded_on_endless_line() {
        let mut p = SseParser::with_max_event_size(1024);
        let chunk = [b'x'; 4096];
        for _ in 0..256 {
            p.feed(&chunk, |_| panic!("no event expected"));
        }
        assert!(p.line.capacity() <= RETAINED_CAPACITY);
        assert!(p.line.len() <= 1024 + LINE_SLACK);
        assert!(p.finish());
    }

    #[test]
    fn finish_reports_truncated_stream() {
        let mut p = SseParser::new();
        p.feed(b"event: message_start\ndata: {\"type\":\"mess", |_| {});
        assert!(p.finish());

        let mut p = SseParser::new();
        p.feed(b"data: complete line but no blank line\n", |_| {});
        assert!(p.finish());

        let mut p = SseParser::new();
        let mut n = 0;
        p.feed(b"data: done\n\n", |_| n += 1);
        assert!(!p.finish());
        assert_eq!(n, 1);

        // Trailing `\r` is a complete line break.
        let mut p = SseParser::new();
        p.feed(b"data: done\r\r", |_| {});
        assert!(!p.finish());
        assert_eq!(p.events_seen(), 1);
    }

    #[test]
    fn finish_resets_for_reuse() {
        let mut p = SseParser::new();
        p.feed(b"event: a\ndata: partial", |_| {});
        assert!(p.finish());
        let out = collect_chunks(&mut p, &[b"data: new\n\n"]);
        assert_eq!(out, vec![ev("", "new")]);
    }

    fn fixture_events() -> Vec<Ev> {
        parse(BASIC)
    }

    #[test]
    fn basic_fixture_parses() {
        let evs = fixture_events();
        let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.get(1), Some(&"ping"));
        assert_eq!(names.last(), Some(&"message_stop"));
        assert!(names.contains(&"content_block_delta"));
        assert!(evs
            .iter()
            .any(|e| std::str::from_utf8(&e.1).is_ok_and(|s| s.contains("你好"))));
        assert!(evs
            .iter()
            .any(|e| std::str::from_utf8(&e.1).is_ok_and(|s| s.contains("input_json_delta"))));
        for e in &evs {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&e.1).is_ok(),
                "{e:?}"
            );
        }
    }

    #[test]
    fn crlf_fixture_matches_lf_fixture() {
        assert!(CRLF.windows(2).any(|w| w == b"\r\n"));
        assert_eq!(parse(CRLF), fixture_events());
    }

    #[test]
    fn every_two_way_split_and_byte_by_byte_match_whole() {
        for fixture in [BASIC, CRLF, ERROR] {
            let whole = parse(fixture);
            for cut in 0..=fixture.len() {
                let (out, _, pending) = parse_split(fixture, &[cut], DEFAULT_MAX_EVENT_SIZE);
                assert_eq!(out, whole, "cut at {cut}");
                assert!(!pending);
            }
            let mut p = SseParser::new();
            let bytes: Vec<&[u8]> = fixture.chunks(1).collect();
            assert_eq!(collect_chunks(&mut p, &bytes), whole);
        }
    }

    /// Sorted cut points inside `0..=len`.
    fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..=len, 0..64).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    /// Bytes drawn mostly from SSE syntax, to exercise the parser's states.
    fn sse_soup() -> impl Strategy<Value = Vec<u8>> {
        let atoms: Vec<&'static [u8]> = vec![
            b"data",
            b"event",
            b"id",
            b":",
            b": ",
            b" ",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"yz",
            "é".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
            b"data: ",
            b"event: ",
        ];
        proptest::collection::vec(proptest::sample::select(atoms), 0..80)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn prop_fixture_chunking_invariance(
            which in 0usize..3,
            cut_seed in proptest::collection::vec(any::<proptest::sample::Index>(), 0..64),
        ) {
            let fixture = [BASIC, CRLF, ERROR][which];
            let mut cut_points: Vec<usize> =
                cut_seed.iter().map(|i| i.index(fixture.len() + 1)).collect();
            cut_points.sort_unstable();
            let whole = parse(fixture);
            let (out, dropped, pending) = parse_split(fixture, &cut_points, DEFAULT_MAX_EVENT_SIZE);
            prop_assert_eq!(out, whole);
            prop_assert_eq!(dropped, 0);
            prop_assert!(!pending);
        }

        #[test]
        fn prop_soup_chunking_invariance(
            input in sse_soup(),
            limit in prop_oneof![Just(DEFAULT_MAX_EVENT_SIZE), 0usize..24],
            seed in cuts(4096),
        ) {
            let cut_points: Vec<usize> = seed.iter().map(|c| c % (input.len() + 1)).collect();
            let mut cut_points = cut_points;
            cut_points.sort_unstable();
            let whole = parse_split(&input, &[], limit);
            let split = parse_split(&input, &cut_points, limit);
            prop_assert_eq!(split, whole);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            limit in prop_oneof![Just(DEFAULT_MAX_EVENT_SIZE), 0usize..64],
            seed in cuts(2048),
        ) {
            let mut p = SseParser::with_max_event_size(limit);
            let mut prev = 0;
            let mut n = 0u64;
            for c in seed.iter().map(|&c| c.min(input.len())).chain(std::iter::once(input.len())) {
                if c >= prev {
                    p.feed(&input[prev..c], |e| {
                        n += 1;
                        assert!(e.event.len() + e.data.len() <= limit);
                    });
                    prev = c;
                }
            }
            prop_assert_eq!(n, p.events_seen());
            let _ = p.finish();
        }
    }
}
