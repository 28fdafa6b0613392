//! Two gateway instances sharing limits through one real redis-server: exact across
//! instances, local (never open, never 5xx) while Redis is down, shared again after.

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u64 = 20; // per second
const BURST: u64 = 10;

fn shared_config(redis: &str) -> String {
    default_config()
        .replace("upstreams:\n", &format!("state: {redis}\nupstreams:\n"))
        .replace(
            "    biz: support\n",
            &format!("    biz: support\n    limits:\n      requests: {{ rate: {RATE}/s, burst: {BURST} }}\n"),
        )
}

async fn hit(url: &str) -> u16 {
    client()
        .post(format!("{url}/v1/messages/count_tokens"))
        .header("x-api-key", TENANT_KEY)
        .json(&serde_json::json!({"model":"m","messages":[{"role":"user","content":"x"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `sluice_limiter_fallback_decisions` of a gateway.
async fn fallback(gw: &Gateway) -> u64 {
    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    m.lines()
        .find(|l| l.starts_with("sluice_limiter_fallback_decisions "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no fallback metric:\n{m}"))
}

/// Hammer both gateways for `dur`; returns (admitted, refused, other statuses).
async fn load(urls: &[String], dur: Duration) -> (u64, u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + dur;
    let mut tasks = vec![];
    for url in urls {
        for _ in 0..4 {
            let (url, ok, refused, other) =
                (url.clone(), ok.clone(), refused.clone(), other.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    match hit(&url).await {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_limit_and_survive_a_redis_outage() {
    let mut redis = RedisServer::start();
    let (_mock, mock_url) = start_mock();
    let a = start_gateway_with(&shared_config(&redis.url()), &mock_url);
    let b = start_gateway_with(&shared_config(&redis.url()), &mock_url);
    let urls = vec![a.url(""), b.url("")];
    // Both connected to Redis before the measurement (one request each, then the bucket
    // drains again).
    for u in &urls {
        assert_eq!(hit(u).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fallback_before = fallback(&a).await + fallback(&b).await;

    // 1. Shared: the two together stay within rate × time + burst. A decision that had
    //    to be made locally (a Redis call over its 250 ms deadline on a loaded machine)
    //    is counted by the gateways and may admit one more; there must be few of those.
    let start = Instant::now();
    let (ok, refused, other) = load(&urls, Duration::from_secs(2)).await;
    let secs = start.elapsed().as_secs_f64();
    let local = fallback(&a).await + fallback(&b).await - fallback_before;
    let bound = (RATE as f64 * secs).ceil() as u64 + BURST + 1 + local;
    eprintln!(
        "shared: admitted {ok}, refused {refused}, other {other} in {secs:.2}s (bound {bound}, {local} local decisions)"
    );
    assert!(local <= 5, "{local} decisions were not shared");
    assert_eq!(other, 0);
    assert!(refused > 0, "the load must exceed the limit");
    assert!(
        ok <= bound,
        "admitted {ok} > {bound}: limits are not shared"
    );
    assert!(
        ok as f64 >= 0.8 * (RATE as f64 * 2.0),
        "admitted {ok}: far below the limit"
    );

    // 2. Redis dies: both keep serving with local limits — no 5xx, not unlimited.
    redis.kill();
    let (ok, refused, other) = load(&urls, Duration::from_millis(1500)).await;
    eprintln!("redis down: admitted {ok}, refused {refused}, other {other}");
    assert_eq!(other, 0, "an outage must not produce errors");
    assert!(ok > 0 && refused > 0);
    let local_bound = 2 * ((RATE as f64 * 1.5).ceil() as u64 + BURST + 1);
    assert!(
        ok <= local_bound,
        "admitted {ok} > {local_bound}: the gate opened"
    );
    let logs = a.logs();
    assert!(logs.contains("limits are local to this instance"), "{logs}");
    assert_eq!(
        logs.matches("limits are local to this instance").count(),
        1,
        "one warning per outage"
    );

    // 3. Redis is back: sharing resumes. A burst through A leaves nothing for B.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await; // bucket drains; retry interval passes
        for url in &urls {
            hit(url).await; // let both instances notice Redis is back
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut a_ok = 0;
        for _ in 0..(BURST + 1) {
            if hit(&urls[0]).await == 200 {
                a_ok += 1;
            }
        }
        let b_code = hit(&urls[1]).await;
        if a_ok >= BURST && b_code == 429 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sharing did not resume (A admitted {a_ok}, B answered {b_code})"
        );
    }
    assert!(a.logs().contains("Redis is reachable again"));
}
