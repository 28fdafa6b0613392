//! sluice's HTTP/1.x server session: one request on a client connection, read and
//! answered directly on Pingora's `Stream` (TCP or TLS, with its write buffer).
//!
//! - The head is parsed by [`wire::parse_request`]; the body is decoded from the same
//!   read buffer (content-length or chunked), after a `100 Continue` when the client
//!   asked for one.
//! - The response head is serialized from the `ResponseHeader` the gateway built, with
//!   `date` and `connection` added; the body is framed by its `content-length`, chunked
//!   when it has none (close-delimited for HTTP/1.0 clients), and every body write is
//!   flushed at once — a stream is never held back.
//! - Bytes read past the request (a pipelined next request) stay in the buffer, which
//!   [`Conn`] carries to the next request when the connection can be reused.

use super::wire::{self, BodyDecoder, RequestError, RequestHead};
use super::Downstream;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout as timeout;
use pingora::{Error, ErrorType};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a request that has begun (part of its head, or its body) may stall between
/// reads — nginx's `client_header_timeout` / `client_body_timeout` default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Room made in the read buffer before each read.
const READ_SIZE: usize = 2048;
/// Room made in the read buffer before each read of a request body (Pingora's and
/// nginx's body buffer size): large bodies arrive in few reads.
const BODY_READ_SIZE: usize = 64 << 10;
/// Bytes kept from a client that sends more while its response streams (a pipelined
/// request); past this, sluice stops reading until the response is done.
const MAX_PIPELINED: usize = wire::MAX_HEAD;
/// Largest scratch buffer kept for the next request or chunk.
const SCRATCH_KEEP: usize = 4 << 10;
/// Bodies up to this size are copied behind their chunk-size line (one write); larger
/// ones are written in three.
const COALESCE_MAX: usize = 16 << 10;

/// A client connection between requests: the stream and what was read past the last
/// request.
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
    /// Where response heads and chunk framing are assembled, reused across requests.
    out: Vec<u8>,
}

/// What waiting for the next request gave.
pub enum Next {
    Request(Box<RequestHead>),
    /// The client closed, went idle past the keepalive timeout, stalled mid-head, or the
    /// server is shutting down: close quietly.
    Closed,
    /// A head that cannot be accepted: answer it, then close.
    Refused(RequestError),
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
        }
    }

    /// Wait for the next request head: up to `idle` for its first byte (closing at once
    /// if the server starts shutting down meanwhile), then [`READ_TIMEOUT`] per read.
    pub async fn next_request(&mut self, idle: Duration, shutdown: &ShutdownWatch) -> Next {
        loop {
            match wire::parse_request(&mut self.buf) {
                Ok(Some(head)) => return Next::Request(Box::new(head)),
                Ok(None) => {}
                Err(e) => return Next::Refused(e),
            }
            let read = if self.buf.is_empty() {
                if *shutdown.borrow() {
                    return Next::Closed;
                }
                // An idle connection keeps at most a small read buffer (a large one
                // was grown for a request body).
                if self.buf.capacity() > 2 * READ_SIZE {
                    self.buf = BytesMut::new();
                }
                if self.out.capacity() > SCRATCH_KEEP {
                    self.out = Vec::new();
                }
                let mut sd = shutdown.clone();
                let stop = async move {
                    if sd.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    r = timeout(idle, read_some(&mut self.stream, &mut self.buf)) => r,
                    _ = stop => return Next::Closed,
                }
            } else {
                timeout(READ_TIMEOUT, read_some(&mut self.stream, &mut self.buf)).await
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Next::Closed,
            }
        }
    }
}

/// An error on the client's side of the exchange.
fn client_error(
    etype: ErrorType,
    context: &'static str,
    cause: Option<std::io::Error>,
) -> Box<Error> {
    let mut e = match cause {
        Some(c) => Error::because(etype, context, c),
        None => Error::explain(etype, context),
    };
    e.as_down();
    e
}

async fn read_some(stream: &mut Stream, buf: &mut BytesMut) -> std::io::Result<usize> {
    read_up_to(stream, buf, READ_SIZE).await
}

async fn read_up_to(
    stream: &mut Stream,
    buf: &mut BytesMut,
    room: usize,
) -> std::io::Result<usize> {
    buf.reserve(room);
    stream.read_buf(buf).await
}

/// How the response body is being framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// This many bytes are still due.
    Length(u64),
    Chunked,
    /// Until the connection closes (no length, HTTP/1.0 client).
    Close,
}

/// One request on an HTTP/1.x client connection.
pub struct H1Session {
    conn: Conn,
    req: RequestHeader,
    body: BodyDecoder,
    body_done: bool,
    continue_pending: bool,
    client_keepalive: bool,
    keepalive: Option<u64>,
    http10: bool,
    head_request: bool,
    out: Option<Out>,
    out_done: bool,
    failed: bool,
    client_ip: Option<IpAddr>,
    local_port: Option<u16>,
    shutting_down: bool,
    last: bool,
}

