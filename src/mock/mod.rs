//! A fast, dependency-light mock of the Anthropic HTTP API.
//!
//! Used as the upstream in integration tests, load benchmarks and the offline
//! demo. It is a tiny HTTP/1.1 server written directly on tokio + `httparse`
//! (no hyper): keep-alive, `Content-Length` and chunked request bodies,
//! `Expect: 100-continue`, `TCP_NODELAY`, and small responses written with a
//! single `write` (head and body in one buffer).
//!
//! # Endpoints
//!
//! | Method | Path                          | Reply                                        |
//! |--------|-------------------------------|----------------------------------------------|
//! | POST   | `/v1/messages`                | a message, or an SSE stream with `"stream": true` |
//! | POST   | `/v1/messages/count_tokens`   | `{"input_tokens": N}`                        |
//! | GET    | `/v1/models`                  | the list of three models                     |
//! | GET    | `/v1/models/{id}`             | one model, or 404 `not_found_error`          |
//! | GET    | `/__mock/requests`            | JSON array of [`RecordedRequest`] (not recorded) |
//! | POST   | `/__mock/clear`               | clears the recorder (not recorded)           |
//! | *      | anything else                 | 404 `not_found_error`                        |
//!
//! The reply text is deterministic: `Hello from mock! 你好，世界！ You said: <first
//! 40 chars of the last user text>`. `input_tokens` is `max(1, body_len / 4)`,
//! `output_tokens` the number of whitespace-separated words of the reply. If the
//! request's `max_tokens` is smaller than that, the reply is cut to `max_tokens`
//! words and `stop_reason` is `"max_tokens"` (otherwise `"end_turn"`); the
//! padding requested by `x-mock-body-bytes` / `x-mock-deltas` is applied after
//! that cut and is not capped by `max_tokens`.
//! `model` and a non-empty `messages` array are required (400
//! `invalid_request_error` otherwise); `max_tokens` is optional but must be ≥ 1
//! when present.
//!
//! Every response carries `request-id: req_mock_<counter>`,
//! `anthropic-organization-id: org-mock-secret-0001`,
//! `anthropic-ratelimit-requests-limit: 4000`,
//! `anthropic-ratelimit-requests-remaining: 3999`,
//! `anthropic-ratelimit-tokens-limit: 400000` and `x-mock-upstream: 1`.
//!
//! # Request-header controls
//!
//! Controls are read from the request headers (a gateway forwards unknown
//! headers), so a test steers each request individually. They do not apply to
//! `/__mock/*`.
//!
//! | Header                         | Effect |
//! |--------------------------------|--------|
//! | `x-mock-require-key: K`        | `x-api-key` or `Authorization: Bearer` must equal `K`, else 401 `authentication_error` |
//! | `x-mock-status: S` (400..=599) | reply with status `S` and the matching Anthropic error body (429 adds `retry-after: 7`) |
//! | `x-mock-latency-ms: N`         | wait `N` ms before the response head (overrides the configured default latency) |
//! | `x-mock-hang: 1`               | read the request, never answer; the connection stays open until the client closes it |
//! | `x-mock-body-bytes: N`         | pad the reply text to at least `N` bytes (streams too) |
//! | `x-mock-deltas: N`             | number of `content_block_delta` events (default 5; the text is padded with ` mock` words if it has fewer words) |
//! | `x-mock-chunk-bytes: N`        | stream the SSE bytes in `N`-byte pieces, each its own chunk and its own write (splits lines, events and UTF-8 sequences) |
//! | `x-mock-event-delay-ms: N`     | sleep `N` ms between SSE events (each event is written as soon as it is produced) |
//! | `x-mock-disconnect-after: N`   | close the TCP connection (FIN, no terminating chunk) after `N` SSE events |
//! | `x-mock-error-after: N`        | after `N` SSE events send an `overloaded_error` `error` event and end the stream properly |
//! | `x-mock-timestamps: 1`         | precede every SSE event with a comment line `: ts=<µs since the Unix epoch>`, taken when the event is written (load tests measure relay latency with it; SSE clients ignore comments; not applied with `x-mock-chunk-bytes`) |
//! | `x-mock-no-record: 1`          | do not keep this request in the recorder (large-body load tests) |
//!
//! SSE events are counted from 1: `message_start`, `ping`,
//! `content_block_start`, the deltas, `content_block_stop`, `message_delta`,
//! `message_stop`.
//!
//! Malformed HTTP (bad request line or headers, bad chunked framing, bad or
//! conflicting `Content-Length`, unsupported `Transfer-Encoding`) gets a 400 and
//! the connection is closed; a body over 64 MiB gets a 413 and the connection is
//! closed. The server never panics on client input.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sluice::mock::{MockConfig, MockServer};
//! let server = MockServer::start(MockConfig::default()).await?;
//! let base = server.url(); // "http://127.0.0.1:PORT"
//! // ... point the gateway at `base`, send requests ...
//! let seen = server.requests();
//! # let _ = (base, seen);
//! # Ok(()) }
//! ```

mod api;
mod http;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How many requests the recorder keeps (the oldest are dropped first).
pub const RECORDER_CAPACITY: usize = 1000;

/// Environment variable read by [`MockConfig::from_env`] for the default
/// latency in milliseconds.
pub const LATENCY_ENV: &str = "MOCK_UPSTREAM_LATENCY_MS";

