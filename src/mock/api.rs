//! Routing and Anthropic-shaped responses, including the request-header
//! fault/shape controls (see the module docs of [`crate::mock`]).

use std::borrow::Cow;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::{push_chunk, write_head, BodyLen, Meta, MAX_BODY};
use super::{Ctx, RecordedRequest};

/// Default number of `content_block_delta` events.
const DEFAULT_DELTAS: usize = 5;
/// Upper bound for `x-mock-deltas`.
const MAX_DELTAS: usize = 100_000;
/// Models served by `/v1/models`: (id, display name, created_at), newest first.
const MODELS: [(&str, &str, &str); 3] = [
    (
        "claude-sonnet-4-5",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    ("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];
const JSON: &str = "application/json";
const SSE: &str = "text/event-stream; charset=utf-8";

// ---------------------------------------------------------------------------
// Request / response shapes
// ---------------------------------------------------------------------------

/// The fields of a Messages request the mock looks at; others are ignored.
#[derive(Deserialize)]
struct CreateRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    messages: Option<Vec<InMessage<'a>>>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<InContent<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Blocks(#[serde(borrow)] Vec<InBlock<'a>>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct InBlock<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [TextBlock<'a>],
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: OutMessage<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorDetail<'a>,
    request_id: String,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Model<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    data: Vec<Model<'a>>,
    has_more: bool,
    first_id: &'a str,
    last_id: &'a str,
}

fn model(entry: &(&'static str, &'static str, &'static str)) -> Model<'static> {
    Model {
        kind: "model",
        id: entry.0,
        display_name: entry.1,
        created_at: entry.2,
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn next_id(ctx: &Ctx) -> u64 {
    ctx.counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// A numeric control header, ignored when absent or not an integer.
fn num_header(req: &RecordedRequest, name: &str) -> Option<u64> {
    req.header(name).and_then(|v| v.trim().parse().ok())
}

fn truthy(v: Option<&str>) -> bool {
    matches!(
        v.map(str::trim),
        Some(s) if s == "1" || s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("yes")
    )
}

/// The deterministic input-token estimate: a quarter of the body length.
fn estimate_tokens(body_len: usize) -> u64 {
    ((body_len / 4) as u64).max(1)
}

/// Anthropic error type and default message for an HTTP status.
fn error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Invalid request (mock)."),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found."),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit (mock).",
        ),
        500 => ("api_error", "Internal server error."),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error."),
        _ => ("invalid_request_error", "Invalid request (mock)."),
    }
}

/// Appends a complete JSON response (head + body) to `out`.
fn json_response(
    out: &mut Vec<u8>,
    status: u16,
    id: u64,
    extra: &[(&str, &str)],
    body: &[u8],
    meta: Meta,
) {
    write_head(
        out,
        status,
        id,
        JSON,
        extra,
        BodyLen::Fixed(body.len()),
        meta,
    );
    out.extend_from_slice(body);
}

/// Appends a complete Anthropic error response to `out`.
fn error_response(out: &mut Vec<u8>, status: u16, id: u64, message: Option<&str>, meta: Meta) {
    let (kind, default_message) = error_kind(status);
    let body = ErrorBody {
        kind: "error",
        error: ErrorDetail {
            kind,
            message: message.unwrap_or(default_message),
        },
        request_id: format!("req_mock_{id}"),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let extra: &[(&str, &str)] = if status == 429 {
        &[("retry-after", "7")]
    } else {
        &[]
    };
    json_response(out, status, id, extra, &body, meta);
}

/// Renders the response for a malformed HTTP request (the connection is
/// closed afterwards).
pub(crate) fn bad_request(ctx: &Ctx, status: u16, message: &str, out: &mut Vec<u8>) {
    let meta = Meta {
        keep_alive: false,
        http10: false,
    };
    error_response(out, status, next_id(ctx), Some(message), meta);
}

async fn write_out(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        out.clear();
    }
    Ok(())
}

/// Never answers: drains the connection until the client goes away.
async fn hang(stream: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    loop {
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// Handles one request; returns whether the connection may be reused.
pub(crate) async fn handle(
    ctx: &Ctx,
    stream: &mut TcpStream,
    req: RecordedRequest,
    meta: Meta,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    out.clear();
    let route = req.path.split('?').next().unwrap_or("");

    if let Some(control) = route.strip_prefix("/__mock/") {
        let id = next_id(ctx);
        match (req.method.as_str(), control) {
            ("GET", "requests") => {
                let body = ctx.recorder.to_json();
                json_response(out, 200, id, &[], &body, meta);
            }
            ("GET", "aborts") => {
                let a = ctx.aborts.lock().map(|a| a.clone()).unwrap_or_default();
                let body = serde_json::to_vec(&a).unwrap_or_default();
                json_response(out, 200, id, &[], &body, meta);
            }
            ("POST", "clear") => {
                ctx.recorder.clear();
                json_response(out, 200, id, &[], br#"{"cleared":true}"#, meta);
            }
            _ => error_response(out, 404, id, None, meta),
        }
        write_out(stream, out).await?;
        return Ok(meta.keep_alive);
    }

    let req = Arc::new(req);
    if !truthy(req.header("x-mock-no-record")) {
        ctx.recorder.push(req.clone());
    }
    let id = next_id(ctx);

    if truthy(req.header("x-mock-hang")) {
        hang(stream).await;
        return Ok(false);
    }

    let latency = num_header(&req, "x-mock-latency-ms")
        .map(Duration::from_millis)
        .unwrap_or(ctx.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    if let Some(key) = req.header("x-mock-require-key") {
        let key = key.trim();
        let by_api_key = req.header("x-api-key").map(str::trim) == Some(key);
        let by_bearer = req.header("authorization").map(str::trim).and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        }) == Some(key);
        if !(by_api_key || by_bearer) {
            error_response(out, 401, id, None, meta);
            write_out(stream, out).await?;
            return Ok(meta.keep_alive);
        }
    }

    // `x-mock-fault-rate: 0.2`: each request independently fails with that probability,
    // before any response byte: 529, 503, 500, or a closed connection.
    if let Some(rate) = req
        .header("x-mock-fault-rate")
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if rand::random::<f64>() < rate {
            match rand::random::<u8>() % 4 {
                0 => return Ok(false), // drop the connection without answering
                1 => error_response(out, 529, id, None, meta),
                2 => error_response(out, 503, id, None, meta),
                _ => error_response(out, 500, id, None, meta),
            }
            write_out(stream, out).await?;
            return Ok(meta.keep_alive);
        }
    }

    // `x-mock-fail-key: KEY=STATUS[:RETRY_AFTER]`: only requests made with that key fail.
    if let Some(spec) = req.header("x-mock-fail-key") {
        if let Some((key, rest)) = spec.split_once('=') {
            let (status, retry) = match rest.split_once(':') {
                Some((s, r)) => (s, Some(r.trim())),
                None => (rest, None),
            };
            let presented = req.header("x-api-key").map(str::trim).or_else(|| {
                req.header("authorization")
                    .and_then(|v| v.get(7..))
                    .map(str::trim)
            });
            if let (Ok(status), Some(true)) = (
                status.trim().parse::<u16>(),
                presented.map(|p| p == key.trim()),
            ) {
                if (400..=599).contains(&status) {
                    match retry {
                        Some(r) => {
                            let body = format!(
                                r#"{{"type":"error","error":{{"type":"{}","message":"mock failure for this key"}},"request_id":"req_mock_{id}"}}"#,
                                if status == 429 {
                                    "rate_limit_error"
                                } else if status == 401 {
                                    "authentication_error"
                                } else {
                                    "api_error"
                                }
                            );
                            json_response(
                                out,
                                status,
                                id,
                                &[("retry-after", r)],
                                body.as_bytes(),
                                meta,
                            );
                        }
                        None => error_response(out, status, id, None, meta),
                    }
                    write_out(stream, out).await?;
                    return Ok(meta.keep_alive);
                }
            }
        }
    }

    if let Some(status) = num_header(&req, "x-mock-status") {
        if (400..=599).contains(&status) {
            error_response(out, status as u16, id, None, meta);
            write_out(stream, out).await?;
            return Ok(meta.keep_alive);
        }
    }

    let route = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), route) {
        ("POST", "/v1/messages") => return messages(ctx, stream, &req, id, meta, out).await,
        ("POST", "/v1/messages/count_tokens") => count_tokens(&req, id, meta, out),
        ("GET", "/v1/models") => {
            let list = ModelList {
                data: MODELS.iter().map(model).collect(),
                has_more: false,
                first_id: MODELS[0].0,
                last_id: MODELS[MODELS.len() - 1].0,
            };
            let body = serde_json::to_vec(&list).unwrap_or_default();
            json_response(out, 200, id, &[], &body, meta);
        }
        ("GET", r) if r.starts_with("/v1/models/") => {
            let wanted = &r["/v1/models/".len()..];
            match MODELS.iter().find(|m| m.0 == wanted) {
                Some(m) => {
                    let body = serde_json::to_vec(&model(m)).unwrap_or_default();
                    json_response(out, 200, id, &[], &body, meta);
                }
                None => {
                    let msg = format!("model: {wanted}");
                    error_response(out, 404, id, Some(&msg), meta);
                }
            }
        }
        (method, _) => {
            let msg = format!("{method} {route}: not found");
            error_response(out, 404, id, Some(&msg), meta);
        }
    }
    write_out(stream, out).await?;
    Ok(meta.keep_alive)
}

/// Parses and validates a Messages-style body; `Err` is a 400 message.
fn parse_create(body: &[u8]) -> Result<CreateRequest<'_>, String> {
    let parsed: CreateRequest<'_> =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    if parsed.model.as_deref().is_none_or(str::is_empty) {
        return Err("model: Field required".into());
    }
    match &parsed.messages {
        None => return Err("messages: Field required".into()),
        Some(m) if m.is_empty() => return Err("messages: at least one message is required".into()),
        Some(_) => {}
    }
    if parsed.max_tokens == Some(0) {
        return Err("max_tokens: must be greater than or equal to 1".into());
    }
    Ok(parsed)
}

fn count_tokens(req: &RecordedRequest, id: u64, meta: Meta, out: &mut Vec<u8>) {
    match parse_create(&req.body) {
        Ok(_) => {
            let body = format!(r#"{{"input_tokens":{}}}"#, estimate_tokens(req.body.len()));
            json_response(out, 200, id, &[], body.as_bytes(), meta);
        }
        Err(msg) => error_response(out, 400, id, Some(&msg), meta),
    }
}

// ---------------------------------------------------------------------------
// Reply text
// ---------------------------------------------------------------------------

/// Text of the last `user` message (text blocks joined by a space).
fn last_user_text(messages: &[InMessage<'_>]) -> String {
    let Some(msg) = messages
        .iter()
        .rev()
        .find(|m| m.role.as_deref() == Some("user"))
    else {
        return String::new();
    };
    match &msg.content {
        Some(InContent::Text(s)) => s.to_string(),
        Some(InContent::Blocks(blocks)) => {
            let mut text = String::new();
            for b in blocks.iter().filter(|b| b.kind.as_deref() == Some("text")) {
                if let Some(t) = &b.text {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(t);
                }
            }
            text
        }
        _ => String::new(),
    }
}

/// The deterministic reply for a user text.
pub(crate) fn reply_text(user_text: &str) -> String {
    let snippet: String = user_text.chars().take(40).collect();
    let mut text = format!("Hello from mock! 你好，世界！ You said: {snippet}");
    text.truncate(text.trim_end().len());
    text
}

/// Pads `text` with filler words until it is at least `n` bytes long.
fn pad_to_bytes(text: &mut String, n: usize) {
    const FILLER: [&str; 8] = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
    ];
    text.reserve(n.saturating_sub(text.len()) + 16);
    let mut i = 0;
    while text.len() < n {
        text.push(' ');
        text.push_str(FILLER[i % FILLER.len()]);
        i += 1;
    }
}

/// Byte offsets where each whitespace-separated word starts.
fn word_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if !ws && prev_ws {
            starts.push(i);
        }
        prev_ws = ws;
    }
    starts
}

