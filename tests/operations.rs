//! Operations: hot reload under load, the zero-downtime upgrade, TLS listeners.

mod common;

use common::*;
use futures_util::StreamExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn with_burst(burst: u32) -> String {
    default_config().replace(
        "    biz: support\n",
        &format!(
            "    biz: support\n    limits:\n      requests: {{ rate: 100000/s, burst: {burst} }}\n"
        ),
    )
}

async fn limit_header(gw: &Gateway) -> String {
    let r = client()
        .post(gw.url("/v1/messages/count_tokens"))
        .header("x-api-key", TENANT_KEY)
        .json(&serde_json::json!({"model":"m","messages":[{"role":"user","content":"x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["anthropic-ratelimit-requests-limit"]
        .to_str()
        .unwrap()
        .to_string()
}

fn sighup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_lose_nothing() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(&with_burst(999), &url);
    let text_a = std::fs::read_to_string(&gw.config_path).unwrap();
    let text_b = text_a.replace("burst: 999", "burst: 499");
    let text_bad = text_a.replace("routes:", "routez:");
    assert_eq!(limit_header(&gw).await, "1000");

    // background load: plain requests and long streams
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..4 {
        let (u, stop, failures, done) = (
            gw.url("/v1/messages"),
            stop.clone(),
            failures.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .post(&u)
                    .header("x-api-key", TENANT_KEY)
                    .json(&message_body(false))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut streams = vec![];
    for i in 0..2 {
        let u = gw.url("/v1/messages");
        streams.push(tokio::spawn(async move {
            let r = client()
                .post(u)
                .header("x-api-key", TENANT_KEY)
                .header("x-mock-event-delay-ms", "80")
                .header("x-mock-deltas", "60")
                .header("x-request-id", format!("reload-stream-{i}"))
                .json(&message_body(true))
                .send()
                .await
                .unwrap();
            String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned()
        }));
    }

    for i in 0..20 {
        let (text, expect) = match i % 3 {
            0 => (&text_b, "500"),
            1 => (&text_bad, "previous"),
            _ => (&text_a, "1000"),
        };
        let before = limit_header(&gw).await;
        std::fs::write(&gw.config_path, text).unwrap();
        sighup(gw.pid());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = limit_header(&gw).await;
        if expect == "previous" {
            assert_eq!(
                now, before,
                "reload {i}: an invalid config must not replace the old one"
            );
        } else {
            assert_eq!(now, expect, "reload {i}: new limits after a valid reload");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    for s in streams {
        let text = s.await.unwrap();
        assert!(
            text.contains("event: message_stop"),
            "a stream was cut by a reload:\n{text}"
        );
        assert!(!text.contains("event: error"), "{text}");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(done.load(Ordering::Relaxed) > 50);
    let logs = gw.logs();
    assert!(logs.contains("config reload refused"), "{logs}");
    assert!(logs.contains("routez"), "the refusal names the problem");
    let m = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sluice_config_reloads_total{result=\"ok\"} 13"),
        "{m}"
    );
    assert!(
        m.contains("sluice_config_reloads_total{result=\"error\"} 7"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reload_reports_errors_and_restart_required_changes() {
    let (_mock, url) = start_mock();
    let cfg = default_config().replace(
        "admin:\n  addr: 127.0.0.1:{ADMIN}\n",
        "admin:\n  addr: 127.0.0.1:{ADMIN}\n  token: { env: TEST_UPSTREAM_KEY }\n",
    );
    let gw = start_gateway_with(&cfg, &url);
    let reload = || {
        client()
            .post(gw.admin_url("/admin/reload"))
            .header("authorization", format!("Bearer {UPSTREAM_KEY}"))
            .send()
    };
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(
        &gw.config_path,
        text.replace("max_body: 1MiB", "max_body: lots"),
    )
    .unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"], "error");
    assert!(
        v["errors"][0].as_str().unwrap().contains("invalid size"),
        "{v}"
    );
    let port = gw.port;
    std::fs::write(
        &gw.config_path,
        text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:1"),
    )
    .unwrap();
    let v: serde_json::Value = reload().await.unwrap().json().await.unwrap();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["restart_required"], serde_json::json!(["listeners"]));
    // no token: refused
    let r = client()
        .post(gw.admin_url("/admin/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_hands_over_without_refusing_a_connection() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(
        &default_config().replace("grace_period: 1s", "grace_period: 8s"),
        &url,
    );
    let old_pid = gw.pid();
    // an SSE stream that will be open across the handover (~4 s)
    let su = gw.url("/v1/messages");
    let stream = tokio::spawn(async move {
        let r = client()
            .post(su)
            .header("x-api-key", TENANT_KEY)
            .header("x-mock-event-delay-ms", "100")
            .header("x-mock-deltas", "35")
            .json(&message_body(true))
            .send()
            .await
            .unwrap();
        let mut s = r.bytes_stream();
        let mut all = Vec::new();
        while let Some(c) = s.next().await {
            all.extend_from_slice(&c.unwrap());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    // continuous requests, a fresh connection each time (so every one tests accept())
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..3 {
        let (u, stop, errors, ok) = (
            gw.url("/v1/models"),
            stop.clone(),
            errors.clone(),
            ok.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&u).header("x-api-key", TENANT_KEY).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("status {}", r.status()),
                    Err(e) => {
                        eprintln!("request error: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // the new process takes over the listening sockets
    let new = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-u", "-c"])
        .arg(&gw.config_path)
        .env("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(gw.dir.path().join("new.out")).unwrap())
        .stderr(std::fs::File::create(gw.dir.path().join("new.err")).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut new = Kill(new);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(Command::new("kill")
        .args(["-QUIT", &old_pid.to_string()])
        .status()
        .unwrap()
        .success());
    let handed_over = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "a connection was refused or reset during the upgrade"
    );
    assert!(
        ok.load(Ordering::Relaxed) > handed_over + 10,
        "the new process serves"
    );
    let text = stream.await.unwrap();
    assert!(
        text.contains("event: message_stop") && !text.contains("event: error"),
        "{text}"
    );
    // the new process is the one listening now
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "new process is running"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old process did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = new.0.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_listener_speaks_http1_and_h2() {
    let (_mock, url) = start_mock();
    let tls_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls");
    let cfg = default_config().replace(
        "  - addr: 127.0.0.1:{PORT}\n",
        &format!("  - addr: 127.0.0.1:{{PORT}}\n    tls: {{ cert: \"{tls_dir}/server.pem\", key: \"{tls_dir}/server.key\" }}\n"),
    );
    let gw = start_gateway_with(&cfg, &url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(format!("{tls_dir}/ca.pem")).unwrap())
        .unwrap();
    let https = format!("https://localhost:{}/v1/messages", gw.port);
    for (h2, want) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(ca.clone())
            .use_rustls_tls();
        if !h2 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        for stream in [false, true] {
            let r = c
                .post(&https)
                .header("x-api-key", TENANT_KEY)
                .json(&message_body(stream))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.version(), want);
            let body = r.text().await.unwrap();
            if stream {
                assert!(body.contains("event: message_stop"), "{body}");
            } else {
                assert!(body.contains("\"type\":\"message\""), "{body}");
            }
        }
        // gateway errors keep their shape over TLS too
        let r = c
            .post(&https)
            .json(&message_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-sluice-reason"], "auth.missing_key");
    }
}
