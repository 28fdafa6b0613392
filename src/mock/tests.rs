//! Tests of the mock upstream through a raw TCP client (no HTTP library).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{spawn_background, MockConfig, MockServer};

/// A parsed HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Number of chunks of a chunked body.
    chunks: usize,
    /// False when the connection ended before the body was complete.
    complete: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// SSE events as (event name, data JSON).
    fn events(&self) -> Vec<(String, Value)> {
        let text = self.text();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                (name, serde_json::from_str(&data).expect("JSON data"))
            })
            .collect()
    }
}

/// A minimal keep-alive HTTP/1.1 client.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Time the first body byte arrived for the last response.
    first_body_at: Option<Instant>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Client {
            stream,
            buf: Vec::new(),
            first_body_at: None,
        }
    }

    async fn send_raw(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.expect("write");
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: mock\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            raw.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        self.send_raw(raw.as_bytes()).await;
        self.read_response().await
    }

    /// Reads more bytes; false on EOF.
    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 8192];
        match self.stream.read(&mut tmp).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    async fn read_response(&mut self) -> Resp {
        self.first_body_at = None;
        let (status, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).expect("valid response") {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (r.code.unwrap(), headers, n);
            }
            assert!(self.fill().await, "EOF before response head");
        };
        self.buf.drain(..head_len);
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            chunks: 0,
            complete: true,
        };
        if (100..200).contains(&resp.status) {
            return resp;
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let Some(eol) = find(&self.buf, b"\r\n") else {
                    if !self.fill().await {
                        resp.complete = false;
                        return resp;
                    }
                    continue;
                };
                if self.first_body_at.is_none() {
                    self.first_body_at = Some(Instant::now());
                }
                let size_line = std::str::from_utf8(&self.buf[..eol]).unwrap();
                let size = usize::from_str_radix(size_line, 16).expect("chunk size");
                if self.buf.len() < eol + 2 + size + 2 {
                    if !self.fill().await {
                        resp.complete = false;
                        return resp;
                    }
                    continue;
                }
                assert_eq!(&self.buf[eol + 2 + size..eol + 4 + size], b"\r\n");
                resp.body
                    .extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
                self.buf.drain(..eol + 4 + size);
                if size == 0 {
                    return resp;
                }
                resp.chunks += 1;
            }
        }
        let len: usize = resp
            .header("content-length")
            .expect("content-length")
            .parse()
            .unwrap();
        while self.buf.len() < len {
            if !self.fill().await {
                resp.complete = false;
                resp.body = std::mem::take(&mut self.buf);
                return resp;
            }
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// True if the server closed the connection (EOF within 1 s).
    async fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.stream.read(&mut tmp)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn server() -> MockServer {
    MockServer::start(MockConfig::default())
        .await
        .expect("start")
}

const CREATE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Hi there, mock! 你好"}]}"#;
const CREATE_STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"Stream please"}]}]}"#;

fn check_common_headers(r: &Resp) {
    assert!(r.header("request-id").unwrap().starts_with("req_mock_"));
    assert_eq!(
        r.header("anthropic-organization-id"),
        Some("org-mock-secret-0001")
    );
    assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("4000"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("3999")
    );
    assert_eq!(r.header("anthropic-ratelimit-tokens-limit"), Some("400000"));
    assert_eq!(r.header("x-mock-upstream"), Some("1"));
}

#[tokio::test]
async fn non_streaming_create() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[("content-type", "application/json")],
            CREATE,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    check_common_headers(&r);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    let text = v["content"][0]["text"].as_str().unwrap();
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(
        text,
        "Hello from mock! 你好，世界！ You said: Hi there, mock! 你好"
    );
    let usage = &v["usage"];
    assert_eq!(usage["input_tokens"], (CREATE.len() / 4) as u64);
    assert_eq!(
        usage["output_tokens"],
        text.split_whitespace().count() as u64
    );
    assert_eq!(usage["cache_creation_input_tokens"], 0);
    assert_eq!(usage["cache_read_input_tokens"], 0);

    // max_tokens cuts the reply.
    let body = CREATE.replace("256", "3");
    let r = c.request("POST", "/v1/messages", &[], &body).await;
    let v = r.json();
    assert_eq!(v["content"][0]["text"], "Hello from mock!");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);

    // Padding to a byte size.
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[("x-mock-body-bytes", "100000")],
            CREATE,
        )
        .await;
    let v = r.json();
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(
        text.len() >= 100_000 && text.len() < 100_020,
        "{}",
        text.len()
    );
    assert_eq!(
        v["usage"]["output_tokens"],
        text.split_whitespace().count() as u64
    );
}

