//! Tenants authenticated by JWTs and by signed requests, and usage priced into cost,
//! through the real gateway.

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use sluice::tenant_auth::signature;

const HS_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const SIGNING_SECRET: &str = "test-only-signing-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwt").to_string()
}

fn config(extra_top: &str) -> String {
    let d = jwt_dir();
    format!(
        "{}  - name: signed\n    keys: [ {{ sha256: \"{}\" }} ]\n    signing: {{ secret: {{ env: TEST_SIGNING_SECRET }}, window: 60s }}\n  - name: idp-team\n    jwt_subjects: [svc-idp]\nauth:\n  jwt:\n    - {{ name: shared, algorithms: [HS256], key: {{ secret: {{ env: TEST_JWT_SECRET }} }}, audience: sluice }}\n    - {{ name: idp, algorithms: [RS256], key: {{ pem_file: \"{d}/rsa1_public.pem\" }}, issuer: https://idp.example.com }}\npricing:\n  currency: USD\n  models:\n    - {{ model: \"claude-sonnet-*\", input: 3, output: 15, cache_write: 3.75, cache_read: 0.3 }}\n",
        default_config().replace("upstreams:\n", &format!("{extra_top}upstreams:\n")),
        sha256_hex("sk-sluice-signed-tenant-key")
    )
}

fn start(url: &str, extra_top: &str) -> Gateway {
    std::env::set_var("TEST_JWT_SECRET", HS_SECRET);
    std::env::set_var("TEST_SIGNING_SECRET", SIGNING_SECRET);
    start_gateway_with(&config(extra_top), url)
}

