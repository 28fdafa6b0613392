//! The status page's server side: sign-in with the admin token (session cookie, never the
//! token), `/admin/status` numbers against a known mix of traffic, sign-out, and the
//! token never echoed in a response or a log line. (The page itself, in a browser:
//! tests/sdk/test_status_page.py.)

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
server: { threads: 2, grace_period: 1s, pid_file: "{DIR}/sluice.pid", upgrade_sock: "{DIR}/upgrade.sock" }
listeners:
  - addr: 127.0.0.1:{PORT}
admin:
  addr: 127.0.0.1:{ADMIN}
  token: { env: TEST_UPSTREAM_KEY }
upstreams:
  main:
    endpoints: [ { url: "{UPSTREAM}" } ]
    keys: [ { env: TEST_UPSTREAM_KEY, id: test-key } ]
    timeouts: { connect: 1s, first_byte: 2s, idle: 1s, total: 30s }
routes:
  - { path: /v1/messages, methods: [POST], upstream: main }
tenants:
  - name: team-a
    keys: [ { sha256: "{TENANT_SHA}" } ]
    limits:
      concurrency: 4
      quota: { daily_requests: 100, daily_tokens: 100000 }
  - name: team-b
    keys: [ { sha256: "{OTHER_SHA}" } ]
    limits:
      requests: { rate: 1/m, burst: 0 }
"#;

/// The admin token (the harness passes it as TEST_UPSTREAM_KEY; it is also the upstream
/// key, which must not leak either).
const TOKEN: &str = UPSTREAM_KEY;

struct Seen {
    /// Every admin response: status line, headers and body, for the leak check.
    transcript: String,
}

impl Seen {
    async fn take(&mut self, r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String) {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        self.transcript
            .push_str(&format!("{status}\n{headers:?}\n{body}\n"));
        (status, headers, body)
    }
}

async fn message(gw: &Gateway, key: &str, id: &str, extra: &[(&str, &str)], stream: bool) -> u16 {
    let mut req = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .header("x-request-id", id)
        .json(&message_body(stream));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await.unwrap();
    status
}

