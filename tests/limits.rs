//! Limits and quotas end to end (memory backend): the real gateway in front of the mock.

mod common;

use common::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

fn with_limits(tenant_limits: &str, global: &str) -> String {
    default_config()
        .replace(
            "limits:\n  max_body: 1MiB",
            &format!("limits:\n  max_body: 1MiB\n{global}"),
        )
        .replace(
            "    biz: support\n",
            &format!("    biz: support\n    limits:\n{tenant_limits}"),
        )
}

async fn post(
    gw: &Gateway,
    key: &str,
    body: serde_json::Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .json(&body);
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn h<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn request_limit_burst_then_429_with_retry_after_and_headers() {
    let (_mock, url) = start_mock();
    // 1 request per 2 s, burst 2: three pass at once, the fourth is refused
    let gw = start_gateway_with(
        &with_limits("      requests: { rate: 30/m, burst: 2 }\n", ""),
        &url,
    );
    let mut statuses = vec![];
    let mut last_ok = None;
    for _ in 0..3 {
        let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
        statuses.push(r.status().as_u16());
        last_ok = Some((
            h(&r, "anthropic-ratelimit-requests-limit").map(str::to_string),
            h(&r, "anthropic-ratelimit-requests-remaining").map(str::to_string),
            h(&r, "anthropic-ratelimit-requests-reset").map(str::to_string),
        ));
    }
    assert_eq!(statuses, vec![200, 200, 200]);
    let (limit, remaining, reset) = last_ok.unwrap();
    assert_eq!(limit.as_deref(), Some("3"));
    assert_eq!(remaining.as_deref(), Some("0"));
    assert!(reset.is_some_and(|r| r.ends_with('Z')));

    let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "x-sluice-reason"), Some("limit.tenant.requests"));
    // the next slot frees 2 s after the first admission: retry-after rounds up to 2
    let retry: u64 = h(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(h(&r, "anthropic-ratelimit-requests-remaining"), Some("0"));
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "rate_limit_error");

    // the other tenant is not affected (and is refused for its own reasons only)
    let r = post(&gw, OTHER_TENANT_KEY, message_body(false), &[]).await;
    assert_eq!(h(&r, "x-sluice-reason"), Some("policy.ip"));

    // after retry-after the request passes
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_mode_waits_instead_of_refusing() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(
        &with_limits(
            "      requests: { rate: 10/s, burst: 2, delay: true }\n",
            "",
        ),
        &url,
    );
    let start = Instant::now();
    let mut handles = vec![];
    for _ in 0..5 {
        let u = gw.url("/v1/messages");
        handles.push(tokio::spawn(async move {
            client()
                .post(u)
                .header("x-api-key", TENANT_KEY)
                .json(&message_body(false))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut codes = vec![];
    for hd in handles {
        codes.push(hd.await.unwrap());
    }
    codes.sort();
    // burst 2: three admitted (the 2nd and 3rd wait 100 and 200 ms), two refused
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_cap_counts_open_streams_and_frees_on_disconnect() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(&with_limits("      concurrency: 2\n", ""), &url);
    let slow = [("x-mock-event-delay-ms", "200"), ("x-mock-deltas", "10")];
    // three streams at once: exactly one refused
    let mut handles = vec![];
    for _ in 0..3 {
        let u = gw.url("/v1/messages");
        handles.push(tokio::spawn(async move {
            let mut rb = client()
                .post(u)
                .header("x-api-key", TENANT_KEY)
                .json(&message_body(true));
            for (k, v) in slow {
                rb = rb.header(k, v);
            }
            let r = rb.send().await.unwrap();
            let code = r.status().as_u16();
            let reason = h(&r, "x-sluice-reason").map(str::to_string);
            let _ = r.bytes().await;
            (code, reason)
        }));
    }
    let mut results = vec![];
    for hd in handles {
        results.push(hd.await.unwrap());
    }
    let refused: Vec<_> = results.iter().filter(|(c, _)| *c == 429).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert_eq!(refused[0].1.as_deref(), Some("limit.tenant.concurrency"));

    // two open streams; one client walks away mid-stream
    let open = |gw: &Gateway| {
        let mut rb = client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .json(&message_body(true));
        for (k, v) in slow {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    let a = open(&gw).await.unwrap();
    let b = open(&gw).await.unwrap();
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
    assert_eq!(r.status(), 429, "both slots are taken");
    let mut sa = a.bytes_stream();
    let _first = sa.next().await;
    drop(sa); // client disconnects mid-stream
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot was not released after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_limit_reserves_max_tokens_and_reconciles_from_usage() {
    let (_mock, url) = start_mock();
    // 1000 tokens per hour (no meaningful refill during the test)
    let gw = start_gateway_with(&with_limits("      tokens: { rate: 1000/h }\n", ""), &url);
    let big = |stream: bool| {
        serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":800,"stream":stream,
            "messages":[{"role":"user","content":"hello"}]})
    };
    // Each reserves ~830 (estimate + max_tokens) but really uses ~35: without
    // reconciliation the second would be refused.
    for stream in [false, true, false, true] {
        let r = post(&gw, TENANT_KEY, big(stream), &[]).await;
        assert_eq!(
            r.status(),
            200,
            "stream={stream}: {:?}\n{}",
            h(&r, "x-sluice-reason"),
            gw.logs()
        );
        let _ = r.bytes().await;
        tokio::time::sleep(Duration::from_millis(100)).await; // settle happens after the response
    }
    let r = post(&gw, TENANT_KEY, big(false), &[]).await;
    let remaining: u64 = h(&r, "anthropic-ratelimit-tokens-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(h(&r, "anthropic-ratelimit-tokens-limit"), Some("1000"));
    assert!(
        remaining < 100,
        "a reservation of ~830 is held: {remaining}"
    );
    let _ = r.bytes().await;
    // a request that cannot fit at all is refused with the token reason
    let huge = serde_json::json!({"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"x"}]});
    let r = post(&gw, TENANT_KEY, huge, &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "x-sluice-reason"), Some("limit.tenant.tokens"));
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_quota_warns_then_refuses_until_the_day_ends() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(
        &with_limits("      quota: { daily_requests: 3, warn_at: 60% }\n", ""),
        &url,
    );
    for _ in 0..3 {
        assert_eq!(
            post(&gw, TENANT_KEY, message_body(false), &[])
                .await
                .status(),
            200
        );
    }
    let r = post(&gw, TENANT_KEY, message_body(false), &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "x-sluice-reason"), Some("quota.requests"));
    let retry: u64 = h(&r, "retry-after").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    assert!(
        retry.abs_diff(to_midnight) <= 2,
        "retry-after {retry} vs {to_midnight}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let logs = gw.logs();
    assert_eq!(
        logs.matches("quota warning: tenant team-a").count(),
        1,
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ip_guard_runs_before_auth_and_trusts_only_listed_proxies() {
    let (mock, url) = start_mock();
    let gw = start_gateway_with(
        &with_limits(
            "",
            "  client_ip: { rate: 1/m, burst: 2 }\n  trusted_proxies: [127.0.0.1/32]\n",
        )
        .replace("    limits:\n  - name: team-b", "  - name: team-b"),
        &url,
    );
    let before = mock.requests().len();
    // key spraying from one address: refused by the guard after the burst
    let mut reasons = vec![];
    for i in 0..4 {
        let r = post(
            &gw,
            &format!("sk-sluice-guess-{i}"),
            message_body(false),
            &[("x-forwarded-for", "198.51.100.1")],
        )
        .await;
        reasons.push((
            r.status().as_u16(),
            h(&r, "x-sluice-reason").unwrap_or("").to_string(),
        ));
    }
    assert_eq!(
        reasons[..3].iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![401, 401, 401]
    );
    assert_eq!(reasons[3], (429, "limit.client_ip".to_string()));
    // another address behind the same (trusted) proxy has its own bucket
    let r = post(
        &gw,
        TENANT_KEY,
        message_body(false),
        &[("x-forwarded-for", "198.51.100.2")],
    )
    .await;
    assert_eq!(r.status(), 200);
    // spoofed left-most entries are ignored: the right-most untrusted hop counts
    let r = post(
        &gw,
        TENANT_KEY,
        message_body(false),
        &[("x-forwarded-for", "1.2.3.4, 198.51.100.1")],
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(mock.requests().len(), before + 1);
}