impl H1Session {
    pub fn new(
        conn: Conn,
        head: RequestHead,
        client_ip: Option<IpAddr>,
        local_port: Option<u16>,
        shutting_down: bool,
    ) -> Self {
        let http10 = head.parts.version == http::Version::HTTP_10;
        let head_request = head.parts.method == http::Method::HEAD;
        let body = BodyDecoder::new(head.body);
        H1Session {
            conn,
            req: RequestHeader::from(head.parts),
            body_done: body.is_done(),
            body,
            continue_pending: head.expect_continue,
            client_keepalive: head.keep_alive,
            keepalive: None,
            http10,
            head_request,
            out: None,
            out_done: false,
            failed: false,
            client_ip,
            local_port,
            shutting_down,
            last: false,
        }
    }

    /// The connection, when it can carry another request: the response was completed
    /// with a known end, the request body was read, and neither side asked to close.
    pub fn into_reusable(self) -> Option<(Conn, Duration)> {
        let framed = matches!(self.out, Some(Out::Length(0) | Out::Chunked));
        (self.out_done
            && framed
            && self.body_done
            && self.client_keepalive
            && self.keepalive.is_some()
            && !self.failed
            && !self.shutting_down
            && !self.last)
            .then(|| {
                let idle = Duration::from_secs(self.keepalive.unwrap_or(60).max(1));
                (self.conn, idle)
            })
    }

    /// This request is the last the connection may carry (`keepalive.max_requests`).
    pub fn last_request(&mut self) {
        self.last = true;
    }

    fn will_keep_alive(&self) -> bool {
        self.client_keepalive
            && self.keepalive.is_some()
            && !self.shutting_down
            && !self.last
            && !self.failed
    }

    /// Take whatever of the request body is already buffered, so that an early answer
    /// (an auth refusal) can still keep the connection.
    fn drain_buffered_body(&mut self) {
        while !self.body_done {
            match self.body.decode(&mut self.conn.buf) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.body_done = self.body.is_done();
                    return;
                }
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
    }

    /// Record a failed write (the connection cannot be reused) as a client error.
    fn write_failed(&mut self, e: std::io::Error) -> Box<Error> {
        self.failed = true;
        client_error(ErrorType::WriteError, "writing the response", Some(e))
    }

    async fn write_and_flush(&mut self, wire: &[u8]) -> pingora::Result<()> {
        let r = async {
            self.conn.stream.write_all(wire).await?;
            self.conn.stream.flush().await
        }
        .await;
        r.map_err(|e| self.write_failed(e))
    }

    async fn finish_body(&mut self) -> pingora::Result<()> {
        if self.out_done {
            return Ok(());
        }
        self.out_done = true;
        let tail: &[u8] = match self.out {
            Some(Out::Chunked) => b"0\r\n\r\n",
            Some(Out::Length(n)) if n > 0 => {
                // Fewer bytes than announced: the client must not take this as complete.
                self.failed = true;
                b""
            }
            _ => b"",
        };
        self.write_and_flush(tail).await
    }
}

impl Downstream for H1Session {
    fn req_header(&self) -> &RequestHeader {
        &self.req
    }

