//! TLS to the upstream: certificate verification with SNI, and a private CA via
//! `tls.ca_file`. The upstream is `openssl s_server -WWW` serving files.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The s_server process and the directory it serves (kept alive with it).
struct SServer {
    child: Child,
    _root: tempfile::TempDir,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls").to_string()
}

/// `openssl s_server` answering `GET /v1/models` with a JSON file.
fn start_tls_upstream() -> Option<(SServer, u16)> {
    let root = tempfile::tempdir().ok()?;
    std::fs::create_dir_all(root.path().join("v1")).ok()?;
    std::fs::write(
        root.path().join("v1/models"),
        br#"{"data":[{"id":"via-tls"}]}"#,
    )
    .ok()?;
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(format!("{}/server.pem", tls_dir()))
        .arg("-key")
        .arg(format!("{}/server.key", tls_dir()))
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = SServer { child, _root: root };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, port))
}

fn config_with_tls(tls: &str) -> String {
    default_config().replace(
        "    set_headers:",
        &format!("    tls: {tls}\n    set_headers:"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verifies_upstream_certificates_with_a_private_ca() {
    let (_srv, port) =
        start_tls_upstream().expect("openssl s_server (install the openssl package)");
    let url = format!("https://localhost:{port}");

    // Trusted through ca_file: works, and the body arrives intact.
    let cfg = config_with_tls(&format!("{{ ca_file: \"{}/ca.pem\" }}", tls_dir()));
    let gw = start_gateway_with(&cfg, &url);
    let r = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", gw.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"][0]["id"], "via-tls");
    drop(gw);

    // Not trusted (system CAs only): refused before any request is sent.
    let gw = start_gateway(&url);
    let r = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-sluice-reason"], "upstream.unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostname_must_match_the_certificate() {
    let (_srv, port) = start_tls_upstream().expect("openssl s_server");
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2 (still loopback).
    let cfg = config_with_tls(&format!("{{ ca_file: \"{}/ca.pem\" }}", tls_dir()));
    let gw = start_gateway_with(&cfg, &format!("https://127.0.0.2:{port}"));
    let r = client()
        .get(gw.url("/v1/models"))
        .header("x-api-key", TENANT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "{}", gw.logs());
}
