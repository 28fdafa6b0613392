//! Upstream resilience end to end: failover across endpoints and keys before the first
//! byte (large bodies replayed intact), key cooldowns, circuit breaking, backups,
//! affinity, and no retry once the response started.

mod common;

use common::*;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Config with explicit endpoints/keys/breaker for the `main` upstream.
fn config(endpoints: &str, keys: &str, extra: &str) -> String {
    default_config()
        .replace(
            "    endpoints: [ { url: \"{UPSTREAM}\" } ]\n",
            &format!("    endpoints: {endpoints}\n"),
        )
        .replace(
            "    keys: [ { env: TEST_UPSTREAM_KEY, id: test-key } ]\n",
            &format!("    keys: {keys}\n{extra}"),
        )
        .replace("limits:\n  max_body: 1MiB", "limits:\n  max_body: 4MiB")
}

/// A test upstream that answers 503 (or 200 when healthy) and counts hits.
struct Flaky {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

fn flaky(status_when_failing: u16) -> Flaky {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let (h, ok) = (hits.clone(), healthy.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let (h, ok) = (h.clone(), ok.clone());
            std::thread::spawn(move || {
                if !read_request(&mut c, &mut Vec::new()) {
                    return;
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = if ok.load(Ordering::SeqCst) {
                    (200, r#"{"input_tokens":1}"#.to_string())
                } else {
                    (
                        status_when_failing,
                        r#"{"type":"error","error":{"type":"overloaded_error","message":"down"}}"#
                            .to_string(),
                    )
                };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Flaky {
        addr,
        hits,
        healthy,
    }
}

fn big_body(bytes: usize) -> serde_json::Value {
    let text: String = "数据 data 0123 ".chars().cycle().take(bytes).collect();
    serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":16,
        "messages":[{"role":"user","content": text}]})
}

async fn send(
    gw: &Gateway,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", TENANT_KEY)
        .json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_replays_a_1mib_body_intact_past_refused_503_and_529_endpoints() {
    let (mock, url) = start_mock();
    let dead = free_port();
    let f503 = flaky(503);
    let f529 = flaky(529);
    for first in [
        format!("http://127.0.0.1:{dead}"),
        format!("http://{}", f503.addr),
        format!("http://{}", f529.addr),
    ] {
        let gw = start_gateway_with(
            &config(
                &format!("[ {{ url: \"{first}\" }}, {{ url: \"{url}\" }} ]"),
                "[ { env: TEST_UPSTREAM_KEY, id: test-key } ]",
                "    retry: { attempts: 3, backoff: 10ms }\n",
            ),
            &url,
        );
        let body = big_body(1 << 20);
        let sent = serde_json::to_vec(&body).unwrap();
        assert!(sent.len() > 1 << 20);
        for i in 0..6 {
            mock.clear();
            let r = send(&gw, &body, &[]).await;
            assert_eq!(
                r.status(),
                200,
                "{first} request {i}: {:?}",
                r.headers().get("x-sluice-reason")
            );
            let _ = r.bytes().await;
            let seen = mock.requests();
            let got = seen
                .iter()
                .find(|r| r.path == "/v1/messages")
                .expect("the good endpoint saw it");
            assert_eq!(
                Sha256::digest(&got.body),
                Sha256::digest(&sent),
                "body replayed intact"
            );
        }
    }
    assert!(
        f503.hits.load(Ordering::SeqCst) >= 1,
        "the 503 endpoint was tried"
    );
    assert!(
        f529.hits.load(Ordering::SeqCst) >= 1,
        "the 529 endpoint was tried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_serve_only_while_no_primary_is_usable() {
    let (mock_a, url_a) = start_mock();
    let (mock_b, url_b) = start_mock();
    let gw = start_gateway_with(
        &config(
            &format!("[ {{ url: \"{url_a}\" }}, {{ url: \"{url_b}\", backup: true }} ]"),
            "[ { env: TEST_UPSTREAM_KEY } ]",
            "",
        ),
        &url_a,
    );
    for _ in 0..5 {
        assert_eq!(send(&gw, &message_body(false), &[]).await.status(), 200);
    }
    assert_eq!(mock_a.requests().len(), 5);
    assert_eq!(
        mock_b.requests().len(),
        0,
        "the backup is idle while the primary works"
    );
    drop(gw);
    let dead = free_port();
    let gw = start_gateway_with(
        &config(
            &format!(
                "[ {{ url: \"http://127.0.0.1:{dead}\" }}, {{ url: \"{url_b}\", backup: true }} ]"
            ),
            "[ { env: TEST_UPSTREAM_KEY } ]",
            "    retry: { attempts: 2, backoff: 1ms }\n",
        ),
        &url_b,
    );
    for _ in 0..5 {
        assert_eq!(send(&gw, &message_body(false), &[]).await.status(), 200);
    }
    assert_eq!(
        mock_b.requests().len(),
        5,
        "the backup serves while the primary is down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_answering_401_rests_and_a_429_key_rests_for_retry_after() {
    let (mock, url) = start_mock();
    std::env::set_var("SLUICE_RESILIENCE_DUMMY", "unused");
    let keys = "[ { file: \"{DIR}/k1\", id: k1 }, { file: \"{DIR}/k2\", id: k2 } ]";
    let tpl = config(
        &format!("[ {{ url: \"{url}\" }} ]"),
        keys,
        "    retry: { attempts: 3, backoff: 1ms }\n",
    );
    // the key files must exist before start: write them into a dir we control
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k1"), "sk-ant-key-one").unwrap();
    std::fs::write(dir.path().join("k2"), "sk-ant-key-two").unwrap();
    let gw = start_gateway_with(
        &tpl.replace("{DIR}/k", &format!("{}/k", dir.path().display())),
        &url,
    );

    // k1 is revoked upstream: every request still succeeds, k1 is tried at most once
    for _ in 0..8 {
        let r = send(
            &gw,
            &message_body(false),
            &[("x-mock-fail-key", "sk-ant-key-one=401")],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let k1_uses = mock
        .requests()
        .iter()
        .filter(|r| r.header("x-api-key") == Some("sk-ant-key-one"))
        .count();
    assert!(k1_uses <= 1, "a 401 key must rest: used {k1_uses} times");
    assert!(gw.logs().contains("key k1 answered 401"), "{}", gw.logs());

    // a reload (SIGHUP, same file) keeps k1 resting: it is not handed back to traffic
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.logs().contains("config reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mock.clear();
    for _ in 0..6 {
        let r = send(&gw, &message_body(false), &[]).await;
        assert_eq!(r.status(), 200);
    }
    let k1_after = mock
        .requests()
        .iter()
        .filter(|r| r.header("x-api-key") == Some("sk-ant-key-one"))
        .count();
    assert_eq!(k1_after, 0, "k1 must still rest after a reload");
    drop(gw);

    // fresh gateway: k2 answers 429 with retry-after 2
    let gw = start_gateway_with(
        &tpl.replace("{DIR}/k", &format!("{}/k", dir.path().display())),
        &url,
    );
    mock.clear();
    for _ in 0..4 {
        let r = send(
            &gw,
            &message_body(false),
            &[("x-mock-fail-key", "sk-ant-key-two=429:2")],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let k2 = |m: &sluice::mock::MockServer| {
        m.requests()
            .iter()
            .filter(|r| r.header("x-api-key") == Some("sk-ant-key-two"))
            .count()
    };
    assert_eq!(k2(&mock), 1, "k2 rests after its 429");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..3 {
        send(&gw, &message_body(false), &[]).await;
    }
    assert_eq!(k2(&mock), 1, "still resting 1 s later");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..4 {
        send(&gw, &message_body(false), &[]).await;
    }
    assert!(k2(&mock) >= 2, "back after its retry-after");
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_opens_skips_half_opens_and_closes() {
    let (_mock, url) = start_mock();
    let f = flaky(503);
    let gw = start_gateway_with(
        &config(
            &format!("[ {{ url: \"http://{}\" }}, {{ url: \"{url}\" }} ]", f.addr),
            "[ { env: TEST_UPSTREAM_KEY } ]",
            "    retry: { attempts: 3, backoff: 1ms }\n    circuit_breaker: { error_rate: 50%, window: 10s, min_requests: 3, open_for: 1s }\n",
        ),
        &url,
    );
    let count = |gw: &Gateway| {
        let gw_url = gw.url("/v1/messages/count_tokens");
        async move {
            client()
                .post(gw_url)
                .header("x-api-key", TENANT_KEY)
                .json(&serde_json::json!({"model":"m","messages":[{"role":"user","content":"x"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..20 {
        assert_eq!(count(&gw).await, 200);
    }
    let hits_open = f.hits.load(Ordering::SeqCst);
    assert!(
        (3..=4).contains(&hits_open),
        "circuit should open after 3 failures, saw {hits_open}"
    );
    // half-open after 1 s: exactly one probe, which fails → open again
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        assert_eq!(count(&gw).await, 200);
    }
    assert_eq!(
        f.hits.load(Ordering::SeqCst),
        hits_open + 1,
        "one half-open probe"
    );
    // the endpoint recovers: the next probe closes the circuit and traffic returns
    f.healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        assert_eq!(count(&gw).await, 200);
    }
    assert!(
        f.hits.load(Ordering::SeqCst) >= hits_open + 1 + 5,
        "closed circuit takes its share again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_user_id_sticks_to_one_key() {
    let (mock, url) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        std::fs::write(dir.path().join(format!("k{i}")), format!("sk-ant-aff-{i}")).unwrap();
    }
    let d = dir.path().display();
    let gw = start_gateway_with(
        &config(
            &format!("[ {{ url: \"{url}\" }} ]"),
            &format!("[ {{ file: \"{d}/k1\" }}, {{ file: \"{d}/k2\" }}, {{ file: \"{d}/k3\" }} ]"),
            "",
        ),
        &url,
    );
    let body = |user: &str| {
        serde_json::json!({"model":"m","max_tokens":8,"metadata":{"user_id":user},
        "messages":[{"role":"user","content":"hi"}]})
    };
    mock.clear();
    for _ in 0..6 {
        send(&gw, &body("user-a"), &[]).await;
    }
    let keys: std::collections::HashSet<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.header("x-api-key").map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 1, "one user, one key: {keys:?}");
    mock.clear();
    for u in 0..30 {
        send(&gw, &body(&format!("user-{u}")), &[]).await;
    }
    let keys: std::collections::HashSet<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.header("x-api-key").map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 3, "users spread over every key");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_retry_after_the_first_byte_and_client_disconnect_reaches_the_upstream() {
    let (mock, url) = start_mock();
    let gw = start_gateway(&url);
    // the stream breaks upstream after 3 events: the client gets an error event, and
    // the request is not retried (it would duplicate output)
    mock.clear();
    let r = send(
        &gw,
        &message_body(true),
        &[("x-mock-disconnect-after", "3")],
    )
    .await;
    let text = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
    assert!(
        text.ends_with("\"message\":\"upstream stream interrupted\"}}\n\n"),
        "{text}"
    );
    assert_eq!(
        mock.requests()
            .iter()
            .filter(|r| r.path == "/v1/messages")
            .count(),
        1,
        "no retry after the first byte"
    );

    // the client walks away mid-stream: the upstream connection closes within 1 s
    let r = send(
        &gw,
        &message_body(true),
        &[
            ("x-mock-event-delay-ms", "100"),
            ("x-mock-deltas", "50"),
            ("x-request-id", "walk-away-1"),
        ],
    )
    .await;
    let mut s = r.bytes_stream();
    let _ = s.next().await;
    let left_at = Instant::now();
    drop(s);
    let deadline = left_at + Duration::from_secs(1);
    loop {
        if let Some((_, at)) = mock
            .aborts()
            .into_iter()
            .find(|(id, _)| id == "walk-away-1")
        {
            assert!(at.duration_since(left_at) < Duration::from_secs(1));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream still streams to a client that left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = gw.access_line("walk-away-1");
    assert_eq!(line["error"], "client went away");
}

/// `cargo test --release --test resilience soak -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn soak_random_faults_before_first_byte_are_invisible() {
    let (_mock_a, url_a) = start_mock();
    let (_mock_b, url_b) = start_mock();
    let gw = start_gateway_with(
        &config(
            &format!("[ {{ url: \"{url_a}\" }}, {{ url: \"{url_b}\" }} ]"),
            "[ { env: TEST_UPSTREAM_KEY } ]",
            "    retry: { attempts: 10, backoff: 1ms, max_backoff: 20ms }\n    circuit_breaker: { enabled: false }\n    cooldown: { \"5xx\": 1ms, \"529\": 1ms }\n",
        ),
        &url_a,
    );
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let end = Instant::now() + Duration::from_secs(secs);
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .map(|l| l.to_string())
            })
            .unwrap_or_default()
    };
    let pid = gw.pid();
    let ok = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let mut rss_early = String::new();
    let mut tasks = vec![];
    for t in 0..8 {
        let (u, ok, bad) = (gw.url("/v1/messages"), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while Instant::now() < end {
                let r = c
                    .post(&u)
                    .header("x-api-key", TENANT_KEY)
                    .header("x-mock-fault-rate", "0.2")
                    .json(&message_body(t % 2 == 0))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let body = r.bytes().await.unwrap_or_default();
                        if String::from_utf8_lossy(&body).contains("event: error") {
                            if bad.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("broken stream: {}", String::from_utf8_lossy(&body));
                            }
                        } else {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => {
                        if bad.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!(
                                "failed: {} {:?}",
                                r.status(),
                                r.headers().get("x-sluice-reason")
                            );
                        }
                    }
                    Err(e) => {
                        if bad.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("client error: {e}");
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
    rss_early.push_str(&rss(pid));
    for t in tasks {
        let _ = t.await;
    }
    let rss_late = rss(pid);
    eprintln!(
        "soak {secs}s: ok {} failed {} | RSS early {rss_early} late {rss_late}",
        ok.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed)
    );
    assert_eq!(bad.load(Ordering::Relaxed), 0);
    let kb = |s: &str| {
        s.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (early, late) = (kb(&rss_early), kb(&rss_late));
    assert!(
        late <= early + (early / 4).max(8 * 1024),
        "memory grew from {early} kB to {late} kB"
    );
}
