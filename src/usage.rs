//! Token usage extraction from Anthropic `/v1/messages` responses.
//!
//! * [`StreamUsage`] follows a streamed response event by event (fed from
//!   [`crate::sse::SseParser`]). Only `message_start`, `message_delta` and
//!   `error` data is JSON-parsed; the hot `content_block_delta` events are
//!   skipped by looking at the event name (or, for unnamed events, at a
//!   leading `"type":"…"`).
//! * [`usage_from_json`] reads a non-streaming response body.
//!
//! Malformed JSON, unexpected types and missing fields never panic; they are
//! ignored. Token counts that are not non-negative integers count as absent.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use memchr::memchr;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::sse::SseEvent;

/// Token usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// `input + output + cache_creation + cache_read` (saturating).
    pub fn total(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens)
    }

    /// Overwrites every field that is present in `raw`.
    fn apply(&mut self, raw: &RawUsage) {
        if let Some(v) = raw.input_tokens {
            self.input_tokens = v;
        }
        if let Some(v) = raw.output_tokens {
            self.output_tokens = v;
        }
        if let Some(v) = raw.cache_creation_input_tokens {
            self.cache_creation_input_tokens = v;
        }
        if let Some(v) = raw.cache_read_input_tokens {
            self.cache_read_input_tokens = v;
        }
    }
}

/// Follows a streamed `/v1/messages` response event by event.
///
/// `message_start` sets the model and the initial usage; every
/// `message_delta` replaces the fields present in its `usage` (Anthropic's
/// `output_tokens` there is cumulative, and newer API versions also repeat
/// `input_tokens` / `cache_*`); `message_stop` marks the stream complete; an
/// `error` event records its error type.
#[derive(Debug, Default, Clone)]
pub struct StreamUsage {
    usage: Usage,
    model: Option<String>,
    message_id: Option<String>,
    stop_reason: Option<String>,
    error_type: Option<String>,
    saw_message_start: bool,
    saw_message_stop: bool,
    saw_error: bool,
}

/// Event kinds that [`StreamUsage`] cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    Delta,
    Stop,
    Error,
}

impl StreamUsage {
    /// A tracker for a new stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one SSE event into account. Cheap for events other than
    /// `message_start`, `message_delta` and `error`.
    pub fn observe(&mut self, ev: &SseEvent<'_>) {
        let kind = match ev.event {
            "content_block_delta" | "content_block_start" | "content_block_stop" | "ping" => return,
            "message_start" => Kind::Start,
            "message_delta" => Kind::Delta,
            "message_stop" => Kind::Stop,
            "error" => Kind::Error,
            "" | "message" => match sniff_type(ev.data) {
                Some(b"message_start") => Kind::Start,
                Some(b"message_delta") => Kind::Delta,
                Some(b"message_stop") => Kind::Stop,
                Some(b"error") => Kind::Error,
                _ => return,
            },
            _ => return,
        };
        match kind {
            Kind::Start => {
                self.saw_message_start = true;
                let Ok(start) = serde_json::from_slice::<MessageStart<'_>>(ev.data) else {
                    return;
                };
                let Some(msg) = start.message else { return };
                if let Some(model) = msg.model {
                    set_string(&mut self.model, &model);
                }
                if let Some(id) = msg.id {
                    set_string(&mut self.message_id, &id);
                }
                if let Some(reason) = msg.stop_reason {
                    set_string(&mut self.stop_reason, &reason);
                }
                if let Some(u) = msg.usage {
                    self.usage.apply(&u);
                }
            }
            Kind::Delta => {
                let Ok(delta) = serde_json::from_slice::<MessageDelta<'_>>(ev.data) else {
                    return;
                };
                if let Some(reason) = delta.delta.and_then(|d| d.stop_reason) {
                    set_string(&mut self.stop_reason, &reason);
                }
                if let Some(u) = delta.usage {
                    self.usage.apply(&u);
                }
            }
            Kind::Stop => self.saw_message_stop = true,
            Kind::Error => {
                self.saw_error = true;
                let ty = serde_json::from_slice::<ErrorEvent<'_>>(ev.data)
                    .ok()
                    .and_then(|e| e.error)
                    .and_then(|e| e.ty);
                if let Some(ty) = ty {
                    set_string(&mut self.error_type, &ty);
                }
            }
        }
    }

    /// Usage so far (final once [`completed`](Self::completed)).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The model named in `message_start`.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The message id named in `message_start`.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// `true` once `message_stop` has been seen.
    pub fn completed(&self) -> bool {
        self.saw_message_stop
    }

    /// `true` once `message_start` has been seen (even if its data was
    /// malformed).
    pub fn saw_message_start(&self) -> bool {
        self.saw_message_start
    }

    /// `true` once an `error` event has been seen (even if its data was
    /// malformed, in which case [`error_type`](Self::error_type) is `None`).
    pub fn saw_error(&self) -> bool {
        self.saw_error
    }

    /// The `error.type` of an `error` event, e.g. `"overloaded_error"`.
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }

    /// The latest non-null `stop_reason`, e.g. `"end_turn"` or `"tool_use"`.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }
}

