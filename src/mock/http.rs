//! Minimal HTTP/1.1 server side: request reading (head, `Content-Length` and
//! chunked bodies), response-head formatting and the per-connection loop.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{api, Ctx, RecordedRequest};

/// Largest accepted request head (request line + headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body (decoded).
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 128;
/// Read-buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// Static headers sent on every response.
pub(crate) const COMMON_HEADERS: &str = "anthropic-organization-id: org-mock-secret-0001\r\n\
anthropic-ratelimit-requests-limit: 4000\r\n\
anthropic-ratelimit-requests-remaining: 3999\r\n\
anthropic-ratelimit-tokens-limit: 400000\r\n\
x-mock-upstream: 1\r\n";

/// Connection-level facts about a parsed request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    /// Whether the connection may serve another request afterwards.
    pub keep_alive: bool,
    /// HTTP/1.0 request: no chunked responses.
    pub http10: bool,
}

/// What reading the next request produced.
pub(crate) enum ReadOutcome {
    Request(RecordedRequest, Meta),
    /// Clean or mid-request EOF: just close.
    Eof,
    /// Malformed request: answer `status` with `message`, then close.
    Bad(u16, &'static str),
}

/// Serves requests on one connection until it closes, errs, or a response
/// asks for the connection to be closed.
pub(crate) async fn serve_connection(ctx: Arc<Ctx>, mut stream: TcpStream) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        match read_request(&mut stream, &mut buf).await {
            Ok(ReadOutcome::Request(req, meta)) => {
                match api::handle(&ctx, &mut stream, req, meta, &mut out).await {
                    Ok(true) => {
                        // Don't let one huge response pin memory for the
                        // connection's lifetime.
                        if out.capacity() > 1024 * 1024 {
                            out = Vec::with_capacity(4096);
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        log::debug!("mock upstream: connection error: {e}");
                        return;
                    }
                }
            }
            Ok(ReadOutcome::Eof) => return,
            Ok(ReadOutcome::Bad(status, message)) => {
                out.clear();
                api::bad_request(&ctx, status, message, &mut out);
                let _ = stream.write_all(&out).await;
                lingering_close(&mut stream).await;
                return;
            }
            Err(e) => {
                log::debug!("mock upstream: read error: {e}");
                return;
            }
        }
    }
}

/// Half-closes the connection, then drains what the client still sends for a
/// short while, so unread request bytes don't turn the close into a reset that
/// could destroy the error response before the client reads it.
async fn lingering_close(stream: &mut TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = [0u8; 8192];
        let mut budget = MAX_BODY;
        while budget > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
}

/// Reads more bytes into `buf`; `Ok(0)` on EOF.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}

/// Framing of the request body.
enum Framing {
    Length(usize),
    Chunked,
}

/// Reads one complete request (head and body) from the connection.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> io::Result<ReadOutcome> {
    // --- head ---
    let (mut req, meta, framing, expect_continue) = loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = match extract_head(&parsed) {
                        Ok(h) => h,
                        Err((status, msg)) => return Ok(ReadOutcome::Bad(status, msg)),
                    };
                    buf.advance(n);
                    break head;
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD {
                        return Ok(ReadOutcome::Bad(400, "request header too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Ok(ReadOutcome::Bad(400, "too many request headers"));
                }
                Err(_) => return Ok(ReadOutcome::Bad(400, "malformed HTTP request")),
            }
        }
        if fill(stream, buf).await? == 0 {
            return Ok(ReadOutcome::Eof);
        }
    };

    // --- body ---
    match framing {
        Framing::Length(0) => {}
        Framing::Length(len) => {
            if len > MAX_BODY {
                return Ok(ReadOutcome::Bad(413, "request body too large"));
            }
            if expect_continue && buf.len() < len {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            if buf.len() < len {
                buf.reserve(len - buf.len());
            }
            while buf.len() < len {
                if fill(stream, buf).await? == 0 {
                    return Ok(ReadOutcome::Eof);
                }
            }
            req.body = buf.split_to(len).to_vec();
        }
        Framing::Chunked => {
            let mut sent_continue = false;
            loop {
                match scan_chunked(buf) {
                    Ok(Some(consumed)) => {
                        req.body = decode_chunked(&buf[..consumed]);
                        buf.advance(consumed);
                        break;
                    }
                    Ok(None) => {}
                    Err(status) => {
                        let msg = if status == 413 {
                            "request body too large"
                        } else {
                            "malformed chunked request body"
                        };
                        return Ok(ReadOutcome::Bad(status, msg));
                    }
                }
                if expect_continue && !sent_continue {
                    sent_continue = true;
                    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                }
                if fill(stream, buf).await? == 0 {
                    return Ok(ReadOutcome::Eof);
                }
            }
        }
    }
    Ok(ReadOutcome::Request(req, meta))
}

type Head = (RecordedRequest, Meta, Framing, bool);

