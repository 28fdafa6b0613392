//! sluice's own HTTP/1.x client side (`src/downstream/`): framing, keepalive,
//! pipelining, `100-continue`, HTTP/1.0 clients and refused heads, over raw TCP against
//! the real binary in front of the mock upstream.

mod common;

use common::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(gw: &common::Gateway) -> (TcpStream, BufReader<TcpStream>) {
    let sock = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = BufReader::new(sock.try_clone().unwrap());
    (sock, r)
}

/// The server closed the connection (EOF, or reset) within a few seconds.
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut b = [0u8; 1];
    match r.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn count_tokens_body(n: u32) -> String {
    format!(
        r#"{{"model":"claude-sonnet-4-5","messages":[{{"role":"user","content":"hello {n}"}}]}}"#
    )
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Send one count_tokens request with `body` on the connection and read its answer.
fn count_tokens(w: &mut TcpStream, r: &mut BufReader<TcpStream>, body: &str) -> Resp {
    w.write_all(post("/v1/messages/count_tokens", body, "").as_bytes())
        .unwrap();
    read_resp(r)
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let (mut w, mut r) = connect(&gw);
    // Three requests in one write; the third asks to close.
    let mut wire = String::new();
    for i in 0..2 {
        wire.push_str(&post(
            "/v1/messages/count_tokens",
            &count_tokens_body(i),
            &format!("x-request-id: pipe-{i}\r\n"),
        ));
    }
    wire.push_str(&post(
        "/v1/messages/count_tokens",
        &count_tokens_body(2),
        "x-request-id: pipe-2\r\nconnection: close\r\n",
    ));
    w.write_all(wire.as_bytes()).unwrap();
    for i in 0..3 {
        let resp = read_resp(&mut r);
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(
            resp.header("x-request-id"),
            Some(format!("pipe-{i}").as_str())
        );
        assert!(resp.json()["input_tokens"].as_u64().is_some());
        let conn = resp.header("connection").unwrap_or("");
        assert_eq!(conn, if i < 2 { "keep-alive" } else { "close" });
        assert!(resp.header("date").is_some());
    }
    assert!(closed(&mut r), "closed after `connection: close`");
}

#[test]
fn chunked_request_bodies_and_100_continue() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let (mut w, mut r) = connect(&gw);
    let body = count_tokens_body(7);
    let (a, b) = body.split_at(10);
    write!(
        w,
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: x\r\nx-api-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    // The client waits for the interim answer before sending its body.
    let interim = read_resp(&mut r);
    assert_eq!(interim.status, 100);
    write!(
        w,
        "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    let resp = read_resp(&mut r);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(resp.json()["input_tokens"].as_u64().unwrap() > 0);
    // Same connection, next request with a plain length.
    assert_eq!(count_tokens(&mut w, &mut r, &body).status, 200);
}

#[test]
fn an_http10_client_gets_a_close_delimited_stream() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let (mut w, mut r) = connect(&gw);
    let body = message_body(true).to_string();
    write!(
        w,
        "POST /v1/messages HTTP/1.0\r\nx-api-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let resp = read_resp(&mut r);
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("transfer-encoding"),
        None,
        "no chunking for 1.0"
    );
    assert_eq!(resp.header("connection"), Some("close"));
    let text = String::from_utf8(resp.body).unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
}

#[test]
fn an_early_refusal_keeps_the_connection_when_the_body_was_received() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let (mut w, mut r) = connect(&gw);
    let body = count_tokens_body(1);
    let bad = post("/v1/messages/count_tokens", &body, "").replace(TENANT_KEY, "sk-wrong");
    w.write_all(bad.as_bytes()).unwrap();
    let resp = read_resp(&mut r);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("x-sluice-reason"), Some("auth.invalid_key"));
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    assert_eq!(count_tokens(&mut w, &mut r, &body).status, 200);
}

#[test]
fn malformed_and_oversized_heads_get_anthropic_errors_and_a_close() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    for (wire, status, reason) in [
        (
            "POST /v1/messages HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
                .to_string(),
            400,
            "request.malformed",
        ),
        (
            "POST /v1/messages HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"
                .to_string(),
            400,
            "request.malformed",
        ),
        ("GARBAGE\r\n\r\n".to_string(), 400, "request.malformed"),
        (
            format!(
                "GET /v1/models HTTP/1.1\r\nx-big: {}\r\n\r\n",
                "a".repeat(70_000)
            ),
            431,
            "request.head_too_large",
        ),
    ] {
        let (mut w, mut r) = connect(&gw);
        w.write_all(wire.as_bytes()).unwrap();
        let resp = read_resp(&mut r);
        assert_eq!(resp.status, status, "{wire:.60}");
        assert_eq!(resp.header("x-sluice-reason"), Some(reason));
        assert_eq!(resp.header("connection"), Some("close"));
        let v = resp.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["request_id"].as_str().is_some());
        assert!(closed(&mut r));
    }
}

#[test]
fn keepalive_limits_close_idle_connections_and_count_requests() {
    let (_mock, url) = start_mock();
    let config = default_config().replace(
        "  - addr: 127.0.0.1:{PORT}\n",
        "  - addr: 127.0.0.1:{PORT}\n    keepalive: { idle: 1s, max_requests: 2 }\n",
    );
    let gw = start_gateway_with(&config, &url);
    // The second request on a connection is its last.
    let (mut w, mut r) = connect(&gw);
    for i in 0..2 {
        let resp = count_tokens(&mut w, &mut r, &count_tokens_body(i));
        assert_eq!(resp.status, 200);
        let want = if i == 0 { "keep-alive" } else { "close" };
        assert_eq!(resp.header("connection"), Some(want));
    }
    assert!(closed(&mut r));
    // An idle connection is closed after `idle`.
    let (mut w, mut r) = connect(&gw);
    assert_eq!(
        count_tokens(&mut w, &mut r, &count_tokens_body(9)).status,
        200
    );
    let t = Instant::now();
    assert!(closed(&mut r));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}
