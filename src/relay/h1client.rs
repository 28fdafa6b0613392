//! sluice's own HTTP/1.1 upstream exchange and idle-connection pool.
//!
//! Pingora's connector still makes the connections (TCP, TLS, timeouts); what this
//! replaces, for HTTP/1.1 upstreams, is Pingora's H1 client session and connection pool,
//! which cost per request a `getpeername` (`check_fd_match`), a spawned `idle_poll` task
//! per release, a mutexed LRU, and a header map built header by header (see
//! docs/performance.md). Here:
//!
//! - idle connections sit in a per-thread list per peer (`Peer::reuse_hash`), newest
//!   taken first; taking one checks it with one non-blocking read (an upstream that
//!   closed it, or sent stray bytes, makes it unusable) and drops those idle for longer
//!   than the upstream's `pool_idle`. Connections the upstream closes while idle stay
//!   half-closed until the thread next touches that peer's list (at most `max_idle` per
//!   peer and thread).
//! - the request (head, and body when small) leaves in one write; the response head and
//!   body are parsed by [`super::h1wire`] straight from one read buffer.
//! - a connection goes back to the pool only when its response was read to the end,
//!   allowed reuse, and nothing followed it.

use super::h1wire::{self, BodyDecoder, Head};
use bytes::{Bytes, BytesMut};
use pingora::protocols::Stream;
use pingora::{Error, ErrorType, OrErr, Result};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// First read buffer of a response; doubled (up to [`MAX_READ`]) while reads fill it.
const FIRST_READ: usize = 2 << 10;
const MAX_READ: usize = 64 << 10;

struct Idle {
    stream: Stream,
    expires: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<u64, VecDeque<Idle>>> = RefCell::new(HashMap::new());
}

/// A pooled connection to `peer` (its `reuse_hash`) that still looks usable.
pub fn take(peer: u64) -> Option<Stream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&peer)?;
        let now = Instant::now();
        while let Some(mut c) = list.pop_back() {
            if c.expires > now && still_open(&mut c.stream) {
                return Some(c.stream);
            }
        }
        None
    })
}

/// Keep `stream` for the next request to `peer`, for at most `idle_for`; the oldest
/// connection beyond `max_idle` is closed.
fn put(peer: u64, stream: Stream, idle_for: Duration, max_idle: usize) {
    if max_idle == 0 || idle_for.is_zero() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(peer).or_default();
        let now = Instant::now();
        while list.front().is_some_and(|c| c.expires <= now) || list.len() >= max_idle {
            list.pop_front();
        }
        list.push_back(Idle {
            stream,
            expires: now + idle_for,
        });
    });
}

/// Idle connections held by this thread (for tests).
#[cfg(test)]
pub fn idle_count(peer: u64) -> usize {
    IDLE.with(|idle| idle.borrow().get(&peer).map_or(0, VecDeque::len))
}

/// An idle connection is usable if reading from it would block: no EOF, no error, no
/// stray bytes. One non-blocking read attempt, never a wait.
fn still_open(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut rb = ReadBuf::new(&mut byte);
    matches!(Pin::new(stream).poll_read(&mut cx, &mut rb), Poll::Pending)
}

/// One request/response on an upstream HTTP/1.1 connection.
pub struct H1Conn {
    /// The idle list it came from and goes back to (`Peer::reuse_hash`).
    peer: u64,
    stream: Stream,
    buf: BytesMut,
    body: BodyDecoder,
    reusable: bool,
    read_size: usize,
}

impl H1Conn {
    /// Write the request (`wire`, then `body` unless it is already inside `wire`) and read
    /// the response head. An error means the connection is unusable.
    pub async fn exchange(
        peer: u64,
        mut stream: Stream,
        wire: &[u8],
        body: &[u8],
    ) -> Result<(H1Conn, Head)> {
        stream
            .write_all(wire)
            .await
            .or_err(ErrorType::WriteError, "while writing the upstream request")?;
        if !body.is_empty() {
            stream
                .write_all(body)
                .await
                .or_err(ErrorType::WriteError, "while writing the upstream body")?;
        }
        stream
            .flush()
            .await
            .or_err(ErrorType::WriteError, "flushing the upstream request")?;
        let mut conn = H1Conn {
            peer,
            stream,
            buf: BytesMut::new(),
            body: BodyDecoder::new(h1wire::Framing::Empty),
            reusable: false,
            read_size: FIRST_READ,
        };
        let head = loop {
            if let Some(head) = h1wire::parse_head(&mut conn.buf).map_err(wire_error)? {
                break head;
            }
            if conn.fill().await? == 0 {
                return Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "upstream closed the connection before a response head",
                );
            }
        };
        conn.body = BodyDecoder::new(head.framing);
        conn.reusable = head.reusable;
        Ok((conn, head))
    }

    /// Read more bytes into the buffer; 0 at EOF.
    async fn fill(&mut self) -> Result<usize> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .or_err(ErrorType::ReadError, "while reading the upstream response")?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// The next piece of the response body; `None` at its end.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(b) = self.body.decode(&mut self.buf).map_err(wire_error)? {
                return Ok(Some(b));
            }
            if self.body.is_done() {
                return Ok(None);
            }
            if self.fill().await? == 0 {
                self.body.eof().map_err(wire_error)?;
                return Ok(None);
            }
        }
    }

    /// The whole response body was read.
    pub fn response_done(&self) -> bool {
        self.body.is_done()
    }

    /// Back to this thread's pool when the exchange completed cleanly; closed otherwise.
    pub fn release(self, idle_for: Duration, max_idle: usize) {
        if self.reusable && self.body.is_done() && self.buf.is_empty() {
            put(self.peer, self.stream, idle_for, max_idle);
        }
    }
}

