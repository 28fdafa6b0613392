//! HTTP/1.1 response wire format, upstream side: parsing the response head and decoding
//! the body framing (RFC 9112 §6). Pure byte logic, no I/O and no Pingora types, so it
//! can be unit-tested and fuzzed (`fuzz/fuzz_targets/h1_response.rs`).
//!
//! The caller reads from the connection into one `BytesMut`; [`parse_head`] takes a
//! complete head off its front, then [`BodyDecoder::decode`] takes body bytes off it —
//! without copying when the body is not chunked, and one slice per chunk when it is.

use bytes::{Buf, Bytes, BytesMut};

/// Largest response head accepted (status line + headers).
pub const MAX_HEAD: usize = 64 << 10;
/// Most header fields in one response head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, and the most trailer bytes, accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILERS: usize = 16 << 10;

/// Why an upstream response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid or conflicting content-length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("upstream closed the connection before the body was complete")]
    Truncated,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head. `headers` are (name, value) pairs in wire order, names as the
/// upstream wrote them; values as bytes.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(Bytes, Bytes)>,
    pub framing: Framing,
    /// The connection may carry another request once this body has been read.
    pub reusable: bool,
}

impl Head {
    /// The first value of a header, by lower-case name.
    pub fn get(&self, lower_name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(lower_name.as_bytes()))
            .map(|(_, v)| &v[..])
    }
}

/// Take one complete response head off the front of `buf`. `Ok(None)`: more bytes are
/// needed. Informational (1xx) heads other than 101 are consumed and skipped.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, WireError> {
    loop {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut raw);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= MAX_HEAD {
                    Err(WireError::HeadTooLarge)
                } else {
                    Ok(None)
                }
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Head("too many headers"))
            }
            Err(_) => return Err(WireError::Head("not an HTTP/1.x response head")),
        };
        if n > MAX_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let status = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(WireError::Head("unexpected protocol switch"));
            }
            buf.advance(n);
            continue;
        }
        // Record header positions, then copy the head out and slice it.
        let base = buf.as_ptr() as usize;
        let mut spans: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(resp.headers.len());
        let mut chunked = false;
        let mut other_coding = false;
        let mut length: Option<u64> = None;
        let mut close = version == 0;
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            let value = h.value;
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding decides: chunked framing, or read until close.
                let last = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .map(<[u8]>::trim_ascii)
                    .unwrap_or_default();
                if last.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                    other_coding = false;
                } else {
                    other_coding = true;
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                for part in value.split(|&b| b == b',') {
                    let v = parse_length(part.trim_ascii()).ok_or(WireError::ContentLength)?;
                    if length.is_some_and(|l| l != v) {
                        return Err(WireError::ContentLength);
                    }
                    length = Some(v);
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',') {
                    let t = token.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if version == 0 && t.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
            let ns = name.as_ptr() as usize - base;
            let vs = value.as_ptr() as usize - base;
            spans.push((ns, name.len(), vs, value.len()));
        }
        let framing = if status == 204 || status == 304 {
            Framing::Empty
        } else if other_coding {
            Framing::UntilClose
        } else if chunked {
            Framing::Chunked
        } else if let Some(l) = length {
            Framing::Length(l)
        } else {
            Framing::UntilClose
        };
        // A body delimited by the close, or framed by both transfer-encoding and
        // content-length (a smuggling shape), never shares the connection again.
        let reusable = !close
            && framing != Framing::UntilClose
            && !(length.is_some() && (chunked || other_coding));
        // A copy, so that header values (kept as long as the response) do not pin the
        // read buffer, which then serves the whole body.
        let head = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        let headers = spans
            .into_iter()
            .map(|(ns, nl, vs, vl)| (head.slice(ns..ns + nl), head.slice(vs..vs + vl)))
            .collect();
        return Ok(Some(Head {
            status,
            headers,
            framing,
            reusable,
        }));
    }
}

fn parse_length(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Body bytes left (content-length framing).
    Length(u64),
    /// Everything until EOF.
    UntilClose,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk, this many bytes left.
    ChunkData(u64),
    /// After chunk data, expecting CRLF.
    ChunkEnd,
    /// After the last chunk, trailer lines until an empty one; bytes seen so far.
    Trailers(usize),
    Done,
}

