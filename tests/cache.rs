//! The response cache end to end: hit/miss/bypass, tenant isolation, errors never
//! cached, TTL, sharing through Redis, and coalescing of identical concurrent requests.

mod common;

use common::*;

const THIRD_KEY: &str = "sk-sluice-test-third-tenant-0000000000000000";

fn config(extra_top: &str) -> String {
    format!(
        "{}  - name: team-c\n    keys: [ {{ sha256: \"{}\" }} ]\ncache: {{ enabled: true, ttl: 800ms, streams: true }}\n",
        default_config().replace("upstreams:\n", &format!("{extra_top}upstreams:\n")),
        sha256_hex(THIRD_KEY)
    )
}

fn body(text: &str) -> serde_json::Value {
    serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":32,"messages":[{"role":"user","content":text}]})
}

async fn ask(
    gw: &Gateway,
    key: &str,
    b: &serde_json::Value,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut rb = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .json(b);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-sluice-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, r.text().await.unwrap())
}

fn upstream_calls(mock: &sluice::mock::MockServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn hit_miss_bypass_isolation_errors_and_ttl() {
    let (mock, url) = start_mock();
    let gw = start_gateway_with(&config(""), &url);
    mock.clear();
    let b = body("what is the capital of France?");

    let (s, c, first) = ask(&gw, TENANT_KEY, &b, &[]).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
    let (s, c, second) = ask(&gw, TENANT_KEY, &b, &[]).await;
    assert_eq!((s, c.as_str()), (200, "hit"));
    assert_eq!(
        first, second,
        "the cached answer is the original, byte for byte"
    );
    assert_eq!(upstream_calls(&mock), 1);

    // the client opts out
    let (s, c, _) = ask(&gw, TENANT_KEY, &b, &[("cache-control", "no-cache")]).await;
    assert_eq!((s, c.as_str()), (200, "bypass"));
    assert_eq!(upstream_calls(&mock), 2);

    // another tenant never gets team-a's answer
    let (s, c, _) = ask(&gw, THIRD_KEY, &b, &[]).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
    assert_eq!(upstream_calls(&mock), 3);

    // errors are never cached: a 500 (retried) then the same request goes upstream again
    let e = body("an error, please");
    let (s, _, _) = ask(&gw, TENANT_KEY, &e, &[("x-mock-status", "500")]).await;
    assert_eq!(s, 500);
    let before = upstream_calls(&mock);
    let (s, c, _) = ask(&gw, TENANT_KEY, &e, &[]).await;
    assert_eq!((s, c.as_str()), (200, "miss"), "the error was not cached");
    assert_eq!(upstream_calls(&mock), before + 1);

    // count_tokens answers are cached too
    let ct = serde_json::json!({"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"count"}]});
    for want in ["miss", "hit"] {
        let r = client()
            .post(gw.url("/v1/messages/count_tokens"))
            .header("x-api-key", TENANT_KEY)
            .json(&ct)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-sluice-cache"], want);
    }

    // TTL: 800 ms
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let (_, c, _) = ask(&gw, TENANT_KEY, &b, &[]).await;
    assert_eq!(c, "miss", "expired");

    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sluice_cache_requests_total{result=\"hit\",tenant=\"team-a\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("sluice_cache_tokens_saved_total{tenant=\"team-a\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_concurrent_requests_reach_the_upstream_once() {
    let (mock, url) = start_mock();
    let gw = start_gateway_with(&config(""), &url);
    mock.clear();
    let b = body("fifty at once");
    let mut tasks = vec![];
    for _ in 0..50 {
        let (u, b) = (gw.url("/v1/messages"), b.clone());
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(u)
                .header("x-api-key", TENANT_KEY)
                .header("x-mock-latency-ms", "400")
                .json(&b)
                .send()
                .await
                .unwrap();
            let cache = r
                .headers()
                .get("x-sluice-cache")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), cache, r.text().await.unwrap())
        }));
    }
    let mut answers = std::collections::HashSet::new();
    let mut hits = 0;
    for t in tasks {
        let (s, c, text) = t.await.unwrap();
        assert_eq!(s, 200);
        if c.as_deref() == Some("hit") {
            hits += 1;
        }
        answers.insert(text);
    }
    assert_eq!(
        upstream_calls(&mock),
        1,
        "one upstream call for 50 identical requests"
    );
    assert_eq!(answers.len(), 1, "everyone got the same answer");
    assert_eq!(hits, 49);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_shares_the_cache_between_instances() {
    let redis = RedisServer::start();
    let (mock, url) = start_mock();
    let cfg = config(&format!("state: {}\n", redis.url()));
    let a = start_gateway_with(&cfg, &url);
    let b = start_gateway_with(&cfg, &url);
    mock.clear();
    let q = body("shared across instances");
    let (_, c, from_a) = ask(&a, TENANT_KEY, &q, &[]).await;
    assert_eq!(c, "miss");
    let (_, c, from_b) = ask(&b, TENANT_KEY, &q, &[]).await;
    assert_eq!(c, "hit", "instance B finds what A stored in Redis");
    assert_eq!(from_a, from_b);
    assert_eq!(upstream_calls(&mock), 1);
}