/// The final reply: text, its word starts, output tokens and stop reason.
struct Reply {
    text: String,
    starts: Vec<usize>,
    stop_reason: &'static str,
}

impl Reply {
    fn build(
        user_text: &str,
        body_bytes: Option<u64>,
        min_words: usize,
        max_tokens: Option<u64>,
    ) -> Reply {
        let mut text = reply_text(user_text);
        // `max_tokens` cuts the natural reply; the header-driven padding below
        // is explicit test intent and is not capped.
        let mut stop_reason = "end_turn";
        if let Some(max) = max_tokens {
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            let starts = word_starts(&text);
            if starts.len() > max {
                text.truncate(starts[max]);
                text.truncate(text.trim_end().len());
                stop_reason = "max_tokens";
            }
        }
        if let Some(n) = body_bytes {
            pad_to_bytes(&mut text, (n as usize).min(MAX_BODY));
        }
        let mut starts = word_starts(&text);
        if starts.len() < min_words {
            let missing = min_words - starts.len();
            text.reserve(missing * 5);
            for _ in 0..missing {
                text.push_str(" mock");
            }
            starts = word_starts(&text);
        }
        Reply {
            text,
            starts,
            stop_reason,
        }
    }

    fn output_tokens(&self) -> u64 {
        self.starts.len() as u64
    }