/// Usage (and model) from a non-streaming JSON body:
/// `{"id":..,"type":"message","model":..,"usage":{...}}`, or a
/// `/v1/messages/count_tokens` reply `{"input_tokens": N}` (model `None`).
/// `None` if the body is not such a JSON object (e.g. an error body).
pub fn usage_from_json(body: &[u8]) -> Option<(Usage, Option<String>)> {
    let body: Body<'_> = serde_json::from_slice(body).ok()?;
    if let Some(raw) = body.usage {
        let mut usage = Usage::default();
        usage.apply(&raw);
        return Some((usage, body.model.map(Cow::into_owned)));
    }
    let input_tokens = body.input_tokens?;
    Some((
        Usage {
            input_tokens,
            ..Usage::default()
        },
        body.model.map(Cow::into_owned),
    ))
}

fn set_string(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// Cheaply reads the value of a leading `"type"` key: `{ "type" : "xyz"` →
/// `xyz`. `None` if the data does not start that way.
fn sniff_type(data: &[u8]) -> Option<&[u8]> {
    fn skip_ws(d: &[u8], mut i: usize) -> usize {
        while matches!(d.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }
    fn expect(d: &[u8], i: usize, tok: &[u8]) -> Option<usize> {
        let i = skip_ws(d, i);
        d.get(i..i + tok.len())
            .filter(|s| *s == tok)
            .map(|_| i + tok.len())
    }
    let i = expect(data, 0, b"{")?;
    let i = expect(data, i, b"\"type\"")?;
    let i = expect(data, i, b":")?;
    let i = expect(data, i, b"\"")?;
    let rest = &data[i..];
    // Type names have no escapes; only look a short way ahead.
    let window = &rest[..rest.len().min(32)];
    memchr(b'"', window).map(|end| &window[..end])
}

// --- borrowed JSON shapes (unknown fields are ignored) ---

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default, deserialize_with = "lenient_u64")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_obj")]
    message: Option<MessageObj<'a>>,
}

#[derive(Deserialize)]
struct MessageObj<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_obj")]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_obj")]
    delta: Option<DeltaObj<'a>>,
    #[serde(default, deserialize_with = "lenient_obj")]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct DeltaObj<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorEvent<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_obj")]
    error: Option<ErrorObj<'a>>,
}

#[derive(Deserialize)]
struct ErrorObj<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "lenient_str")]
    ty: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default, deserialize_with = "lenient_str")]
    model: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_obj")]
    usage: Option<RawUsage>,
    #[serde(default, deserialize_with = "lenient_u64")]
    input_tokens: Option<u64>,
}