fn hs(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs(claims: serde_json::Value, key: &str) -> String {
    let pem = std::fs::read(format!("{}/{key}", jwt_dir())).unwrap();
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

async fn with_bearer(gw: &Gateway, token: &str) -> (u16, String) {
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("authorization", format!("Bearer {token}"))
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.headers()
            .get("x-sluice-reason")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_tokens_pass_or_fail_with_distinct_reasons() {
    let (_mock, url) = start_mock();
    let gw = start(&url, "");
    let n = now();
    let ok_hs = hs(serde_json::json!({"sub":"team-a","aud":"sluice","iat":n,"exp":n+600}));
    assert_eq!(
        with_bearer(&gw, &ok_hs).await,
        (200, String::new()),
        "HS256 valid"
    );
    let ok_rs = rs(
        serde_json::json!({"sub":"svc-idp","iss":"https://idp.example.com","iat":n,"exp":n+600}),
        "rsa1_private.pem",
    );
    assert_eq!(
        with_bearer(&gw, &ok_rs).await.0,
        200,
        "RS256 valid, mapped through jwt_subjects"
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad signature",
            rs(
                serde_json::json!({"sub":"svc-idp","iss":"https://idp.example.com","iat":n,"exp":n+600}),
                "rsa2_private.pem",
            ),
            "auth.jwt.signature",
        ),
        (
            "alg none",
            {
                use base64::Engine;
                let e = |v: serde_json::Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                format!(
                    "{}.{}.",
                    e(serde_json::json!({"alg":"none","typ":"JWT"})),
                    e(serde_json::json!({"sub":"team-a","aud":"sluice","exp":n+600}))
                )
            },
            "auth.jwt.alg",
        ),
        (
            "expired",
            hs(serde_json::json!({"sub":"team-a","aud":"sluice","iat":n-7200,"exp":n-3600})),
            "auth.jwt.expired",
        ),
        (
            "lifetime too long",
            hs(serde_json::json!({"sub":"team-a","aud":"sluice","iat":n,"exp":n+7200})),
            "auth.jwt.lifetime",
        ),
        (
            "wrong audience",
            hs(serde_json::json!({"sub":"team-a","aud":"other","iat":n,"exp":n+600})),
            "auth.jwt.audience",
        ),
        (
            "wrong issuer",
            rs(
                serde_json::json!({"sub":"svc-idp","iss":"https://evil.example.com","iat":n,"exp":n+600}),
                "rsa1_private.pem",
            ),
            "auth.jwt.issuer",
        ),
        (
            "unknown tenant",
            hs(serde_json::json!({"sub":"nobody","aud":"sluice","iat":n,"exp":n+600})),
            "auth.jwt.tenant",
        ),
    ];
    let mut reasons = std::collections::HashSet::new();
    for (what, token, reason) in cases {
        let (status, got) = with_bearer(&gw, &token).await;
        assert_eq!((status, got.as_str()), (401, reason), "{what}");
        reasons.insert(got);
    }
    assert_eq!(reasons.len(), 7, "every failure has its own reason");
    assert!(!gw.logs().contains(&ok_hs), "tokens are not logged");
}

fn signed_request(
    gw: &Gateway,
    path: &str,
    body: &[u8],
    header: String,
) -> reqwest::RequestBuilder {
    client()
        .post(gw.url(path))
        .header("x-api-key", "sk-sluice-signed-tenant-key")
        .header("content-type", "application/json")
        .header("x-sluice-signature", header)
        .body(body.to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_requests_valid_tampered_stale_and_replayed() {
    let redis = RedisServer::start();
    let (_mock, url) = start_mock();
    let state = format!("state: {}\n", redis.url());
    let a = start(&url, &state);
    let b = start(&url, &state);
    let body = serde_json::to_vec(&message_body(false)).unwrap();
    let sig = |t: u64, path: &str, body: &[u8]| {
        signature::sign(SIGNING_SECRET.as_bytes(), t, "POST", path, body)
    };
    let reason = |r: &reqwest::Response| {
        r.headers()
            .get("x-sluice-reason")
            .map(|v| v.to_str().unwrap().to_string())
    };

    let h = sig(now(), "/v1/messages", &body);
    assert_eq!(
        signed_request(&a, "/v1/messages", &body, h.clone())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // the same signature again: on the same instance and on the other one
    let r = signed_request(&a, "/v1/messages", &body, h.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.replay"))
    );
    let r = signed_request(&b, "/v1/messages", &body, h)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.replay")),
        "replay across instances"
    );

    let tampered = serde_json::to_vec(&message_body(true)).unwrap();
    let r = signed_request(
        &a,
        "/v1/messages",
        &tampered,
        sig(now(), "/v1/messages", &body),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.mismatch"))
    );
    let r = signed_request(
        &a,
        "/v1/messages",
        &body,
        sig(now(), "/v1/messages/count_tokens", &body),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.mismatch")),
        "wrong path"
    );
    let r = signed_request(
        &a,
        "/v1/messages",
        &body,
        sig(now() - 120, "/v1/messages", &body),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.stale"))
    );
    let r = client()
        .post(a.url("/v1/messages"))
        .header("x-api-key", "sk-sluice-signed-tenant-key")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), reason(&r).as_deref()),
        (401, Some("auth.signature.missing"))
    );
    // other tenants are not asked to sign
    let r = client()
        .post(a.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_priced_exactly_streamed_and_not() {
    // a fixed upstream answer with every kind of token
    let usage = r#"{"input_tokens":1000,"output_tokens":2000,"cache_creation_input_tokens":4000,"cache_read_input_tokens":10000}"#;
    let json = format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"hi"}}],"stop_reason":"end_turn","usage":{usage}}}"#
    );
    let raw = [format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", json.len()).into_bytes(), json.into_bytes()].concat();
    let addr = raw_upstream(raw, 1, std::time::Duration::ZERO);
    let gw = start(&format!("http://{addr}"), "");
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-request-id", "priced-1")
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // (1000·3 + 2000·15 + 4000·3.75 + 10000·0.3) / 1e6 = 0.051
    let expected = 0.051;
    let line = gw.access_line("priced-1");
    assert!(
        (line["cost"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{line}"
    );
    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: f64 = m
        .lines()
        .find(|l| l.starts_with("sluice_cost_total{model=\"claude-sonnet-4-5\",tenant=\"team-a\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cost series:\n{m}"));
    assert!((v - expected).abs() < 1e-9);

    // streamed: the same usage arriving in message_start/message_delta
    let sse = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":1000,\"output_tokens\":1,\"cache_creation_input_tokens\":4000,\"cache_read_input_tokens\":10000}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2000}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let raw = chunked_response(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n",
        sse.as_bytes(),
        50,
    );
    let addr = raw_upstream(raw, 4, std::time::Duration::from_millis(1));
    let gw = start(&format!("http://{addr}"), "");
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .header("x-request-id", "priced-2")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    let _ = r.bytes().await;
    let line = gw.access_line("priced-2");
    assert!(
        (line["cost"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_cost_quota_reserves_then_stops_the_tenant_with_quota_cost() {
    let (_mock, url) = start_mock();
    // $1,000 per million tokens either way = $0.001 a token; 2.50 a day for team-a
    let cfg = format!(
        "{}pricing:\n  currency: USD\n  models:\n    - {{ model: \"*\", input: 1000, output: 1000 }}\n",
        default_config().replace(
            "    biz: support\n",
            "    biz: support\n    limits:\n      quota: { daily_cost: 2.5, warn_at: 80% }\n"
        )
    );
    let gw = start_gateway_with(&cfg, &url);
    let post = |id: String, max_tokens: u64, extra: Option<(&'static str, &'static str)>| {
        let mut body = message_body(false);
        body["max_tokens"] = max_tokens.into();
        let mut rb = client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .header("x-request-id", id)
            .json(&body);
        if let Some((k, v)) = extra {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    let reason = |r: &reqwest::Response| {
        r.headers()
            .get("x-sluice-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };

    // 1. Five concurrent requests, each reserving its worst case (~30 input tokens +
    //    max_tokens 1000 = ~$1.03): the first three fit under $2.50 (0, 1.03, 2.06 spent
    //    or reserved when they arrive), the other two are refused while those run.
    let slow = Some(("x-mock-latency-ms", "500"));
    let rs =
        futures_util::future::join_all((0..5).map(|i| post(format!("cost-par-{i}"), 1000, slow)))
            .await;
    let mut statuses: Vec<(u16, String)> = rs
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.status().as_u16(), reason(&r))
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            (200, String::new()),
            (200, String::new()),
            (200, String::new()),
            (429, "quota.cost".to_string()),
            (429, "quota.cost".to_string()),
        ]
    );

    // 2. They really cost a few cents each: reconciled, so there is room again.
    let spent: f64 = (0..5)
        .filter_map(|i| {
            let l = gw.access_line(&format!("cost-par-{i}"));
            (l["status"] == 200).then(|| l["cost"].as_f64().unwrap())
        })
        .sum();
    assert!(spent > 0.0 && spent < 0.5, "spent {spent}");
    let r = post("cost-after".into(), 1000, None).await.unwrap();
    assert_eq!(r.status(), 200, "{}", reason(&r));

    // 3. A long answer (~4,000 output tokens, far over its max_tokens reservation) is
    //    charged in full; the day's spend is then over $2.50 and the tenant is stopped.
    let r = post("cost-big".into(), 64, Some(("x-mock-body-bytes", "20000")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let big = gw.access_line("cost-big")["cost"].as_f64().unwrap();
    assert!(big > 2.5, "cost {big}");
    let r = post("cost-refused".into(), 1, None).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(reason(&r), "quota.cost");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let to_midnight = 86_400 - now() % 86_400;
    assert!(retry.abs_diff(to_midnight) <= 2, "retry-after {retry}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        body["error"]["message"],
        "daily spend quota exhausted for this key"
    );
    // the warning (once) and the gauge
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = gw.logs();
    assert_eq!(
        logs.matches("quota warning: tenant team-a has spent")
            .count(),
        1,
        "{logs}"
    );
    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ratio: f64 = m
        .lines()
        .find(|l| {
            l.starts_with("sluice_quota_used_ratio{")
                && l.contains("quota=\"daily_cost\"")
                && l.contains("tenant=\"team-a\"")
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no daily_cost ratio:\n{m}"));
    assert!(ratio >= 1.0, "ratio {ratio}");
}
