//! `sluice import-nginx FILE`: a realistic OpenResty Claude relay becomes a sluice
//! config that `sluice -t` accepts, without ever copying the inline key.

use std::path::Path;
use std::process::Command;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/nginx/seed_relay.conf"
);
const INLINE_KEY: &str = "sk-ant-REDACTED-EXAMPLE";

fn import(file: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import-nginx", file])
        .output()
        .expect("run sluice import-nginx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seed_relay_is_translated() {
    let (code, yaml, err) = import(SEED);
    assert_eq!(code, 0, "{err}");
    for want in [
        "threads: 2",
        "  - addr: 0.0.0.0:443\n    tls: { cert: /etc/ssl/certs/claude.example.com.pem, key: /etc/ssl/private/claude.example.com.key }\n    keepalive: { idle: 65s }\n",
        "      - url: https://api.anthropic.com\n",
        "      - { url: https://claude-relay.example.com, backup: true }\n",
        "    keys:\n      - env: ANTHROPIC_API_KEY\n",
        "anthropic_version: \"2023-06-01\"",
        "timeouts: { connect: 10s, first_byte: 300s, idle: 300s }",
        "pool: { size: 64 }",
        "retry: { on: [connect, timeout, 502, 503] }",
        "circuit_breaker: { min_requests: 3, error_rate: 50%, window: 30s, open_for: 30s }",
        "  - { path: /v1/messages, methods: [POST], upstream: anthropic }\n",
        "  - { path: /v1/messages/count_tokens, methods: [POST], upstream: anthropic }\n",
        "  - { path: /v1/models, methods: [GET], upstream: anthropic, prefix: true }\n",
        "max_body: 20MiB",
        "client_ip: { rate: 60/m, burst: 10 }",
        "trusted_proxies: [10.0.0.0/8, 172.16.0.0/12]",
        "  - name: default\n    keys:\n      - env: SLUICE_TENANT_KEY\n    ip_allow: [203.0.113.0/24, 198.51.100.7]\n",
        "access: { path: /var/log/nginx/claude_access.log, format: json }",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }
    assert!(yaml.ends_with('\n'));
    // The redirect server's port 80 is not a listener; filters are only suggested.
    assert!(!yaml.contains("0.0.0.0:80\n"), "{yaml}");
    assert!(!yaml.contains("filters"), "{yaml}");

    // Never the inline key, anywhere.
    assert!(!yaml.contains(INLINE_KEY), "{yaml}");
    assert!(!err.contains(INLINE_KEY), "{err}");
    assert!(!yaml.contains("team-a-key-123") && !err.contains("team-a-key-123"));

    // Every warning is FILE:LINE: level: message.
    let file_prefix = format!("{SEED}:");
    for l in err.lines() {
        assert!(l.starts_with(&file_prefix), "{l}");
        assert!(l.contains(": warning: ") || l.contains(": info: "), "{l}");
    }
    let line_of =
        |needle: &str| -> Vec<&str> { err.lines().filter(|l| l.contains(needle)).collect() };
    // The inline key (line 109 of the fixture).
    let key = line_of("the key was inline in nginx.conf");
    assert_eq!(key.len(), 1, "{err}");
    assert!(
        key[0].starts_with(&format!("{SEED}:109: warning:")),
        "{}",
        key[0]
    );
    assert!(key[0].contains("ANTHROPIC_API_KEY"), "{}", key[0]);
    // The Lua redaction, with the snippet to add.
    let red = line_of("filters.request.redact");
    assert_eq!(red.len(), 1, "{err}");
    assert!(red[0].contains("rewrite_by_lua_block"), "{}", red[0]);
    assert!(
        red[0].contains("filters: { request: { redact: [cn_id_card, bank_card] } }"),
        "{}",
        red[0]
    );
    // The Lua key check, the tenant skeleton, the allowlist and the untranslated bits.
    assert!(err.contains("key check → tenants[].keys"), "{err}");
    assert!(err.contains("sluice keygen"), "{err}");
    assert!(err.contains("allowlist"), "{err}");
    assert!(
        err.contains("include /etc/nginx/mime.types not followed"),
        "{err}"
    );
    assert!(err.contains("not translated: ssl_protocols"), "{err}");
    assert!(err.contains("not translated: lua_shared_dict"), "{err}");
    assert!(err.contains("not translated: return"), "{err}");
    assert!(err.contains("proxy_send_timeout not translated"), "{err}");
    assert!(err.contains("approximate"), "{err}");
    assert!(
        err.contains(": info: not needed: sluice always streams"),
        "{err}"
    );
}

#[test]
fn translated_seed_passes_sluice_t() {
    let (code, yaml, err) = import(SEED);
    assert_eq!(code, 0, "{err}");
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    // Only what exists on the nginx host and not here: the certificate files and the
    // log directory.
    let yaml = yaml
        .replace(
            "/etc/ssl/certs/claude.example.com.pem",
            &format!("{root}/tests/data/tls/server.pem"),
        )
        .replace(
            "/etc/ssl/private/claude.example.com.key",
            &format!("{root}/tests/data/tls/server.key"),
        )
        .replace(
            "/var/log/nginx/claude_access.log",
            &dir.path().join("access.log").display().to_string(),
        );
    let conf = dir.path().join("sluice.yaml");
    std::fs::write(&conf, &yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c"])
        .arg(&conf)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-only")
        .env("SLUICE_TENANT_KEY", "sk-sluice-test-only")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice -t refused the translation:\n{}\n---\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));

    // The redaction snippet the warning suggests is exact: appended, it still passes.
    let snippet = err
        .lines()
        .find(|l| l.contains("filters.request.redact"))
        .and_then(|l| l.split(" — add: ").nth(1))
        .expect("a redaction warning with a snippet");
    std::fs::write(&conf, format!("{yaml}{snippet}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c"])
        .arg(&conf)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-only")
        .env("SLUICE_TENANT_KEY", "sk-sluice-test-only")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "with {snippet}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unreadable_or_invalid_files_exit_1() {
    let (code, out, err) = import("/nonexistent/nginx.conf");
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with("/nonexistent/nginx.conf: error: cannot read"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.conf");
    std::fs::write(&p, "http {\n  server {\n    listen 80;\n").unwrap();
    let f = p.display().to_string();
    let (code, out, err) = import(&f);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.starts_with(&format!("{f}:2: error:")), "{err}");
    assert!(Path::new(&f).exists());
}