fn cookie_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get("set-cookie")?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_login_status_numbers_and_logout() {
    let (_mock, url) = start_mock();
    let gw = start_gateway_with(CONFIG, &url);
    let mut seen = Seen {
        transcript: String::new(),
    };

    // ---- traffic: 5 successes (one streamed), a 401, a 429, an upstream 529 ----
    for i in 0..3 {
        assert_eq!(
            message(&gw, TENANT_KEY, &format!("st-ok-{i}"), &[], false).await,
            200
        );
    }
    assert_eq!(message(&gw, TENANT_KEY, "st-stream", &[], true).await, 200);
    assert_eq!(
        message(&gw, "sk-sluice-not-a-key", "st-401", &[], false).await,
        401
    );
    assert_eq!(
        message(&gw, OTHER_TENANT_KEY, "st-b-ok", &[], false).await,
        200
    );
    assert_eq!(
        message(&gw, OTHER_TENANT_KEY, "st-429", &[], false).await,
        429
    );
    assert_eq!(
        message(
            &gw,
            TENANT_KEY,
            "st-529",
            &[("x-mock-status", "529")],
            false
        )
        .await,
        529
    );
    // the access log is written after the answer: wait until all 8 are there
    for id in [
        "st-ok-0",
        "st-ok-1",
        "st-ok-2",
        "st-stream",
        "st-401",
        "st-b-ok",
        "st-429",
        "st-529",
    ] {
        gw.access_line(id);
    }
    // tokens team-a really used, as counted against limits (input + cache writes + output)
    let team_a_tokens: u64 = gw
        .access_lines()
        .iter()
        .filter(|l| l["tenant"] == "team-a")
        .filter_map(|l| l.get("usage").filter(|u| !u.is_null()))
        .map(|u| {
            u["input_tokens"].as_u64().unwrap()
                + u["output_tokens"].as_u64().unwrap()
                + u["cache_creation_input_tokens"].as_u64().unwrap_or(0)
        })
        .sum();
    assert!(team_a_tokens > 0);

    let c = client();
    // ---- no token, no cookie: 401 and no data ----
    let (st, _, body) = seen
        .take(c.get(gw.admin_url("/admin/status")).send().await.unwrap())
        .await;
    assert_eq!(st, 401);
    assert!(
        !body.contains("team-a") && !body.contains("tenants"),
        "{body}"
    );
    // a made-up cookie does not help
    let fake = format!("sluice_admin={}", "ab".repeat(32));
    let (st, _, _) = seen
        .take(
            c.get(gw.admin_url("/admin/status"))
                .header("cookie", &fake)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 401);

    // ---- the page: embedded, no external asset, signed out ----
    let (st, h, page) = seen
        .take(c.get(gw.admin_url("/")).send().await.unwrap())
        .await;
    assert_eq!(st, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(page.contains("data-signed-in=\"no\"") && page.contains("/status.js"));
    assert!(!page.contains("team-a"), "the page itself carries no data");
    for asset in ["/status.js", "/status.css"] {
        let (st, _, text) = seen
            .take(c.get(gw.admin_url(asset)).send().await.unwrap())
            .await;
        assert_eq!(st, 200, "{asset}");
        let text = text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset}"
        );
    }

    // ---- wrong token: 401, no cookie; form and JSON ----
    let (st, h, body) = seen
        .take(
            c.post(gw.admin_url("/admin/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("token=wrong-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 401);
    assert!(h.get("set-cookie").is_none());
    assert!(body.contains("wrong token"), "{body}");
    let (st, h, _) = seen
        .take(
            c.post(gw.admin_url("/admin/login"))
                .json(&serde_json::json!({ "token": format!("{TOKEN}x") }))
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 401);
    assert!(h.get("set-cookie").is_none());
    let (st, _, _) = seen
        .take(c.get(gw.admin_url("/admin/login")).send().await.unwrap())
        .await;
    assert_eq!(st, 405, "login is POST only");

    // ---- right token: HttpOnly, SameSite=Strict session cookie, not the token ----
    let form = format!("token={}", TOKEN.replace('-', "%2D"));
    let (st, h, body) = seen
        .take(
            c.post(gw.admin_url("/admin/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let set_cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    let cookie = cookie_of(&h).unwrap();
    let id = cookie.strip_prefix("sluice_admin=").unwrap();
    assert_eq!(id.len(), 64, "256-bit random id: {cookie}");
    assert!(!cookie.contains(TOKEN));

    // the page now knows it is signed in
    let (_, _, page) = seen
        .take(
            c.get(gw.admin_url("/"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert!(page.contains("data-signed-in=\"yes\""));

    // ---- /admin/status with the cookie: the numbers of the traffic above ----
    let (st, h, body) = seen
        .take(
            c.get(gw.admin_url("/admin/status"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let s: Value = serde_json::from_str(&body).unwrap();

    let o = &s["overview"];
    for window in ["last_minute", "last_15m"] {
        let w = &o[window];
        assert_eq!(w["requests"], 8, "{window}: {w}");
        assert_eq!(w["ok"], 5, "{window}");
        assert_eq!(w["client_errors"], 2, "{window}");
        assert_eq!(w["server_errors"], 1, "{window}");
        assert_eq!(w["success_rate"], 0.625, "{window}");
        assert_eq!(w["rejections"], 2, "{window}");
        assert_eq!(w["upstream_errors"], 1, "{window}");
        for q in ["latency_ms", "ttfb_ms", "overhead_ms"] {
            let p50 = w[q]["p50"].as_f64().unwrap();
            let p99 = w[q]["p99"].as_f64().unwrap();
            assert!(p50 > 0.0 && p50 <= p99, "{window} {q}: {p50} {p99}");
            assert!(p99 < 5_000.0, "{window} {q}: {p99}");
        }
    }
    assert_eq!(o["last_minute"]["rps"], 0.13, "8 requests / 60 s");
    assert_eq!(o["last_15m"]["rps"], 0.01, "8 requests / 900 s");
    assert_eq!(o["requests_since_start"], 8);
    assert_eq!(o["active_streams"], 0);
    let series = &s["series"];
    assert_eq!(series["requests"].as_array().unwrap().len(), 90);
    let in_series: u64 = series["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(in_series, 8);
    assert_eq!(s["history"]["slot_secs"], 10);
    assert_eq!(s["history"]["slots"], 90);

    let tenant = |name: &str| -> Value {
        s["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("tenant {name:?} in {}", s["tenants"]))
            .clone()
    };
    let a = tenant("team-a");
    assert_eq!(a["requests_today"], 5);
    assert_eq!(a["tokens_today"], team_a_tokens);
    assert_eq!(a["tokens_per_min"], team_a_tokens);
    assert_eq!(a["requests_per_min"], 5);
    assert_eq!(a["quota"]["daily_requests"], 100);
    assert_eq!(a["quota"]["daily_tokens"], 100000);
    assert_eq!(a["quota"]["requests_used"], 0.05);
    assert_eq!(
        a["concurrency"],
        serde_json::json!({ "active": 0, "limit": 4 })
    );
    assert_eq!(a["rejections"], serde_json::json!({}));
    let b = tenant("team-b");
    assert_eq!(b["requests_today"], 2);
    assert_eq!(
        b["rejections"],
        serde_json::json!({ "limit.tenant.requests": 1 })
    );
    assert_eq!(b["concurrency"]["limit"], Value::Null);
    let anon = tenant("");
    assert_eq!(anon["configured"], false);
    assert_eq!(anon["requests_today"], 1);
    assert_eq!(
        anon["rejections"],
        serde_json::json!({ "auth.invalid_key": 1 })
    );

    let up = &s["upstreams"][0];
    assert_eq!(up["name"], "main");
    // per try: 5 successes, and the 529 tried 3 times (default retry: 3 attempts on 529)
    assert_eq!(up["tries"], 8, "{up}");
    assert_eq!(up["retries"], 2, "{up}");
    assert_eq!(
        up["errors"],
        serde_json::json!({ "4xx": 0, "5xx": 3, "connect": 0, "timeout": 0 })
    );
    assert_eq!(up["endpoints"][0]["url"], url.as_str());
    assert_eq!(up["endpoints"][0]["circuit"], "closed");
    assert_eq!(up["endpoints"][0]["healthy"], true);
    let key = &up["keys"][0];
    assert_eq!(key["id"], "test-key");
    assert_eq!(key["state"], "cooling", "529 rests the key for 30 s: {key}");
    let left = key["cooldown_left_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{left}");

    assert_eq!(s["config"]["file"], gw.config_path.display().to_string());
    assert!(s["config"]["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s["config"]["reloads"], serde_json::json!([]));

    let rej = s["recent"]["rejections"].as_array().unwrap();
    assert_eq!(rej.len(), 2, "{rej:?}");
    assert_eq!(rej[0]["request_id"], "st-429", "newest first");
    assert_eq!(rej[0]["tenant"], "team-b");
    assert_eq!(rej[0]["status"], 429);
    assert_eq!(rej[0]["reason"], "limit.tenant.requests");
    assert_eq!(rej[1]["request_id"], "st-401");
    assert_eq!(rej[1]["tenant"], "");
    assert_eq!(rej[1]["reason"], "auth.invalid_key");
    let ue = s["recent"]["upstream_errors"].as_array().unwrap();
    assert_eq!(ue.len(), 1, "{ue:?}");
    assert_eq!(ue[0]["request_id"], "st-529");
    assert_eq!(ue[0]["tenant"], "team-a");
    assert_eq!(ue[0]["status"], 529);
    assert_eq!(ue[0]["upstream_status"], 529);
    assert_eq!(ue[0]["upstream"], "main");

    // the Bearer token works as before, with the same data
    let (st, _, body) = seen
        .take(
            c.get(gw.admin_url("/admin/status"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 200);
    let s2: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s2["overview"]["last_15m"]["requests"], 8);

    // ---- the cookie works for the other admin endpoints: a refused reload shows up ----
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, text.replace("routes:", "routez:")).unwrap();
    let (st, _, _) = seen
        .take(
            c.post(gw.admin_url("/admin/reload"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 422);
    std::fs::write(&gw.config_path, &text).unwrap();
    let (_, _, body) = seen
        .take(
            c.get(gw.admin_url("/admin/status"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    let s3: Value = serde_json::from_str(&body).unwrap();
    let reloads = s3["config"]["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 1);
    assert_eq!(reloads[0]["result"], "error");
    assert!(
        reloads[0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("sluice.yaml:"),
        "{reloads:?}"
    );

    // ---- auth failures counted: no-token status, fake cookie, two wrong logins ----
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "sluice_admin_auth_failures_total 4"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("auth_failures"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // ---- sign out: the cookie is dead ----
    let (st, h, _) = seen
        .take(
            c.post(gw.admin_url("/admin/logout"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 200);
    assert!(h["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (st, _, body) = seen
        .take(
            c.get(gw.admin_url("/admin/status"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(st, 401);
    assert!(!body.contains("tenants"));

    // ---- the token is in no response and no log line ----
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !seen.transcript.contains(TOKEN),
        "token in an admin response"
    );
    let logs = gw.logs();
    assert!(!logs.contains(TOKEN), "token in the logs");
    assert!(logs.contains("admin login refused: wrong token"), "{logs}");
    assert!(!logs.contains("sk-sluice-not-a-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_without_admin_token_is_disabled() {
    let (_mock, url) = start_mock();
    let gw = start_gateway(&url);
    let c = client();
    // the page loads (it shows the "disabled" message), the data does not
    assert_eq!(c.get(gw.admin_url("/")).send().await.unwrap().status(), 200);
    let r = c
        .post(gw.admin_url("/admin/login"))
        .body("token=anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(
        c.get(gw.admin_url("/admin/status"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}