/// Accepts a non-negative integer; anything else (null, negative, float,
/// string, object, array, bool) becomes `None` instead of an error.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a token count")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Accepts a string (borrowed when it has no escapes); anything else becomes
/// `None`.
fn lenient_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// Accepts a JSON object deserialized as `T`; any other JSON value (null,
/// string, number, array, bool) becomes `None` instead of an error. Errors
/// inside the object still propagate.
fn lenient_obj<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;
    use proptest::prelude::*;

    const BASIC: &[u8] = include_bytes!("../tests/data/stream_basic.sse");
    const CRLF: &[u8] = include_bytes!("../tests/data/stream_crlf.sse");
    const ERROR: &[u8] = include_bytes!("../tests/data/stream_error.sse");

    /// Everything observable about a finished stream.
    #[derive(Debug, PartialEq, Eq)]
    struct Summary {
        usage: Usage,
        model: Option<String>,
        id: Option<String>,
        completed: bool,
        stop_reason: Option<String>,
        saw_error: bool,
        error_type: Option<String>,
        events: u64,
        truncated: bool,
    }

    fn run(chunks: &[&[u8]]) -> Summary {
        let mut p = SseParser::new();
        let mut s = StreamUsage::new();
        for c in chunks {
            p.feed(c, |e| s.observe(e));
        }
        let truncated = p.finish();
        Summary {
            usage: s.usage(),
            model: s.model().map(str::to_owned),
            id: s.message_id().map(str::to_owned),
            completed: s.completed(),
            stop_reason: s.stop_reason().map(str::to_owned),
            saw_error: s.saw_error(),
            error_type: s.error_type().map(str::to_owned),
            events: p.events_seen(),
            truncated,
        }
    }

    fn observe_all(events: &[(&str, &str)]) -> StreamUsage {
        let mut s = StreamUsage::new();
        for (event, data) in events {
            s.observe(&SseEvent {
                event,
                data: data.as_bytes(),
            });
        }
        s
    }

    #[test]
    fn basic_fixture_usage() {
        let s = run(&[BASIC]);
        assert_eq!(
            s.usage,
            Usage {
                input_tokens: 472,
                output_tokens: 89,
                cache_creation_input_tokens: 1024,
                cache_read_input_tokens: 2048,
            }
        );
        assert_eq!(s.usage.total(), 472 + 89 + 1024 + 2048);
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(s.id.as_deref(), Some("msg_01XFDUDYJgAACzvnptvVoYEL"));
        assert!(s.completed);
        assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
        assert!(!s.saw_error);
        assert_eq!(s.error_type, None);
        assert_eq!(s.events, 15);
        assert!(!s.truncated);
    }

    #[test]
    fn crlf_fixture_usage_matches_basic() {
        assert_eq!(run(&[CRLF]), run(&[BASIC]));
    }

    #[test]
    fn error_fixture() {
        let s = run(&[ERROR]);
        assert!(s.saw_error);
        assert_eq!(s.error_type.as_deref(), Some("overloaded_error"));
        assert!(!s.completed);
        assert_eq!(s.model.as_deref(), Some("claude-opus-4-1-20250805"));
        // Null cache fields count as absent (0).
        assert_eq!(
            s.usage,
            Usage {
                input_tokens: 1203,
                output_tokens: 1,
                ..Usage::default()
            }
        );
        assert_eq!(s.stop_reason, None);
    }

    #[test]
    fn truncated_stream_is_not_completed() {
        let cut = BASIC.len() / 2;
        let s = run(&[&BASIC[..cut]]);
        assert!(!s.completed);
        assert!(s.truncated);
        assert_eq!(s.usage.input_tokens, 472);
        assert_eq!(s.usage.output_tokens, 1);
    }

    #[test]
    fn message_delta_output_tokens_replace_not_add() {
        let s = observe_all(&[
            (
                "message_start",
                r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":10,"output_tokens":1}}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":5}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
            ),
        ]);
        assert_eq!(s.usage().output_tokens, 7);
        assert_eq!(s.usage().input_tokens, 10);
        assert_eq!(s.stop_reason(), Some("end_turn"));
    }

    #[test]
    fn message_delta_with_full_usage_replaces_present_non_null_fields() {
        let s = observe_all(&[
            (
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":3,"cache_read_input_tokens":4}}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":12,"cache_creation_input_tokens":null,"cache_read_input_tokens":40,"output_tokens":9,"server_tool_use":{"web_search_requests":1}}}"#,
            ),
        ]);
        assert_eq!(
            s.usage(),
            Usage {
                input_tokens: 12,
                output_tokens: 9,
                cache_creation_input_tokens: 3,
                cache_read_input_tokens: 40,
            }
        );
    }

    #[test]
    fn unnamed_events_are_recognised_by_type_prefix() {
        let s = observe_all(&[
            (
                "",
                r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":3}}}"#,
            ),
            (
                "",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\"type\":\"message_stop\""}}"#,
            ),
            (
                "message",
                r#" { "type" : "message_delta", "usage": {"output_tokens": 4}}"#,
            ),
            ("", r#"{"type":"message_stop"}"#),
        ]);
        assert_eq!(s.model(), Some("claude-x"));
        assert_eq!(s.usage().input_tokens, 3);
        assert_eq!(s.usage().output_tokens, 4);
        assert!(s.completed());
    }

    #[test]
    fn unnamed_event_with_non_leading_type_is_ignored() {
        let s = observe_all(&[("", r#"{"usage":{"input_tokens":3},"type":"message_delta"}"#)]);
        assert_eq!(s.usage(), Usage::default());
    }

    #[test]
    fn sniff_type_cases() {
        assert_eq!(sniff_type(br#"{"type":"ping"}"#), Some(&b"ping"[..]));
        assert_eq!(
            sniff_type(b"{\n  \"type\" :\t\"error\","),
            Some(&b"error"[..])
        );
        assert_eq!(sniff_type(br#"{"type":"#), None);
        assert_eq!(sniff_type(br#"{"type":"unterminated"#), None);
        assert_eq!(sniff_type(br#"{"typo":"x"}"#), None);
        assert_eq!(sniff_type(b""), None);
        assert_eq!(sniff_type(b"[]"), None);
    }

    #[test]
    fn other_events_are_not_parsed() {
        // Malformed data on skipped events must not matter.
        let s = observe_all(&[
            ("content_block_delta", "{not json"),
            ("ping", ""),
            ("some_future_event", r#"{"usage":{"input_tokens":99}}"#),
        ]);
        assert_eq!(s.usage(), Usage::default());
        assert!(!s.saw_message_start());
    }

    #[test]
    fn malformed_json_is_ignored() {
        let s = observe_all(&[
            (
                "message_start",
                r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":10"#,
            ),
            ("message_start", "\u{0}\u{1}garbage"),
            ("message_delta", r#"{"usage":{"output_tokens":}}"#),
            ("message_delta", r#"[1,2,3]"#),
            ("message_delta", r#"null"#),
            ("error", "not json at all"),
        ]);
        assert_eq!(s.usage(), Usage::default());
        assert_eq!(s.model(), None);
        assert!(s.saw_message_start());
        assert!(s.saw_error());
        assert_eq!(s.error_type(), None);
    }

    #[test]
    fn wrong_types_and_nulls_are_treated_as_absent() {
        let s = observe_all(&[
            (
                "message_start",
                r#"{"message":{"model":42,"id":null,"usage":{"input_tokens":"7","output_tokens":-1,"cache_read_input_tokens":2.5,"cache_creation_input_tokens":6}}}"#,
            ),
            (
                "message_delta",
                r#"{"delta":"weird","usage":{"output_tokens":[1],"input_tokens":{"a":1}}}"#,
            ),
            (
                "message_delta",
                r#"{"delta":{"stop_reason":7},"usage":null}"#,
            ),
            ("message_delta", r#"{"usage":"none"}"#),
        ]);
        assert_eq!(
            s.usage(),
            Usage {
                cache_creation_input_tokens: 6,
                ..Usage::default()
            }
        );
        assert_eq!(s.model(), None);
        assert_eq!(s.stop_reason(), None);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let s = observe_all(&[
            (
                "message_start",
                r#"{"message":{"model":"claude-\u0078","usage":{}}}"#,
            ),
            (
                "error",
                r#"{"type":"error","error":{"type":"api\u005ferror","message":"x"}}"#,
            ),
        ]);
        assert_eq!(s.model(), Some("claude-x"));
        assert_eq!(s.error_type(), Some("api_error"));
    }

    #[test]
    fn huge_token_counts_saturate_in_total() {
        let u = Usage {
            input_tokens: u64::MAX,
            output_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(u.total(), u64::MAX);
        let s = observe_all(&[(
            "message_start",
            r#"{"message":{"usage":{"input_tokens":18446744073709551615,"output_tokens":18446744073709551616}}}"#,
        )]);
        assert_eq!(s.usage().input_tokens, u64::MAX);
        assert_eq!(s.usage().output_tokens, 0);
    }

    #[test]
    fn usage_serializes_to_json() {
        let u = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_creation_input_tokens: 3,
            cache_read_input_tokens: 4,
        };
        assert_eq!(
            serde_json::to_string(&u).ok().as_deref(),
            Some(
                r#"{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":3,"cache_read_input_tokens":4}"#
            )
        );
    }

    #[test]
    fn usage_from_json_message_body() {
        let body = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"你好 👋"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":null,"cache_read_input_tokens":17}}"#.as_bytes();
        let (u, model) = usage_from_json(body).expect("usage");
        assert_eq!(
            u,
            Usage {
                input_tokens: 2095,
                output_tokens: 503,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 17,
            }
        );
        assert_eq!(model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn usage_from_json_count_tokens_body() {
        assert_eq!(
            usage_from_json(br#"{"input_tokens": 2095}"#),
            Some((
                Usage {
                    input_tokens: 2095,
                    ..Usage::default()
                },
                None
            ))
        );
    }

    #[test]
    fn usage_from_json_rejects_other_bodies() {
        assert_eq!(
            usage_from_json(
                br#"{"type":"error","error":{"type":"invalid_request_error","message":"x"}}"#
            ),
            None
        );
        assert_eq!(usage_from_json(b""), None);
        assert_eq!(usage_from_json(b"{\"usage\":"), None);
        assert_eq!(usage_from_json(b"[]"), None);
        assert_eq!(usage_from_json(b"42"), None);
        assert_eq!(usage_from_json(b"{\"input_tokens\":null}"), None);
        assert_eq!(usage_from_json(b"\xff\xfe"), None);
    }

    proptest! {
        #[test]
        fn prop_fixture_usage_chunking_invariance(
            which in 0usize..3,
            seed in proptest::collection::vec(any::<proptest::sample::Index>(), 0..64),
        ) {
            let fixture = [BASIC, CRLF, ERROR][which];
            let mut cuts: Vec<usize> = seed.iter().map(|i| i.index(fixture.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain(std::iter::once(fixture.len())) {
                chunks.push(&fixture[prev..c]);
                prev = c;
            }
            prop_assert_eq!(run(&chunks), run(&[fixture]));
        }

        #[test]
        fn prop_arbitrary_event_data_never_panics(
            event in prop_oneof![
                Just(""), Just("message"), Just("message_start"), Just("message_delta"),
                Just("message_stop"), Just("error"), Just("ping"),
            ],
            data in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut s = StreamUsage::new();
            s.observe(&SseEvent { event, data: &data });
            let _ = usage_from_json(&data);
        }

        #[test]
        fn prop_jsonish_data_never_panics(data in r#"[{}\[\]":,0-9a-z_ \-.nul]{0,200}"#) {
            let mut s = StreamUsage::new();
            for event in ["message_start", "message_delta", "error", ""] {
                s.observe(&SseEvent { event, data: data.as_bytes() });
            }
            let prefixed = format!(r#"{{"type":"message_start","message":{data}"#);
            s.observe(&SseEvent { event: "", data: prefixed.as_bytes() });
            let _ = usage_from_json(data.as_bytes());
        }
    }
}
