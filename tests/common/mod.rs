//! Test harness: the real `sluice` binary on ephemeral ports in front of the in-process
//! mock upstream (or a raw byte-exact upstream), with its logs captured for assertions.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TENANT_KEY: &str = "sk-sluice-test-tenant-key-0123456789abcdef";
pub const OTHER_TENANT_KEY: &str = "sk-sluice-test-other-key-fedcba9876543210";
pub const UPSTREAM_KEY: &str = "sk-ant-upstream-SECRET-value-42";

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    /// Everything the process wrote to stdout (access log) and stderr (error log).
    pub fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default(),
        );
        s
    }

    /// Access log lines as JSON.
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("stdout.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access log line for `request_id`, waiting briefly for it to be written.
    pub fn access_line(&self, request_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = self
                .access_lines()
                .into_iter()
                .find(|v| v["request_id"] == request_id)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no access log line for {request_id}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Config text with `{UPSTREAM}`, `{PORT}`, `{ADMIN}`, `{TENANT_SHA}`, `{OTHER_SHA}`
/// placeholders filled in.
pub fn default_config() -> &'static str {
    r#"
server: { threads: 2, grace_period: 1s, pid_file: "{DIR}/sluice.pid", upgrade_sock: "{DIR}/upgrade.sock" }
listeners:
  - addr: 127.0.0.1:{PORT}
admin:
  addr: 127.0.0.1:{ADMIN}
upstreams:
  main:
    endpoints: [ { url: "{UPSTREAM}" } ]
    keys: [ { env: TEST_UPSTREAM_KEY, id: test-key } ]
    set_headers: { X-Claude-Timezone: Asia/Shanghai }
    timeouts: { connect: 1s, first_byte: 2s, idle: 1s, total: 30s }
routes:
  - { path: /v1/messages, methods: [POST], upstream: main }
  - { path: /v1/messages/count_tokens, methods: [POST], upstream: main }
  - { path: /v1/models, methods: [GET], upstream: main, prefix: true }
limits:
  max_body: 1MiB
tenants:
  - name: team-a
    biz: support
    keys: [ { sha256: "{TENANT_SHA}" } ]
  - name: team-b
    keys: [ { sha256: "{OTHER_SHA}" } ]
    ip_allow: [ 203.0.113.0/24 ]
    models: [ claude-haiku-* ]
"#
}

pub fn start_gateway(upstream_url: &str) -> Gateway {
    start_gateway_with(default_config(), upstream_url)
}

pub fn start_gateway_with(template: &str, upstream_url: &str) -> Gateway {
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let admin_port = free_port();
        let text = template
            .replace("{UPSTREAM}", upstream_url)
            .replace("{PORT}", &port.to_string())
            .replace("{ADMIN}", &admin_port.to_string())
            .replace("{DIR}", &dir.path().display().to_string())
            .replace("{TENANT_SHA}", &sha256_hex(TENANT_KEY))
            .replace("{OTHER_SHA}", &sha256_hex(OTHER_TENANT_KEY));
        let config_path = dir.path().join("sluice.yaml");
        std::fs::write(&config_path, text).expect("write config");
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("log");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("-c")
            .arg(&config_path)
            .env("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn sluice");
        let mut gw = Gateway {
            child,
            port,
            admin_port,
            dir,
            config_path,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = gw.child.try_wait() {
                break; // exited: port clash or bad config; retry with new ports
            }
            if http_get_status(admin_port, "/healthz") == Some(200)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return gw;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        eprintln!("gateway did not come up, retrying:\n{}", gw.logs());
    }
    panic!("gateway failed to start");
}

fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start the mock upstream in-process; returns it and its base URL.
pub fn start_mock() -> (sluice::mock::MockServer, String) {
    let mock = sluice::mock::spawn_background(sluice::mock::MockConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        latency: Duration::ZERO,
    })
    .expect("mock upstream");
    let url = format!("http://{}", mock.addr());
    (mock, url)
}

/// An upstream that answers every request with exactly `response` (raw HTTP bytes,
/// written in `chunks` pieces with `gap` between them), for byte-exact comparisons.
pub fn raw_upstream(response: Vec<u8>, pieces: usize, gap: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let response = response.clone();
            std::thread::spawn(move || {
                if !read_request(&mut c, &mut Vec::new()) {
                    return;
                }
                let step = response.len().div_ceil(pieces.max(1)).max(1);
                for piece in response.chunks(step) {
                    if c.write_all(piece).and_then(|_| c.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(gap);
                }
                std::thread::sleep(Duration::from_millis(200));
            });
        }
    });
    addr
}

/// Read one HTTP/1.1 request (head plus a content-length body) from `c` into `buf`, and
/// take it off `buf`, leaving whatever followed it for the next call. `false` when the
/// connection closed, failed or timed out first.
pub fn read_request(c: &mut impl Read, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + cl {
                buf.drain(..end + 4 + cl);
                return true;
            }
        }
        match c.read(&mut tmp) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Wrap `body` in an HTTP/1.1 response using chunked encoding with the given chunk size.
pub fn chunked_response(head: &str, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    for c in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

pub fn message_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hello, 你好 — please answer"}]
    })
}

/// A real `redis-server` on an ephemeral port, for shared-state tests.
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start (again) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("redis-server is not installed (scripts/test.sh installs it)");
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One parsed response.
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Read one response: interim (1xx) heads are returned too. Bodies are de-chunked;
/// without a length or chunking, read until the server closes.
pub fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line: {line:?}");
    let status: u16 = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
        let (k, v) = l.split_once(':').expect("header line");
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let mut body = Vec::new();
    if (100..200).contains(&status) {
    } else if let Some(n) = headers.get("content-length") {
        body = vec![0; n.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            assert_eq!(&chunk[n..], b"\r\n");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body,
    }
}