/// Configuration of a [`MockServer`].
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Address to bind; port 0 picks an ephemeral port (see [`MockServer::addr`]).
    pub addr: SocketAddr,
    /// Delay added before every response head (default 0). A request's
    /// `x-mock-latency-ms` header overrides it.
    pub latency: Duration,
}

impl Default for MockConfig {
    /// `127.0.0.1:0`, no latency.
    fn default() -> Self {
        MockConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
        }
    }
}

impl MockConfig {
    /// Like [`MockConfig::default`], but the latency comes from the
    /// `MOCK_UPSTREAM_LATENCY_MS` environment variable when it is set to an
    /// integer.
    pub fn from_env() -> Self {
        let latency = std::env::var(LATENCY_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO);
        MockConfig {
            latency,
            ..MockConfig::default()
        }
    }
}

/// One request as received by the mock.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target including the query string, e.g. `/v1/models?limit=2`.
    pub path: String,
    /// Header names lowercased, in the order received; values lossily decoded
    /// as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked bodies are de-chunked). Serialized as a
    /// lossy UTF-8 string field `"body"`.
    #[serde(serialize_with = "serialize_lossy")]
    pub body: Vec<u8>,
}

fn serialize_lossy<S: serde::Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Bounded log of received requests, shared by all connections.
#[derive(Default)]
pub(crate) struct Recorder {
    inner: Mutex<VecDeque<Arc<RecordedRequest>>>,
}

impl Recorder {
    pub(crate) fn push(&self, req: Arc<RecordedRequest>) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= RECORDER_CAPACITY {
            q.pop_front();
        }
        q.push_back(req);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().map(|r| (**r).clone()).collect()
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let refs: Vec<&RecordedRequest> = q.iter().map(|r| &**r).collect();
        serde_json::to_vec(&refs).unwrap_or_else(|_| b"[]".to_vec())
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// State shared by the accept loop and every connection of one server.
pub(crate) struct Ctx {
    pub(crate) recorder: Recorder,
    /// Source of `req_mock_<n>` / `msg_mock_<n>` ids.
    pub(crate) counter: AtomicU64,
    pub(crate) latency: Duration,
    /// Streams whose client went away mid-body: (x-request-id, ms since start).
    pub(crate) aborts: std::sync::Mutex<Vec<(String, u64)>>,
    pub(crate) started: std::time::Instant,
}

/// A running mock server.
///
/// Dropping the handle stops it: the listener is closed and every open
/// connection (including hanging ones) is dropped.
pub struct MockServer {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Binds `cfg.addr` and starts serving on the current tokio runtime;
    /// returns once the socket is listening.
    ///
    /// Must be called from within a tokio runtime. The server's tasks live on
    /// that runtime, so it stops serving when the runtime shuts down (e.g. at
    /// the end of a `#[tokio::test]`), or when the handle is dropped.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(cfg.addr).await?;
        let addr = listener.local_addr()?;
        let ctx = Arc::new(Ctx {
            recorder: Recorder::default(),
            counter: AtomicU64::new(0),
            latency: cfg.latency,
            aborts: std::sync::Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
        });
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, ctx.clone(), rx));
        log::debug!("mock upstream listening on {addr}");
        Ok(MockServer {
            addr,
            ctx,
            shutdown,
        })
    }

    /// The bound address (with the real port when `cfg.addr` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, convenient as an upstream base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far, oldest first (at most the last
    /// [`RECORDER_CAPACITY`]). `/__mock/*` requests are not recorded. A request
    /// is recorded as soon as it has been read, before its response is sent.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ctx.recorder.snapshot()
    }

    /// Forgets all recorded requests.
    /// Streams the client abandoned mid-body: (its `x-request-id`, when the mock
    /// noticed). Lets tests check that a client disconnect reaches the upstream.
    pub fn aborts(&self) -> Vec<(String, std::time::Instant)> {
        let a = self.ctx.aborts.lock().unwrap_or_else(|e| e.into_inner());
        a.iter()
            .map(|(id, ms)| (id.clone(), self.ctx.started + Duration::from_millis(*ms)))
            .collect()
    }

    pub fn clear(&self) {
        self.ctx.recorder.clear();
    }

    /// A receiver that observes `true` (or a closed channel) on shutdown.
    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Resolves once the server is asked to shut down (or its handle is gone).
async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, rx: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = wait_shutdown(rx.clone()) => return,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let rx = rx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = http::serve_connection(ctx, stream) => {}
                        _ = wait_shutdown(rx) => {}
                    }
                });
            }
            Err(e) => {
                // Typically EMFILE under heavy load: back off briefly.
                log::warn!("mock upstream accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Starts a mock server on its own multi-thread tokio runtime (2 workers) on a
/// background thread, for tests that are not async. Returns once listening.
///
/// The server runs until the returned handle is dropped; then its runtime
/// shuts down and the background thread exits. Keep the handle alive for as
/// long as the server is needed (binding it to `_` drops it immediately; a
/// `static` `OnceLock<MockServer>` keeps it for the whole process).
pub fn spawn_background(cfg: MockConfig) -> std::io::Result<MockServer> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<MockServer>>(1);
    std::thread::Builder::new()
        .name("mock-upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("mock-upstream-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match MockServer::start(cfg).await {
                    Ok(server) => {
                        let signal = server.shutdown_signal();
                        if tx.send(Ok(server)).is_ok() {
                            wait_shutdown(signal).await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv().unwrap_or_else(|_| {
        Err(std::io::Error::other(
            "mock upstream background thread exited before listening",
        ))
    })
}
