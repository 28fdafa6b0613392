//! The same arrival pattern against nginx `limit_req` and against sluice's request
//! limit, with the same rate and burst: the admitted sets must match (a difference is
//! allowed only for an arrival that falls within a few milliseconds of a bucket
//! boundary, where nginx's millisecond clock and integer milli-request arithmetic round
//! differently — see docs/limits.md).

mod common;

use common::*;
use sluice::limit::Gcra;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RATE_PER_S: u64 = 10;
const BURST: u64 = 3;

/// Arrival offsets in ms: bursts, a steady trickle, idle gaps.
// Chosen so that, apart from the last request of each burst (always admitted, a few ms
// inside the bucket), every arrival is ≥ 25 ms from a decision boundary.
const PATTERN: &[u64] = &[
    0, 0, 0, 0, 0, 0, 60, 150, 165, 275, 330, 440, 455, 470, 720, 760, 775, 1400, 1400, 1400, 1400,
    1400, 1400, 1560, 1575, 1720, 1860, 1875, 2300, 2300, 2300, 2300, 2300, 2640, 2890, 2905,
];

/// nginx in one process (`master_process off`), so killing it leaves no orphaned worker
/// behind (an orphan would keep this test's inherited file descriptors open).
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_bin() -> String {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("nginx is not installed (scripts/test.sh installs nginx-light)");
}

fn start_nginx(upstream: &str, dir: &std::path::Path) -> (Nginx, u16) {
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"
worker_processes 1;
daemon off;
master_process off;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    limit_req_zone $http_x_api_key zone=tenant:1m rate={RATE_PER_S}r/s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            limit_req zone=tenant burst={BURST} nodelay;
            limit_req_status 429;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass {upstream};
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx_bin())
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Nginx(child), port)
}

/// Send the pattern (sequentially, at its offsets) and return (admitted?, actual offset).
async fn replay(url: &str) -> Vec<(bool, u64)> {
    let c = client();
    // warm the connection so the first request pays no connect cost
    let _ = c.get(format!("{url}/__warmup")).send().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let mut out = vec![];
    for &ms in PATTERN {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            start + Duration::from_millis(ms),
        ))
        .await;
        let at = start.elapsed().as_millis() as u64;
        let r = c
            .post(format!("{url}/v1/messages/count_tokens"))
            .header("x-api-key", TENANT_KEY)
            .json(&serde_json::json!({"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"x"}]}))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        assert!(code == 200 || code == 429, "unexpected {code}");
        out.push((code == 200, at));
    }
    out
}

/// The model's decisions for the actual offsets, and each arrival's distance (ms) to
/// the nearest decision boundary.
fn model(actual: &[(bool, u64)]) -> Vec<(bool, u64)> {
    const MS: u64 = 1_000_000;
    let g = Gcra::requests(RATE_PER_S, 1_000_000_000, BURST);
    let mut tat = 0;
    actual
        .iter()
        .map(|&(_, at)| {
            let now = 1_000_000 * MS + at * MS;
            let c = g.check(tat, now, 1);
            let margin = if c.allowed {
                tat = c.new_tat;
                g.tau() - (c.new_tat - now)
            } else {
                c.retry_after_ns
            };
            (c.allowed, margin / MS)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sluice_admits_what_nginx_limit_req_admits() {
    let (_mock, mock_url) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, nginx_port) = start_nginx(&mock_url, dir.path());
    let gw = start_gateway_with(
        &default_config().replace(
            "    biz: support\n",
            &format!("    biz: support\n    limits:\n      requests: {{ rate: {RATE_PER_S}/s, burst: {BURST} }}\n"),
        ),
        &mock_url,
    );

    let via_nginx = replay(&format!("http://127.0.0.1:{nginx_port}")).await;
    let via_sluice = replay(&gw.url("")).await;

    let mut report = String::new();
    let mut mismatches = 0;
    let m_n = model(&via_nginx);
    let m_s = model(&via_sluice);
    for i in 0..PATTERN.len() {
        let (n, at_n) = via_nginx[i];
        let (s, at_s) = via_sluice[i];
        let edge = m_n[i].1 < 5 || m_s[i].1 < 5 || at_n.abs_diff(at_s) > 5;
        report.push_str(&format!(
            "#{i:02} planned {:>4} ms  nginx {} @{at_n}  sluice {} @{at_s}  margin {}ms{}\n",
            PATTERN[i],
            if n { "pass" } else { "429 " },
            if s { "pass" } else { "429 " },
            m_s[i].1,
            if edge { " (edge)" } else { "" }
        ));
        if n != s {
            assert!(
                edge,
                "sluice and nginx disagree away from any boundary:\n{report}"
            );
            mismatches += 1;
        }
    }
    eprintln!("{report}");
    assert!(mismatches <= 1, "too many edge disagreements:\n{report}");
    // the pattern really exercises the limit
    let admitted = via_sluice.iter().filter(|x| x.0).count();
    assert!(admitted > 10 && admitted < PATTERN.len() - 5, "{report}");
    // and sluice's decisions are exactly the model's on its own timeline
    for (i, ((s, _), (m, margin))) in via_sluice.iter().zip(&m_s).enumerate() {
        assert!(
            s == m || *margin < 5,
            "#{i} differs from the model:\n{report}"
        );
    }
}