fn wire_error(e: h1wire::WireError) -> Box<Error> {
    let etype = match e {
        h1wire::WireError::Truncated => ErrorType::ConnectionClosed,
        _ => ErrorType::InvalidHTTPHeader,
    };
    Error::explain(etype, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let c = TcpStream::connect(addr).await.expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(c));
        (stream, s)
    }

    async fn read_request(server: &mut TcpStream) -> Vec<u8> {
        let mut got = vec![0u8; 4096];
        let n = server.read(&mut got).await.expect("read");
        got.truncate(n);
        got
    }

    #[tokio::test]
    async fn exchange_reads_a_chunked_answer_and_pools_the_connection() {
        let (client, mut server) = pair().await;
        let serve = tokio::spawn(async move {
            let req = read_request(&mut server).await;
            assert_eq!(req, b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}");
            server
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(20)).await;
            server
                .write_all(b"2\r\nde\r\n0\r\n\r\n")
                .await
                .expect("write");
            server
        });
        let (mut conn, head) = H1Conn::exchange(
            7,
            client,
            b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
            b"{}",
        )
        .await
        .expect("exchange");
        assert_eq!(head.status, 200);
        let mut body = Vec::new();
        while let Some(b) = conn.read_body().await.expect("body") {
            body.extend_from_slice(&b);
        }
        assert_eq!(body, b"abcde");
        assert!(conn.response_done());
        let _server = serve.await.expect("server");
        conn.release(Duration::from_secs(5), 4);
        assert_eq!(idle_count(7), 1);
        assert!(take(7).is_some(), "a live pooled connection is handed out");
        assert!(take(7).is_none());
    }

    #[tokio::test]
    async fn closed_or_expired_idle_connections_are_not_handed_out() {
        let (a, server_a) = pair().await;
        put(8, a, Duration::from_secs(5), 4);
        drop(server_a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (b, _server_b) = pair().await;
        put(8, b, Duration::from_millis(1), 4);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(take(8).is_none(), "one expired, one closed by the peer");
        assert_eq!(idle_count(8), 0);
    }

    #[tokio::test]
    async fn the_pool_keeps_at_most_max_idle() {
        let mut servers = Vec::new();
        for _ in 0..5 {
            let (c, s) = pair().await;
            servers.push(s);
            put(9, c, Duration::from_secs(5), 3);
        }
        assert_eq!(idle_count(9), 3);
    }

    #[tokio::test]
    async fn close_delimited_and_unfinished_answers_are_not_pooled() {
        let (client, mut server) = pair().await;
        let serve = tokio::spawn(async move {
            read_request(&mut server).await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
                .await
                .expect("write");
        });
        let (mut conn, head) = H1Conn::exchange(10, client, b"GET / HTTP/1.1\r\n\r\n", b"")
            .await
            .expect("exchange");
        assert!(!head.reusable);
        serve.await.expect("server");
        let mut body = Vec::new();
        while let Some(b) = conn.read_body().await.expect("body") {
            body.extend_from_slice(&b);
        }
        assert_eq!(body, b"until close");
        conn.release(Duration::from_secs(5), 4);
        assert_eq!(idle_count(10), 0);

        let (client, mut server) = pair().await;
        let serve = tokio::spawn(async move {
            read_request(&mut server).await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
                .await
                .expect("write");
        });
        let (mut conn, _) = H1Conn::exchange(10, client, b"GET / HTTP/1.1\r\n\r\n", b"")
            .await
            .expect("exchange");
        serve.await.expect("server");
        assert_eq!(
            conn.read_body().await.ok().flatten().as_deref(),
            Some(&b"short"[..])
        );
        assert!(
            conn.read_body().await.is_err(),
            "a truncated body is an error"
        );
        conn.release(Duration::from_secs(5), 4);
        assert_eq!(idle_count(10), 0);
    }

    #[tokio::test]
    async fn a_peer_that_closes_before_answering_is_an_error() {
        let (client, mut server) = pair().await;
        let serve = tokio::spawn(async move {
            read_request(&mut server).await;
        });
        let r = H1Conn::exchange(10, client, b"GET / HTTP/1.1\r\n\r\n", b"").await;
        serve.await.expect("server");
        assert!(r.is_err());
    }
}