/// Incremental decoder of one response body.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Take the next piece of body off the front of `buf`. `Ok(None)` with
    /// `!is_done()`: more input is needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (buf.len() as u64).min(left) as usize;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((n, _))) if n > MAX_CHUNK_LINE => {
                        return Err(WireError::Chunked("chunk-size line too long"))
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        buf.advance(n);
                        self.state = if size == 0 {
                            State::Trailers(0)
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(WireError::Chunked("chunk-size line too long"))
                        } else {
                            Ok(None)
                        };
                    }
                    Err(_) => return Err(WireError::Chunked("bad chunk size")),
                },
                State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (buf.len() as u64).min(left) as usize;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return if buf.first().is_some_and(|&b| b != b'\r') {
                            Err(WireError::Chunked("missing CRLF after chunk data"))
                        } else {
                            Ok(None)
                        };
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("missing CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                        return if seen + buf.len() > MAX_TRAILERS {
                            Err(WireError::Chunked("trailers too large"))
                        } else {
                            Ok(None)
                        };
                    };
                    let line_len = eol + 1;
                    let empty = eol == 0 || (eol == 1 && buf[0] == b'\r');
                    buf.advance(line_len);
                    if empty {
                        self.state = State::Done;
                    } else if seen + line_len > MAX_TRAILERS {
                        return Err(WireError::Chunked("trailers too large"));
                    } else {
                        self.state = State::Trailers(seen + line_len);
                    }
                }
            }
        }
    }

    /// The connection ended. Fine for a body delimited by the close; a truncation
    /// otherwise.
    pub fn eof(&mut self) -> Result<(), WireError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(WireError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(wire: &str) -> (Head, BytesMut) {
        let mut b = BytesMut::from(wire.as_bytes());
        let h = parse_head(&mut b).expect("valid").expect("complete");
        (h, b)
    }

    /// Feed `wire` in pieces of `step` bytes; collect the body.
    fn body_in_steps(framing: Framing, wire: &[u8], step: usize) -> Result<Vec<u8>, WireError> {
        let mut d = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(b) = d.decode(&mut buf)? {
                out.extend_from_slice(&b);
            }
        }
        if !d.is_done() {
            d.eof()?;
        }
        Ok(out)
    }

    #[test]
    fn head_with_content_length() {
        let (h, rest) = head(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(2));
        assert!(h.reusable);
        assert_eq!(h.get("content-type"), Some(&b"application/json"[..]));
        assert_eq!(h.headers[0].0, "Content-Type", "names keep their case");
        assert_eq!(&rest[..], b"{}");
    }

    #[test]
    fn partial_head_asks_for_more() {
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
        assert_eq!(parse_head(&mut b).map(|h| h.is_none()), Ok(true));
        assert_eq!(b.len(), 27, "nothing consumed");
    }

    #[test]
    fn informational_heads_are_skipped() {
        let (h, rest) = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(h.status, 204);
        assert_eq!(h.framing, Framing::Empty);
        assert!(rest.is_empty());
        let mut b = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..]);
        assert!(parse_head(&mut b).is_err());
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .0
                .framing,
            Framing::Chunked
        );
        let (h, _) = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n",
        );
        assert_eq!(
            h.framing,
            Framing::Chunked,
            "transfer-encoding beats content-length"
        );
        assert!(!h.reusable, "but the connection is not reused");
        let (h, _) = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.reusable);
        let (h, _) = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        let (h, _) = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\n");
        assert!(!h.reusable);
        let (h, _) = head("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n");
        assert!(!h.reusable);
        let (h, _) = head("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.reusable);
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n")
                .0
                .framing,
            Framing::Empty
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n")
                .0
                .framing,
            Framing::Length(7)
        );
    }

    #[test]
    fn bad_heads_are_errors() {
        for wire in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let mut b = BytesMut::from(wire.as_bytes());
            assert!(parse_head(&mut b).is_err(), "{wire:?}");
        }
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: "[..]);
        big.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert_eq!(parse_head(&mut big).err(), Some(WireError::HeadTooLarge));
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("h{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(parse_head(&mut BytesMut::from(many.as_bytes())).is_err());
    }

    #[test]
    fn chunked_body_in_every_split() {
        let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nC\r\nworld, again\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in 1..wire.len() {
            assert_eq!(
                body_in_steps(Framing::Chunked, wire, step).as_deref(),
                Ok(&b"hello world, again"[..]),
                "step {step}"
            );
        }
    }

    #[test]
    fn chunked_body_leaves_the_next_response_alone() {
        let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(
            d.decode(&mut buf).ok().flatten().as_deref(),
            Some(&b"ok"[..])
        );
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(d.is_done());
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let mut buf = BytesMut::from(&b"abcdefEXTRA"[..]);
        let mut d = BodyDecoder::new(Framing::Length(6));
        assert_eq!(
            d.decode(&mut buf).ok().flatten().as_deref(),
            Some(&b"abcdef"[..])
        );
        assert!(d.is_done());
        assert_eq!(&buf[..], b"EXTRA");
        for step in 1..6 {
            assert_eq!(
                body_in_steps(Framing::Length(6), b"abcdef", step).as_deref(),
                Ok(&b"abcdef"[..])
            );
        }
    }

    #[test]
    fn truncation_is_detected() {
        assert_eq!(
            body_in_steps(Framing::Length(10), b"short", 2),
            Err(WireError::Truncated)
        );
        assert_eq!(
            body_in_steps(Framing::Chunked, b"5\r\nhel", 2),
            Err(WireError::Truncated)
        );
        assert_eq!(
            body_in_steps(Framing::Chunked, b"5\r\nhello\r\n", 3),
            Err(WireError::Truncated)
        );
        assert_eq!(
            body_in_steps(Framing::UntilClose, b"anything", 3).as_deref(),
            Ok(&b"anything"[..])
        );
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"ffffffffffffffffffff\r\n",
        ] {
            assert!(
                body_in_steps(Framing::Chunked, wire, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long_line = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(body_in_steps(Framing::Chunked, &long_line, 4096).is_err());
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(
            std::iter::repeat_n(b"x: y\r\n".iter().copied(), MAX_TRAILERS / 6 + 10).flatten(),
        );
        assert!(body_in_steps(Framing::Chunked, &trailers, 4096).is_err());
    }
}