    async fn read_request_body(&mut self) -> pingora::Result<Option<Bytes>> {
        if self.body_done {
            return Ok(None);
        }
        if std::mem::take(&mut self.continue_pending) && self.out.is_none() {
            self.write_and_flush(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        loop {
            match self.body.decode(&mut self.conn.buf) {
                Ok(Some(b)) if b.is_empty() => continue,
                Ok(Some(b)) => return Ok(Some(b)),
                Ok(None) if self.body.is_done() => {
                    self.body_done = true;
                    return Ok(None);
                }
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    let mut err = Error::explain(ErrorType::InvalidHTTPHeader, e.to_string());
                    err.as_down();
                    return Err(err);
                }
            }
            let read = timeout(
                READ_TIMEOUT,
                read_up_to(&mut self.conn.stream, &mut self.conn.buf, BODY_READ_SIZE),
            )
            .await;
            let (etype, context, cause) = match read {
                Ok(Ok(n)) if n > 0 => continue,
                Ok(Ok(_)) => (
                    ErrorType::ConnectionClosed,
                    "client closed the connection before the body was complete",
                    None,
                ),
                Ok(Err(e)) => (ErrorType::ReadError, "reading the request body", Some(e)),
                Err(_) => (ErrorType::ReadTimedout, "reading the request body", None),
            };
            self.failed = true;
            return Err(client_error(etype, context, cause));
        }
    }

    async fn write_response_header(
        &mut self,
        mut resp: Box<ResponseHeader>,
        end: bool,
    ) -> pingora::Result<()> {
        if self.out.is_some() {
            // Never a second response head.
            return Ok(());
        }
        self.drain_buffered_body();
        if !self.body_done {
            // The rest of the request body was not read: the connection cannot be reused.
            self.keepalive = None;
        }
        let status = resp.status;
        let no_body = self.head_request
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let chunked = resp
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        let length = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        let out = if no_body {
            Out::Length(0)
        } else if let (false, Some(n)) = (chunked, length) {
            Out::Length(n)
        } else if chunked && !self.http10 {
            Out::Chunked
        } else {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            self.keepalive = None;
            Out::Close
        };
        let keep = self.will_keep_alive();
        if !keep {
            self.keepalive = None;
        }
        // `date` and `connection` are sluice's own (written below, not put in the map).
        resp.remove_header(&http::header::DATE);
        resp.remove_header(&http::header::CONNECTION);
        let wire = &mut self.conn.out;
        wire.clear();
        wire.reserve(512);
        wire.extend_from_slice(b"HTTP/1.1 ");
        wire.extend_from_slice(status.as_str().as_bytes());
        wire.push(b' ');
        let reason = resp
            .get_reason_phrase()
            .or(status.canonical_reason())
            .unwrap_or("");
        wire.extend_from_slice(reason.as_bytes());
        wire.extend_from_slice(b"\r\n");
        resp.header_to_h1_wire(wire);
        wire.extend_from_slice(b"date: ");
        wire.extend_from_slice(get_cached_date().as_bytes());
        wire.extend_from_slice(if keep {
            b"\r\nconnection: keep-alive\r\n\r\n"
        } else {
            b"\r\nconnection: close\r\n\r\n"
        });
        self.out = Some(out);
        // The head waits in the stream's write buffer for the first body piece (one
        // send for a small answer), unless there is no body to come.
        if let Err(e) = self.conn.stream.write_all(&self.conn.out).await {
            return Err(self.write_failed(e));
        }
        if end || out == Out::Length(0) {
            return self.finish_body().await;
        }
        Ok(())
    }

    async fn write_response_body(&mut self, body: Option<Bytes>, end: bool) -> pingora::Result<()> {
        let Some(out) = self.out else {
            return Error::e_explain(ErrorType::InternalError, "body before the response head");
        };
        if self.out_done {
            return Ok(());
        }
        if let Some(data) = body.filter(|d| !d.is_empty()) {
            match out {
                Out::Length(left) => {
                    let take = (data.len() as u64).min(left) as usize;
                    self.out = Some(Out::Length(left - take as u64));
                    self.write_and_flush(&data[..take]).await?;
                }
                Out::Close => self.write_and_flush(&data).await?,
                Out::Chunked => {
                    let conn = &mut self.conn;
                    conn.out.clear();
                    push_hex(&mut conn.out, data.len());
                    conn.out.extend_from_slice(b"\r\n");
                    let r = async {
                        if data.len() <= COALESCE_MAX {
                            conn.out.extend_from_slice(&data);
                            conn.out.extend_from_slice(b"\r\n");
                            conn.stream.write_all(&conn.out).await?;
                        } else {
                            conn.stream.write_all(&conn.out).await?;
                            conn.stream.write_all(&data).await?;
                            conn.stream.write_all(b"\r\n").await?;
                        }
                        conn.stream.flush().await
                    }
                    .await;
                    if let Err(e) = r {
                        return Err(self.write_failed(e));
                    }
                }
            }
        }
        if end {
            self.finish_body().await?;
        }
        Ok(())
    }

    fn response_written(&self) -> bool {
        self.out.is_some()
    }

    fn set_keepalive(&mut self, seconds: Option<u64>) {
        self.keepalive = seconds;
    }

    async fn client_gone(&mut self) {
        loop {
            if self.conn.buf.len() >= MAX_PIPELINED {
                std::future::pending::<()>().await;
            }
            self.conn.buf.reserve(256);
            match self.conn.stream.read_buf(&mut self.conn.buf).await {
                Ok(0) | Err(_) => {
                    self.failed = true;
                    return;
                }
                Ok(_) => continue,
            }
        }
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    fn local_port(&self) -> Option<u16> {
        self.local_port
    }

    fn shutting_down(&self) -> bool {
        self.shutting_down
    }
}

/// Append `n` in lower-case hex (a chunk-size line).
fn push_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = DIGITS[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn chunk_sizes_in_hex() {
        for n in [0usize, 1, 15, 16, 255, 4096, 0xdead_beef, usize::MAX] {
            let mut v = Vec::new();
            push_hex(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), format!("{n:x}"));
        }
    }
}
