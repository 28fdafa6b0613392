//! Content filters end to end: request redaction reaches the upstream as valid JSON,
//! banned words refuse the request before anything is forwarded, and streamed or
//! non-streamed answers are masked even when a match is split across events and chunks.

mod common;

use common::*;
use futures_util::StreamExt;

const ID_CARD: &str = "11010519491231002X";
const CARD: &str = "4111 1111 1111 1111";

fn config() -> String {
    format!(
        "{}filters:\n  request:\n    redact: [cn_id_card, email, {{ name: employee_id, pattern: 'EMP-\\d{{6}}' }}]\n    block: {{ words: [违禁词, forbiddenword] }}\n  response:\n    redact: [bank_card]\n    block: {{ words: [secretproject], replacement: \"[FILTERED]\" }}\n",
        default_config()
    )
}

async fn post(
    gw: &Gateway,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn ask(text: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":64,"stream":stream,
        "system":"contact ops@example.com",
        "messages":[{"role":"user","content": text}],
        "metadata":{"user_id":"u1"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn request_redaction_reaches_the_upstream_as_valid_json() {
    let (mock, url) = start_mock();
    let gw = start_gateway_with(&config(), &url);
    mock.clear();
    let text = format!("身份证号{ID_CARD}请核对, staff EMP-123456, escaped \u{4f60}");
    let r = post(&gw, ask(&text, false), &[("x-request-id", "redact-1")]).await;
    assert_eq!(r.status(), 200);
    let seen = mock.requests();
    let req = seen.iter().find(|r| r.path == "/v1/messages").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&req.body).expect("valid JSON upstream");
    let content = v["messages"][0]["content"].as_str().unwrap();
    assert_eq!(
        content,
        "身份证号[REDACTED]请核对, staff [REDACTED], escaped 你"
    );
    assert_eq!(v["system"], "contact [REDACTED]");
    assert_eq!(v["model"], "claude-sonnet-4-5", "identifiers untouched");
    assert_eq!(v["metadata"]["user_id"], "u1");
    assert!(!String::from_utf8_lossy(&req.body).contains(ID_CARD));
    // counted and logged, without the matched text
    let line = gw.access_line("redact-1");
    assert_eq!(line["status"], 200);
    let logs = gw.logs();
    assert!(!logs.contains(ID_CARD) && !logs.contains("EMP-123456"));
    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sluice_filter_hits_total{action=\"redact\",filter=\"cn_id_card\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sluice_filter_hits_total{action=\"redact\",filter=\"email\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sluice_filter_hits_total{action=\"redact\",filter=\"employee_id\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_word_refuses_the_request_and_nothing_is_forwarded() {
    let (mock, url) = start_mock();
    let gw = start_gateway_with(&config(), &url);
    mock.clear();
    // full-width and escaped forms are caught too
    for text in [
        "这里有违禁词",
        "FORBIDDENWORD!",
        "ｆｏｒｂｉｄｄｅｎｗｏｒｄ",
    ] {
        let r = post(&gw, ask(text, false), &[]).await;
        assert_eq!(r.status(), 400, "{text}");
        assert_eq!(r.headers()["x-sluice-reason"], "filter.block");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert!(
            !b.to_string().contains("违禁词"),
            "the answer does not repeat the word"
        );
    }
    let escaped = r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"\u8fdd\u7981\u8bcd"}]}"#;
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("content-type", "application/json")
        .body(escaped)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        mock.requests().iter().all(|r| r.path != "/v1/messages"),
        "nothing was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_number_split_across_deltas_and_chunks_arrives_masked() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(&config(), &url);
    // The mock echoes the start of the prompt in its answer, a few words per delta; 3-byte
    // chunks split the number inside events, lines and UTF-8 characters.
    for chunk in ["3", "7", "64"] {
        let r = post(
            &gw,
            ask(&format!("{CARD} secretproject"), true),
            &[("x-mock-chunk-bytes", chunk), ("x-mock-deltas", "12")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-length").is_none());
        let mut s = r.bytes_stream();
        let mut raw = Vec::new();
        while let Some(c) = s.next().await {
            raw.extend_from_slice(&c.unwrap());
        }
        let raw = String::from_utf8(raw).expect("valid UTF-8");
        // every event is valid SSE with valid JSON; collect the text
        let mut text = String::new();
        let mut p = sluice::sse::SseParser::new();
        let mut bad = 0;
        p.feed(raw.as_bytes(), |ev| {
            match serde_json::from_slice::<serde_json::Value>(ev.data) {
                Ok(v) => {
                    if v["type"] == "content_block_delta" {
                        text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
                    }
                }
                Err(_) => bad += 1,
            }
        });
        assert_eq!(bad, 0, "every event is valid JSON");
        assert!(!p.finish());
        assert!(raw.contains("event: message_stop"));
        assert!(!text.contains("4111"), "card leaked: {text}");
        assert!(
            !text.contains("secretproject"),
            "banned word leaked: {text}"
        );
        assert!(
            text.contains("[REDACTED]") && text.contains("[FILTERED]"),
            "{text}"
        );
        assert!(
            text.contains("你好"),
            "the rest of the answer is intact: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_streaming_answers_are_masked_with_a_correct_length() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(&config(), &url);
    let r = post(&gw, ask(&format!("{CARD} secretproject"), false), &[]).await;
    assert_eq!(r.status(), 200);
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(
        !text.contains("4111") && !text.contains("secretproject"),
        "{text}"
    );
    assert!(text.contains("[REDACTED]") && text.contains("[FILTERED]"));
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
}