/// Checks the full event sequence of a stream and returns the streamed text.
fn check_stream(r: &Resp, deltas: usize) -> String {
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    check_common_headers(r);
    let events = r.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(start["content"], serde_json::json!([]));
    assert_eq!(events[2].1["content_block"]["text"], "");
    let text: String = events[3..3 + deltas]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let md = &events[3 + deltas + 1].1;
    assert_eq!(md["delta"]["stop_reason"], "end_turn");
    assert!(md["delta"]["stop_sequence"].is_null());
    assert_eq!(
        md["usage"]["output_tokens"],
        text.split_whitespace().count() as u64
    );
    text
}

#[tokio::test]
async fn streaming_sequence() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let r = c.request("POST", "/v1/messages", &[], CREATE_STREAM).await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let text = check_stream(&r, 5);
    assert_eq!(
        text,
        "Hello from mock! 你好，世界！ You said: Stream please"
    );

    // Same bytes when split in 7-byte chunks (cutting lines and UTF-8), and
    // the requested number of deltas.
    let r2 = c
        .request(
            "POST",
            "/v1/messages",
            &[("x-mock-chunk-bytes", "7")],
            CREATE_STREAM,
        )
        .await;
    assert_eq!(r2.chunks, r2.body.len().div_ceil(7));
    let text2 = check_stream(&r2, 5);
    assert_eq!(text2, text);

    let r3 = c
        .request(
            "POST",
            "/v1/messages",
            &[("x-mock-deltas", "20")],
            CREATE_STREAM,
        )
        .await;
    let text3 = check_stream(&r3, 20);
    assert!(text3.starts_with(&text) && text3.ends_with(" mock"));
}

#[tokio::test]
async fn event_delay_streams_progressively() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let t0 = Instant::now();
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[("x-mock-event-delay-ms", "40"), ("x-mock-deltas", "1")],
            CREATE_STREAM,
        )
        .await;
    let total = t0.elapsed();
    let first = c.first_body_at.unwrap() - t0;
    check_stream(&r, 1);
    // 7 events, 6 gaps of 40 ms.
    assert!(total >= Duration::from_millis(240), "{total:?}");
    assert!(
        first + Duration::from_millis(150) < total,
        "{first:?} {total:?}"
    );
}

#[tokio::test]
async fn timestamps_stamp_each_event_when_written() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let before = now_us();
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[
                ("x-mock-timestamps", "1"),
                ("x-mock-event-delay-ms", "20"),
                ("x-mock-deltas", "2"),
            ],
            CREATE_STREAM,
        )
        .await;
    let after = now_us();
    // Every event starts with its `: ts=` comment line; without those lines the
    // stream is exactly the normal one.
    let text = r.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 8);
    let mut stamps = Vec::new();
    for e in &events {
        let (first, _) = e.split_once('\n').unwrap();
        let ts: u64 = first.strip_prefix(": ts=").unwrap().parse().unwrap();
        stamps.push(ts);
    }
    assert!(stamps[0] >= before && *stamps.last().unwrap() <= after);
    for w in stamps.windows(2) {
        // Stamped when written: 20 ms apart, not all at rendering time.
        assert!(w[1] >= w[0] + 15_000, "{stamps:?}");
    }
    let stripped: String = text
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(": ts="))
        .collect();
    let plain = Resp {
        body: stripped.into_bytes(),
        ..r
    };
    check_stream(&plain, 2);

    // Without the header: no comment lines.
    let r = c.request("POST", "/v1/messages", &[], CREATE_STREAM).await;
    assert!(!r.text().contains(": ts="));
    check_stream(&r, 5);
}

