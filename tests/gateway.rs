//! End-to-end tests: the real gateway binary in front of a real (mock) upstream.

mod common;

use common::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Status, reason header and parsed Anthropic error body.
async fn error_of(r: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = r.status().as_u16();
    let reason = header(&r, "x-sluice-reason").unwrap_or("").to_string();
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    assert!(header(&r, "x-request-id").is_some());
    assert!(header(&r, "request-id").is_some());
    let body: serde_json::Value = r.json().await.expect("json error body");
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body["request_id"].as_str().is_some());
    (status, reason, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn non_streaming_round_trip_and_header_rewriting() {
    let (mock, url) = start_mock();
    let gw = start_gateway(&url);
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .header("x-custom-client", "kept")
        .header("x-request-id", "client-req-123")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), Some("client-req-123"));
    assert!(header(&r, "request-id").is_some_and(|v| v.starts_with("req_mock_")));
    assert!(header(&r, "server-timing")
        .is_some_and(|v| v.starts_with("sluice;dur=") && v.contains("upstream;dur=")));
    assert!(header(&r, "anthropic-organization-id").is_none());
    assert!(r
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("anthropic-ratelimit-")));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "claude-sonnet-4-5");

    let recorded = mock.requests();
    let req = recorded
        .iter()
        .rev()
        .find(|r| r.path == "/v1/messages")
        .expect("mock saw request");
    assert_eq!(req.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        req.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(req.header("x-custom-client"), Some("kept"));
    assert_eq!(req.header("x-claude-timezone"), Some("Asia/Shanghai"));
    assert_eq!(req.header("x-request-id"), Some("client-req-123"));
    assert_eq!(req.header("accept-encoding"), None);
    let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent, message_body(false));

    let line = gw.access_line("client-req-123");
    assert_eq!(line["tenant"], "team-a");
    assert_eq!(line["biz"], "support");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "/v1/messages");
    assert_eq!(line["model"], "claude-sonnet-4-5");
    assert_eq!(line["key_id"], "test-key");
    assert!(line["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(line["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_version_and_bearer_auth_are_respected() {
    let (mock, url) = start_mock();
    let gw = start_gateway(&url);
    let r = client()
        .get(gw.url("/v1/models"))
        .header("authorization", format!("Bearer {TENANT_KEY}"))
        .header("anthropic-version", "2099-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["data"].as_array().is_some_and(|a| !a.is_empty()));
    let req = mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v1/models")
        .unwrap();
    assert_eq!(req.header("anthropic-version"), Some("2099-01-01"));
    assert_eq!(req.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(req.header("authorization"), None);
    // prefix route
    let r = client()
        .get(gw.url("/v1/models/claude-sonnet-4-5"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_is_byte_identical_and_usage_is_logged() {
    let sse = include_bytes!("data/stream_basic.sse");
    // Small chunks with pauses: splits land inside lines and UTF-8 sequences.
    let raw = chunked_response(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nrequest-id: req_raw_1\r\nanthropic-organization-id: org-secret\r\n",
        sse,
        7,
    );
    let addr = raw_upstream(raw, 40, Duration::from_millis(2));
    let gw = start_gateway(&format!("http://{addr}"));
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-request-id", "stream-bytes-1")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "request-id"), Some("req_raw_1"));
    assert!(header(&r, "anthropic-organization-id").is_none());
    assert!(header(&r, "content-encoding").is_none());
    let got = r.bytes().await.unwrap();
    assert_eq!(&got[..], &sse[..], "stream must pass through byte for byte");

    let line = gw.access_line("stream-bytes-1");
    assert_eq!(line["stream"], true);
    assert!(line["error"].is_null(), "{line}");
    let expected = {
        let mut p = sluice::sse::SseParser::new();
        let mut u = sluice::usage::StreamUsage::default();
        p.feed(sse, |e| u.observe(e));
        u.usage()
    };
    assert_eq!(
        line["usage"]["input_tokens"].as_u64(),
        Some(expected.input_tokens)
    );
    assert_eq!(
        line["usage"]["output_tokens"].as_u64(),
        Some(expected.output_tokens)
    );
    assert!(expected.output_tokens > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_streaming_is_byte_identical() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"\u4f60\u597d unknown_field kept"}],"stop_reason":"end_turn","usage":{"input_tokens":11,"output_tokens":3},"zzz_unknown":{"signature":"abc=="}}"#;
    let raw = [
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes(),
        body.to_vec(),
    ]
    .concat();
    let addr = raw_upstream(raw, 3, Duration::from_millis(1));
    let gw = start_gateway(&format!("http://{addr}"));
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-request-id", "json-bytes-1")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], &body[..]);
    let line = gw.access_line("json-bytes-1");
    assert_eq!(line["usage"]["input_tokens"], 11);
    assert_eq!(line["usage"]["output_tokens"], 3);
    assert_eq!(line["model"], "claude-sonnet-4-5");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_event_arrives_while_upstream_is_still_streaming() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let start = Instant::now();
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-mock-event-delay-ms", "150")
        .header("x-mock-deltas", "8")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").is_some_and(|v| v.starts_with("text/event-stream")));
    let mut stream = r.bytes_stream();
    let mut first_event_at = None;
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        all.extend_from_slice(&chunk);
        if first_event_at.is_none() && all.windows(2).any(|w| w == b"\n\n") {
            first_event_at = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let first = first_event_at.expect("an event");
    // 13 events with 150 ms between them take ≥ 1.8 s upstream; the first must not
    // wait for the rest.
    assert!(total >= Duration::from_millis(1500), "total {total:?}");
    assert!(
        first + Duration::from_millis(1000) < total,
        "first event at {first:?}, stream ended at {total:?}"
    );
    let text = String::from_utf8(all).unwrap();
    assert!(text.contains("event: message_stop"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_errors_have_anthropic_shape_status_and_reason() {
    let (mock, url) = start_mock();
    let gw = start_gateway(&url);
    let c = client();
    let before = mock.requests().len();

    // missing key
    let r = c
        .post(gw.url("/v1/messages"))
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (401, "auth.missing_key", Some("authentication_error"))
    );

    // wrong key
    let r = c
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-sluice-wrong")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (401, "auth.invalid_key", Some("authentication_error"))
    );

    // unknown route (even with a good key)
    let r = c
        .post(gw.url("/v1/complete"))
        .header("x-api-key", TENANT_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (404, "route.not_found", Some("not_found_error"))
    );

    // wrong method
    let r = c
        .get(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "allow"), Some("POST"));
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (
            405,
            "route.method_not_allowed",
            Some("invalid_request_error")
        )
    );

    // body over max_body (declared length)
    let big = vec![b'a'; 2 << 20];
    let r = c
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .body(big)
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (413, "limit.max_body", Some("request_too_large"))
    );

    // body over max_body (chunked, no declared length)
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b'x'; 64 * 1024])).collect();
    let r = c
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    if let Ok(r) = r {
        // The gateway may answer before the client finished sending.
        let (s, reason, _) = error_of(r).await;
        assert_eq!((s, reason.as_str()), (413, "limit.max_body"));
    }

    // tenant policy: team-b is restricted to 203.0.113.0/24
    let r = c
        .post(gw.url("/v1/messages"))
        .header("x-api-key", OTHER_TENANT_KEY)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (403, "policy.ip", Some("permission_error"))
    );

    // none of these reached the upstream
    let after = mock.requests().len();
    assert_eq!(before, after, "refused requests must not be forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_unreachable_is_502() {
    let dead = free_port();
    let gw = start_gateway(&format!("http://127.0.0.1:{dead}"));
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (502, "upstream.unavailable", Some("api_error"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_byte_timeout_is_504() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let start = Instant::now();
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-mock-hang", "1")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    let (s, reason, b) = error_of(r).await;
    assert_eq!(
        (s, reason.as_str(), b["error"]["type"].as_str()),
        (504, "upstream.timeout", Some("api_error"))
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

async fn read_all(r: reqwest::Response) -> String {
    let mut s = r.bytes_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_stream_ends_with_an_error_event() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-request-id", "broken-1")
        .header("x-mock-disconnect-after", "4")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = read_all(r).await;
    assert!(text.contains("event: message_start"), "{text}");
    assert!(!text.contains("event: message_stop"), "{text}");
    assert!(text.ends_with("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream stream interrupted\"}}\n\n"), "{text}");
    let line = gw.access_line("broken-1");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{line}"
    );
    assert!(
        line["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0,
        "usage seen so far is recorded: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_mid_stream_ends_with_an_error_event() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url); // idle: 1s
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-mock-event-delay-ms", "1500")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = read_all(r).await;
    assert!(text.contains("event: message_start"), "{text}");
    assert!(
        text.ends_with("\"message\":\"upstream stream interrupted\"}}\n\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_longer_than_the_idle_timeout_with_short_gaps_completes() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url); // idle: 1s
    let started = std::time::Instant::now();
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-mock-event-delay-ms", "350")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = read_all(r).await;
    assert!(
        started.elapsed() > std::time::Duration::from_millis(2500),
        "the stream outlasted the idle timeout several times over"
    );
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(!text.contains("interrupted"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_error_statuses_pass_through_unchanged() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-mock-status", "529")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 529);
    assert!(
        header(&r, "x-sluice-reason").is_none(),
        "upstream errors are not gateway-made"
    );
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "overloaded_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_never_leak_into_responses_or_logs() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let c = client();
    let mut seen = String::new();
    let reqs = vec![
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .json(&message_body(false)),
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .json(&message_body(true)),
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .header("x-mock-status", "401")
            .json(&message_body(false)),
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .header("x-mock-disconnect-after", "2")
            .json(&message_body(true)),
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", "sk-sluice-wrong-key-guess")
            .json(&message_body(false)),
        c.get(gw.url("/v1/nothing")).header("x-api-key", TENANT_KEY),
    ];
    for rb in reqs {
        let r = rb.send().await.unwrap();
        for (k, v) in r.headers() {
            seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
        }
        seen.push_str(&read_all(r).await);
    }
    std::thread::sleep(Duration::from_millis(300));
    let logs = gw.logs();
    assert!(!logs.is_empty());
    for secret in [
        UPSTREAM_KEY,
        TENANT_KEY,
        "sk-sluice-wrong-key-guess",
        "org-mock-secret",
    ] {
        assert!(!seen.contains(secret), "{secret} leaked into a response");
        if secret != "org-mock-secret" {
            assert!(!logs.contains(secret), "{secret} leaked into the logs");
        }
    }
}

#[test]
fn downstream_keepalive_serves_many_requests_on_one_connection() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let sock = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = sock.try_clone().unwrap();
    let mut r = BufReader::new(sock);
    for i in 0..5 {
        let body = format!(
            r#"{{"model":"claude-sonnet-4-5","messages":[{{"role":"user","content":"n{i}"}}]}}"#
        );
        write!(
            w,
            "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: x\r\nx-api-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "request {i}: {status}");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            assert!(!lower.starts_with("connection: close"), "{line}");
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        assert!(len > 0);
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["input_tokens"].as_u64().is_some());
    }
}