/// Turns a parsed head into owned data and decides body framing and
/// connection persistence.
fn extract_head(parsed: &httparse::Request<'_, '_>) -> Result<Head, (u16, &'static str)> {
    let method = parsed.method.unwrap_or("GET").to_string();
    let path = parsed.path.unwrap_or("/").to_string();
    let http10 = parsed.version == Some(0);

    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut other_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;

    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match name.as_str() {
            "content-length" => {
                let v = value.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err((400, "invalid content-length"));
                }
                let n: usize = v.parse().unwrap_or(usize::MAX);
                if content_length.is_some_and(|prev| prev != n) {
                    return Err((400, "conflicting content-length headers"));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if coding.eq_ignore_ascii_case("chunked") {
                        chunked = true;
                    } else {
                        other_te = true;
                    }
                }
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            "expect" => {
                expect_continue = value.trim().eq_ignore_ascii_case("100-continue");
            }
            _ => {}
        }
        headers.push((name, value));
    }

    if other_te {
        return Err((400, "unsupported transfer-encoding"));
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => return Err((400, "both content-length and transfer-encoding")),
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Length(0),
    };
    let keep_alive = if http10 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    let req = RecordedRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    Ok((req, Meta { keep_alive, http10 }, framing, expect_continue))
}

/// Checks whether `buf` starts with a complete chunked body.
///
/// Returns `Ok(Some(n))` with the number of framing bytes it spans (trailers
/// included), `Ok(None)` if more bytes are needed, or `Err(status)` if the
/// framing is invalid (400) or the decoded body too large (413). Only chunk
/// headers are visited, so rescanning after every read is cheap.
pub(crate) fn scan_chunked(buf: &[u8]) -> Result<Option<usize>, u16> {
    let mut pos = 0usize;
    let mut total = 0usize;
    loop {
        match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((n, size))) => {
                pos += n;
                if size == 0 {
                    // Trailer section: zero or more header lines, then CRLF.
                    let rest = &buf[pos..];
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if rest.starts_with(b"\r\n") {
                        return Ok(Some(pos + 2));
                    }
                    return match memchr::memmem::find(rest, b"\r\n\r\n") {
                        Some(i) => Ok(Some(pos + i + 4)),
                        None if rest.len() > MAX_HEAD => Err(400),
                        None => Ok(None),
                    };
                }
                let size = usize::try_from(size).map_err(|_| 413u16)?;
                total = total.checked_add(size).ok_or(413u16)?;
                if total > MAX_BODY {
                    return Err(413);
                }
                let end = pos + size;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(400);
                }
                pos = end + 2;
            }
            Ok(httparse::Status::Partial) => {
                // A chunk-size line should be short; refuse endless garbage.
                if buf.len() - pos > 4096 {
                    return Err(400);
                }
                return Ok(None);
            }
            Err(_) => return Err(400),
        }
    }
}

/// Decodes a chunked body already validated by [`scan_chunked`].
pub(crate) fn decode_chunked(buf: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut pos = 0usize;
    while let Ok(httparse::Status::Complete((n, size))) = httparse::parse_chunk_size(&buf[pos..]) {
        pos += n;
        let size = size as usize;
        if size == 0 || pos + size > buf.len() {
            break;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
    body
}

/// Reason phrase for a status code.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Unknown",
    }
}

/// Body framing of a response.
pub(crate) enum BodyLen {
    /// `content-length: N`.
    Fixed(usize),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Delimited by connection close (HTTP/1.0 streams).
    UntilClose,
}

/// Appends a response head to `out`: status line, the common Anthropic-like
/// headers, `extra` headers, framing and connection headers (from `conn`),
/// blank line.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    request_id: u64,
    content_type: &str,
    extra: &[(&str, &str)],
    len: BodyLen,
    conn: Meta,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nrequest-id: req_mock_{request_id}\r\n",
        reason(status)
    );
    out.extend_from_slice(COMMON_HEADERS.as_bytes());
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match len {
        BodyLen::Fixed(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyLen::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyLen::UntilClose => {}
    }
    if !conn.keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if conn.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `data` as one chunk of chunked transfer encoding.
pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write;
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn chunked_scan_and_decode() {
        let raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let n = scan_chunked(raw).unwrap().unwrap();
        assert_eq!(&raw[n..], b"NEXT");
        assert_eq!(decode_chunked(&raw[..n]), b"hello world");
        // Trailers.
        let raw = b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan_chunked(raw).unwrap(), Some(raw.len()));
        // Incomplete at every prefix, never an error.
        let raw = b"5\r\nhello\r\n0\r\n\r\n";
        for i in 0..raw.len() {
            assert_eq!(scan_chunked(&raw[..i]), Ok(None), "prefix {i}");
        }
        // Bad framing.
        assert_eq!(scan_chunked(b"zz\r\n"), Err(400));
        assert_eq!(scan_chunked(b"2\r\nabcd\r\n"), Err(400));
        assert_eq!(scan_chunked(b"ffffffffffffffff\r\n"), Err(413));
    }
}