#[tokio::test]
async fn no_record_header_skips_the_recorder() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let r = c
        .request("POST", "/v1/messages", &[("x-mock-no-record", "1")], CREATE)
        .await;
    assert_eq!(r.status, 200);
    assert!(s.requests().is_empty());
    c.request("POST", "/v1/messages", &[], CREATE).await;
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn keep_alive_two_requests() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let r1 = c.request("GET", "/v1/models", &[], "").await;
    assert_eq!(r1.status, 200);
    let v = r1.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][0]["id"], "claude-sonnet-4-5");
    assert_eq!(v["data"][0]["display_name"], "Claude Sonnet 4.5");
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["first_id"], "claude-sonnet-4-5");
    assert_eq!(v["has_more"], false);
    let r2 = c
        .request("GET", "/v1/models/claude-opus-4-1", &[], "")
        .await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.json()["id"], "claude-opus-4-1");
    assert_ne!(r1.header("request-id"), r2.header("request-id"));
    let r3 = c.request("GET", "/v1/models/claude-nope", &[], "").await;
    assert_eq!(r3.status, 404);
    assert_eq!(r3.json()["error"]["type"], "not_found_error");
    let r4 = c
        .request("POST", "/v1/messages/count_tokens", &[], CREATE)
        .await;
    assert_eq!(r4.json()["input_tokens"], (CREATE.len() / 4) as u64);
    let r5 = c.request("GET", "/nope", &[], "").await;
    assert_eq!(r5.status, 404);
    let v = r5.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["request_id"], r5.header("request-id").unwrap());
    // Invalid JSON: a 400, but the connection stays usable.
    let r6 = c.request("POST", "/v1/messages", &[], "{nope").await;
    assert_eq!(r6.status, 400);
    assert_eq!(r6.json()["error"]["type"], "invalid_request_error");
    let r7 = c.request("GET", "/v1/models", &[], "").await;
    assert_eq!(r7.status, 200);
}