    /// Splits the text into `n` contiguous non-empty pieces at word starts
    /// (fewer if the text has fewer words).
    fn deltas(&self, n: usize) -> Vec<&str> {
        let words = self.starts.len();
        let n = n.min(words);
        (0..n)
            .map(|k| {
                let start = if k == 0 {
                    0
                } else {
                    self.starts[k * words / n]
                };
                let end = if k + 1 == n {
                    self.text.len()
                } else {
                    self.starts[(k + 1) * words / n]
                };
                &self.text[start..end]
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// POST /v1/messages
// ---------------------------------------------------------------------------

async fn messages(
    ctx: &Ctx,
    stream: &mut TcpStream,
    req: &RecordedRequest,
    id: u64,
    meta: Meta,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let parsed = match parse_create(&req.body) {
        Ok(p) => p,
        Err(msg) => {
            error_response(out, 400, id, Some(&msg), meta);
            write_out(stream, out).await?;
            return Ok(meta.keep_alive);
        }
    };
    let model = parsed.model.as_deref().unwrap_or_default();
    let user_text = last_user_text(parsed.messages.as_deref().unwrap_or_default());
    let input_tokens = estimate_tokens(req.body.len());
    let body_bytes = num_header(req, "x-mock-body-bytes");
    let msg_id = format!("msg_mock_{id}");

    if parsed.stream != Some(true) {
        let reply = Reply::build(&user_text, body_bytes, 0, parsed.max_tokens);
        let message = OutMessage {
            id: &msg_id,
            kind: "message",
            role: "assistant",
            model,
            content: &[TextBlock {
                kind: "text",
                text: &reply.text,
            }],
            stop_reason: Some(reply.stop_reason),
            stop_sequence: None,
            usage: Usage {
                input_tokens,
                output_tokens: reply.output_tokens(),
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
            },
        };
        let body = serde_json::to_vec(&message).unwrap_or_default();
        json_response(out, 200, id, &[], &body, meta);
        write_out(stream, out).await?;
        return Ok(meta.keep_alive);
    }

    let deltas = num_header(req, "x-mock-deltas")
        .map(|n| (n as usize).min(MAX_DELTAS))
        .unwrap_or(DEFAULT_DELTAS);
    let mut reply = Reply::build(&user_text, body_bytes, deltas, parsed.max_tokens);
    if deltas == 0 {
        reply.text.clear();
        reply.starts.clear();
    }

    // Render every event into one buffer, remembering where each one ends.
    let mut sse: Vec<u8> = Vec::with_capacity(1024 + reply.text.len() + deltas * 96);
    let mut ends: Vec<usize> = Vec::with_capacity(deltas + 8);
    let start = MessageStart {
        kind: "message_start",
        message: OutMessage {
            id: &msg_id,
            kind: "message",
            role: "assistant",
            model,
            content: &[],
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                input_tokens,
                output_tokens: 1,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
            },
        },
    };
    sse.extend_from_slice(b"event: message_start\ndata: ");
    let _ = serde_json::to_writer(&mut sse, &start);
    sse.extend_from_slice(b"\n\n");
    ends.push(sse.len());
    sse.extend_from_slice(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
    ends.push(sse.len());
    sse.extend_from_slice(
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    ends.push(sse.len());
    for piece in reply.deltas(deltas) {
        sse.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":",
        );
        let _ = serde_json::to_writer(&mut sse, piece);
        sse.extend_from_slice(b"}}\n\n");
        ends.push(sse.len());
    }
    sse.extend_from_slice(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    ends.push(sse.len());
    {
        use std::io::Write;
        let _ = write!(
            sse,
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
            reply.stop_reason,
            reply.output_tokens()
        );
    }
    ends.push(sse.len());
    sse.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    ends.push(sse.len());

    if let Some(n) = num_header(req, "x-mock-error-after") {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n < ends.len() {
            let cut = if n == 0 { 0 } else { ends[n - 1] };
            sse.truncate(cut);
            ends.truncate(n);
            sse.extend_from_slice(
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            );
            ends.push(sse.len());
        }
    }

    let controls = StreamControls {
        chunk_bytes: num_header(req, "x-mock-chunk-bytes")
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        event_delay: num_header(req, "x-mock-event-delay-ms")
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO),
        disconnect_after: num_header(req, "x-mock-disconnect-after")
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        timestamps: truthy(req.header("x-mock-timestamps")),
    };
    let res = write_stream(stream, id, meta, out, &sse, &ends, &controls).await;
    if res.is_err() {
        record_abort(ctx, req);
    }
    res
}

/// Per-request shaping of an SSE response.
struct StreamControls {
    chunk_bytes: Option<usize>,
    event_delay: Duration,
    disconnect_after: Option<usize>,
    /// Precede each event with a `: ts=<µs since the Unix epoch>` comment line,
    /// stamped when the event is framed for writing.
    timestamps: bool,
}

/// Frames `data` as a chunk (HTTP/1.1) or raw bytes (HTTP/1.0).
fn frame(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        push_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}

/// Frames one whole SSE event, preceded by a `: ts=…` comment line (the
/// current wall-clock time in microseconds since the Unix epoch) when `stamp`.
fn frame_event(out: &mut Vec<u8>, event: &[u8], chunked: bool, stamp: bool) {
    if !stamp || event.is_empty() {
        frame(out, event, chunked);
        return;
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let line = format!(": ts={micros}\n");
    if chunked {
        use std::io::Write;
        let _ = write!(out, "{:x}\r\n", line.len() + event.len());
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(event);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(event);
    }
}

fn record_abort(ctx: &Ctx, req: &RecordedRequest) {
    let id = req.header("x-request-id").unwrap_or("").to_string();
    let at = ctx.started.elapsed().as_millis() as u64;
    if let Ok(mut a) = ctx.aborts.lock() {
        a.push((id, at));
    }
}

/// Writes the SSE response: head, events (ending at offsets `ends` in `sse`),
/// terminating chunk. Without chunk-size or delay controls the whole response
/// goes out in a single write.
async fn write_stream(
    stream: &mut TcpStream,
    id: u64,
    meta: Meta,
    out: &mut Vec<u8>,
    sse: &[u8],
    ends: &[usize],
    controls: &StreamControls,
) -> io::Result<bool> {
    let chunked = !meta.http10;
    let conn = Meta {
        keep_alive: meta.keep_alive && chunked,
        http10: meta.http10,
    };
    let len = if chunked {
        BodyLen::Chunked
    } else {
        BodyLen::UntilClose
    };
    write_head(
        out,
        200,
        id,
        SSE,
        &[("cache-control", "no-cache")],
        len,
        conn,
    );
    if controls.chunk_bytes.is_some() || controls.disconnect_after == Some(0) {
        write_out(stream, out).await?;
    }
    if controls.disconnect_after == Some(0) {
        return Ok(false);
    }

    // `sent` = bytes of `sse` already framed into `out` (or written).
    let mut sent = 0usize;
    for (i, &end) in ends.iter().enumerate() {
        if i > 0 && !controls.event_delay.is_zero() {
            frame(out, &sse[sent..ends[i - 1]], chunked);
            sent = ends[i - 1];
            write_out(stream, out).await?;
            tokio::time::sleep(controls.event_delay).await;
        }
        match controls.chunk_bytes {
            Some(size) => {
                while end - sent >= size {
                    frame(out, &sse[sent..sent + size], chunked);
                    sent += size;
                    write_out(stream, out).await?;
                }
            }
            None => {
                frame_event(out, &sse[sent..end], chunked, controls.timestamps);
                sent = end;
            }
        }
        if controls.disconnect_after == Some(i + 1) {
            frame(out, &sse[sent..end], chunked);
            write_out(stream, out).await?;
            // Dropping the stream closes the connection mid-body.
            return Ok(false);
        }
    }
    frame(out, &sse[sent..], chunked);
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    write_out(stream, out).await?;
    Ok(conn.keep_alive)
}
