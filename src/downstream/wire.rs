//! HTTP/1.1 request wire format, client side: parsing a request head and deciding how
//! its body is framed (RFC 9112 §6.3). Pure byte logic, no I/O and no Pingora types, so
//! it can be unit-tested and fuzzed (`fuzz/fuzz_targets/h1_request.rs`).
//!
//! The body itself is decoded by the same [`BodyDecoder`] as upstream responses: request
//! and response bodies share the content-length and chunked framings.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};

pub use crate::relay::h1wire::{BodyDecoder, Framing};

/// Largest request head accepted (request line + headers): nginx's default
/// `large_client_header_buffers 4 8k` allows 32 KiB; Pingora allows more. 64 KiB.
pub const MAX_HEAD: usize = 64 << 10;
/// Most header fields in one request head.
pub const MAX_HEADERS: usize = 128;

/// Why a request head cannot be accepted. Each is answered with an Anthropic-shaped
/// error and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error(
        "request head larger than {MAX_HEAD} bytes or with more than {MAX_HEADERS} header fields"
    )]
    HeadTooLarge,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and header fields (names lower-cased by `http`).
    pub parts: http::request::Parts,
    /// How the body is delimited: [`Framing::Empty`], a length, or chunked.
    pub body: Framing,
    /// The client allows the connection to carry another request (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for an interim answer before its body.
    pub expect_continue: bool,
}

/// Take one complete request head off the front of `buf`. `Ok(None)`: more bytes are
/// needed. Empty lines before a request line are skipped (RFC 9112 §2.2).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, RequestError> {
    let skip = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if skip > 0 {
        buf.advance(skip);
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => {
            return Err(RequestError::Malformed("unsupported HTTP version"))
        }
        Err(_) => return Err(RequestError::Malformed("not an HTTP/1.x request head")),
    };
    if n > MAX_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| RequestError::Malformed("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Values are sliced out of one copy of the head (a few hundred bytes), so the
    // request does not pin the connection's read buffer for its whole life.
    let base = buf.as_ptr() as usize;
    let path = req.path.unwrap_or("");
    let path_at = path.as_ptr() as usize - base;
    let path_len = path.len();
    let mut spans: Vec<(&str, usize, usize)> = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        spans.push((h.name, h.value.as_ptr() as usize - base, h.value.len()));
    }
    let head = Bytes::copy_from_slice(&buf[..n]);

    let uri = Uri::from_maybe_shared(head.slice(path_at..path_at + path_len))
        .map_err(|_| RequestError::Malformed("invalid request target"))?;
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut chunked = false;
    let mut other_coding = false;
    let mut length: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for (name, at, len) in spans {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RequestError::Malformed("invalid header name"))?;
        let raw = &head[at..at + len];
        match name.as_str() {
            "transfer-encoding" => {
                for coding in raw.split(|b| *b == b',') {
                    let c = coding.trim_ascii();
                    if c.eq_ignore_ascii_case(b"chunked") {
                        // Chunked must be the last coding, and only once.
                        if chunked {
                            other_coding = true;
                        }
                        chunked = true;
                    } else if !c.is_empty() {
                        other_coding = true;
                    }
                }
            }
            "content-length" => {
                for v in raw.split(|b| *b == b',') {
                    let n = parse_length(v.trim_ascii())?;
                    if length.is_some_and(|l| l != n) {
                        return Err(RequestError::Malformed("conflicting content-length"));
                    }
                    length = Some(n);
                }
            }
            "connection" => {
                for t in raw.split(|b| *b == b',') {
                    let t = t.trim_ascii();
                    conn_close |= t.eq_ignore_ascii_case(b"close");
                    conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            "expect" => {
                expect_continue |= raw.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
        let value = HeaderValue::from_maybe_shared(head.slice(at..at + len))
            .map_err(|_| RequestError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let body = if chunked || other_coding {
        if other_coding || !chunked {
            return Err(RequestError::Malformed("unsupported transfer-encoding"));
        }
        // A request with both is a smuggling vector (RFC 9112 §6.1): refused.
        if length.is_some() {
            return Err(RequestError::Malformed(
                "both transfer-encoding and content-length",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(RequestError::Malformed(
                "chunked body in an HTTP/1.0 request",
            ));
        }
        Framing::Chunked
    } else {
        match length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = match version {
        Version::HTTP_10 => conn_keep_alive && !conn_close,
        _ => !conn_close,
    };
    buf.advance(n);

    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11,
    }))
}

/// A content-length value: 1–18 ASCII digits (anything longer would overflow nothing
/// sluice accepts, and is refused rather than parsed).
fn parse_length(v: &[u8]) -> Result<u64, RequestError> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::Malformed("invalid content-length"));
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<RequestHead>, RequestError> {
        let mut b = BytesMut::from(s.as_bytes());
        parse_request(&mut b)
    }

    #[test]
    fn a_post_with_a_length() {
        let mut b = BytesMut::from(
            &b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nContent-Length: 5\r\n\r\nhello"[..],
        );
        let h = parse_request(&mut b).unwrap().unwrap();
        assert_eq!(h.parts.method, Method::POST);
        assert_eq!(h.parts.uri.path(), "/v1/messages");
        assert_eq!(h.parts.uri.query(), Some("beta=true"));
        assert_eq!(h.parts.headers["x-api-key"], "k");
        assert_eq!(h.body, Framing::Length(5));
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(&b[..], b"hello", "the body stays in the buffer");
    }

    #[test]
    fn partial_heads_wait_and_every_split_point_gives_the_same_head() {
        let full = b"POST /v1/messages HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n";
        for cut in 0..full.len() {
            let mut b = BytesMut::from(&full[..cut]);
            assert!(parse_request(&mut b).unwrap().is_none(), "cut {cut}");
            b.extend_from_slice(&full[cut..]);
            let h = parse_request(&mut b).unwrap().unwrap();
            assert_eq!(h.body, Framing::Chunked);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn framing_and_connection_rules() {
        let h = parse("GET / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, Framing::Empty);
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nExpect: 100-Continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Framing::Length(3));
        assert!(h.expect_continue);
        // Leading empty lines are skipped.
        let h = parse("\r\n\r\nGET /x HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.parts.uri.path(), "/x");
    }

    #[test]
    fn refusals() {
        for (bad, why) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                "conflict",
            ),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "negative"),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
                "19 digits",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "other coding",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                "chunked not last",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "TE+CL",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "chunked 1.0",
            ),
            ("GET / HTTP/2.0\r\n\r\n", "version"),
            ("G\0T / HTTP/1.1\r\n\r\n", "method"),
            ("GET / HTTP/1.1\r\nbad name: x\r\n\r\n", "name"),
        ] {
            assert!(
                matches!(parse(bad), Err(RequestError::Malformed(_))),
                "{why}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn head_limits() {
        let mut big = String::from("GET / HTTP/1.1\r\nx: ");
        big.push_str(&"a".repeat(MAX_HEAD));
        assert_eq!(parse(&big).unwrap_err(), RequestError::HeadTooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse(&many).unwrap_err(), RequestError::HeadTooLarge);
    }

    #[test]
    fn two_pipelined_requests_come_off_one_at_a_time() {
        let mut b = BytesMut::from(&b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"[..]);
        assert_eq!(
            parse_request(&mut b).unwrap().unwrap().parts.uri.path(),
            "/a"
        );
        assert_eq!(
            parse_request(&mut b).unwrap().unwrap().parts.uri.path(),
            "/b"
        );
        assert!(b.is_empty());
    }
}