#[tokio::test]
async fn recorder_contents() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    c.request(
        "POST",
        "/v1/messages?beta=true",
        &[
            ("X-Api-Key", "sk-test"),
            ("anthropic-version", "2023-06-01"),
        ],
        CREATE,
    )
    .await;
    // Chunked request body.
    c.send_raw(
        b"POST /v1/messages/count_tokens HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\n{\"mod\r\n4\r\nel\":\r\n0\r\n\r\n",
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 400); // `{"model":` is not valid JSON
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/messages?beta=true");
    assert_eq!(first.header("x-api-key"), Some("sk-test"));
    assert_eq!(first.header("X-API-KEY"), Some("sk-test"));
    assert_eq!(first.headers[0].0, "host");
    assert_eq!(first.headers[1].0, "x-api-key");
    assert_eq!(first.body, CREATE.as_bytes());
    assert_eq!(reqs[1].body, b"{\"model\":");

    // The HTTP view, which is itself not recorded.
    let r = c.request("GET", "/__mock/requests", &[], "").await;
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["body"], CREATE);
    assert_eq!(
        v[0]["headers"][1],
        serde_json::json!(["x-api-key", "sk-test"])
    );
    assert_eq!(s.requests().len(), 2);
    let r = c.request("POST", "/__mock/clear", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(s.requests().is_empty());
    c.request("GET", "/v1/models", &[], "").await;
    assert_eq!(s.requests().len(), 1);
    s.clear();
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn error_statuses_and_auth() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    for (status, kind) in [
        (529, "overloaded_error"),
        (429, "rate_limit_error"),
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (413, "request_too_large"),
        (500, "api_error"),
        (503, "api_error"),
    ] {
        let r = c
            .request(
                "POST",
                "/v1/messages",
                &[("x-mock-status", &status.to_string())],
                CREATE,
            )
            .await;
        assert_eq!(r.status, status);
        check_common_headers(&r);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"]["message"].is_string());
        assert_eq!(v["request_id"], r.header("request-id").unwrap());
        assert_eq!(r.header("retry-after").is_some(), status == 429);
        if status == 429 {
            assert_eq!(r.header("retry-after"), Some("7"));
        }
    }

    let need = [("x-mock-require-key", "sk-right")];
    let r = c.request("GET", "/v1/models", &need, "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = c
        .request(
            "GET",
            "/v1/models",
            &[need[0], ("x-api-key", "sk-wrong")],
            "",
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .request(
            "GET",
            "/v1/models",
            &[need[0], ("x-api-key", "sk-right")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .request(
            "GET",
            "/v1/models",
            &[need[0], ("authorization", "Bearer sk-right")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn disconnect_and_error_after() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[
                ("x-mock-disconnect-after", "3"),
                ("x-mock-chunk-bytes", "10"),
            ],
            CREATE_STREAM,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(!r.complete, "stream must end without the terminating chunk");
    let names: Vec<String> = r.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "ping", "content_block_start"]);
    assert!(c.closed().await);

    let mut c = Client::connect(s.addr()).await;
    let r = c
        .request(
            "POST",
            "/v1/messages",
            &[("x-mock-error-after", "4")],
            CREATE_STREAM,
        )
        .await;
    assert!(r.complete);
    let events = r.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(events[4].1["error"]["type"], "overloaded_error");
    // Properly terminated, so the connection is reusable.
    let r = c.request("GET", "/v1/models", &[], "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn malformed_requests_get_400_and_close() {
    let s = server().await;
    for raw in [
        &b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"[..],
        b"POST /v1/messages HTTP/1.1\r\ncontent-length: abc\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nxyz\r\n",
        b"POST /v1/messages HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
    ] {
        let mut c = Client::connect(s.addr()).await;
        c.send_raw(raw).await;
        let r = c.read_response().await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        assert!(c.closed().await);
    }
    let mut c = Client::connect(s.addr()).await;
    c.send_raw(b"POST /v1/messages HTTP/1.1\r\ncontent-length: 999999999999\r\n\r\n")
        .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn hang_and_latency() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    c.send_raw(b"GET /v1/models HTTP/1.1\r\nx-mock-hang: 1\r\n\r\n")
        .await;
    let mut tmp = [0u8; 16];
    let res = tokio::time::timeout(Duration::from_millis(150), c.stream.read(&mut tmp)).await;
    assert!(res.is_err(), "hung request must not be answered");
    assert_eq!(s.requests().len(), 1);

    let mut c = Client::connect(s.addr()).await;
    let t0 = Instant::now();
    let r = c
        .request("GET", "/v1/models", &[("x-mock-latency-ms", "60")], "")
        .await;
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(60));
}

#[test]
fn background_server_blocking_client() {
    use std::io::{Read, Write};
    let s = spawn_background(MockConfig::default()).expect("spawn");
    let mut conn = std::net::TcpStream::connect(s.addr()).unwrap();
    conn.write_all(b"GET /v1/models/claude-sonnet-4-5 HTTP/1.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("connection: close\r\n"));
    assert!(resp
        .ends_with(r#""display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}"#));
    assert_eq!(s.requests().len(), 1);
    let addr = s.addr();
    drop(s);
    // After drop the listener goes away (give the runtime a moment).
    std::thread::sleep(Duration::from_millis(50));
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// Rough throughput figure: `cargo test --release --lib mock::tests::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let s = server().await;
    let addr = s.addr();
    for (label, body) in [("non-stream", CREATE), ("stream", CREATE_STREAM)] {
        let conns = 32;
        let per_conn = 2000;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for _ in 0..per_conn {
                    let r = c.request("POST", "/v1/messages", &[], body).await;
                    assert_eq!(r.status, 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = conns * per_conn;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{label}: {n} requests in {secs:.2}s = {:.0} req/s",
            n as f64 / secs
        );
    }
}

#[tokio::test]
async fn expect_continue_and_pipelined_leftovers() {
    let s = server().await;
    let mut c = Client::connect(s.addr()).await;
    c.send_raw(
        b"POST /v1/messages/count_tokens HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 60\r\n\r\n",
    )
    .await;
    let interim = c.read_response().await;
    assert_eq!(interim.status, 100);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"abcde"}]}"#;
    assert_eq!(body.len(), 60);
    // Body plus a second request in the same write.
    let mut raw = body.as_bytes().to_vec();
    raw.extend_from_slice(b"GET /v1/models HTTP/1.1\r\n\r\n");
    c.send_raw(&raw).await;
    let r = c.read_response().await;
    assert_eq!(r.json()["input_tokens"], 15);
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["id"], "claude-sonnet-4-5");
}
