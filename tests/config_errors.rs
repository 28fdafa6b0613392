//! `sluice -t`: one case per class of config error, each reported as FILE:LINE:COL with
//! the right message, exit 1.

use std::process::Command;

const VALID: &str = r#"listeners:
  - addr: 127.0.0.1:18080
admin:
  addr: 127.0.0.1:19090
upstreams:
  anthropic:
    endpoints:
      - url: https://api.anthropic.com
    keys:
      - env: CFG_TEST_UPSTREAM_KEY
    timeouts: { connect: 5s, first_byte: 60s }
routes:
  - { path: /v1/messages, methods: [POST], upstream: anthropic }
limits:
  max_body: 32MiB
tenants:
  - name: team-a
    keys: [ { sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ]
    ip_allow: [ 10.0.0.0/8 ]
    limits:
      requests: { rate: 100/m, burst: 20 }
"#;

/// Run `sluice -t` on `text`; returns (exit code, stdout, stderr, file path).
fn check(text: &str) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sluice.yaml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c"])
        .arg(&p)
        .env("CFG_TEST_UPSTREAM_KEY", "sk-ant-x")
        .env_remove("CFG_TEST_UNSET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        p.display().to_string(),
    )
}

/// `VALID` with `from` replaced by `to` must fail at `line` with `fragment`.
fn expect(from: &str, to: &str, line: usize, fragment: &str) {
    assert!(
        VALID.contains(from),
        "test setup: `{from}` not in the base config"
    );
    let (code, _, err, file) = check(&VALID.replacen(from, to, 1));
    assert_eq!(code, 1, "{err}");
    let hit = err
        .lines()
        .find(|l| l.starts_with(&format!("{file}:{line}:")) && l.contains(fragment));
    assert!(
        hit.is_some(),
        "expected `{file}:{line}:… {fragment}` in:\n{err}"
    );
}

#[test]
fn the_base_config_is_valid() {
    let (code, out, err, _) = check(VALID);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration is valid"));
}

#[test]
fn yaml_syntax() {
    expect("routes:\n", "routes: [\n", 13, "did not find expected");
}

#[test]
fn unknown_key() {
    expect(
        "  max_body: 32MiB",
        "  max_bodi: 32MiB",
        15,
        "unknown field `max_bodi`",
    );
}

#[test]
fn wrong_type() {
    expect(
        "    timeouts:",
        "    http2: maybe\n    timeouts:",
        11,
        "invalid type",
    );
}

#[test]
fn bad_duration() {
    expect("connect: 5s", "connect: 5 moons", 11, "invalid duration");
}

#[test]
fn duration_without_unit() {
    expect("connect: 5s", "connect: 5", 11, "has no unit");
}

#[test]
fn bad_size() {
    expect("max_body: 32MiB", "max_body: 32 lots", 15, "invalid size");
}

#[test]
fn bad_rate() {
    expect("rate: 100/m", "rate: 100/fortnight", 21, "invalid rate");
}

#[test]
fn bad_percent() {
    expect(
        "      requests: { rate: 100/m, burst: 20 }",
        "      quota: { daily_tokens: 10, warn_at: 180% }",
        21,
        "percentage",
    );
}

#[test]
fn missing_env_secret() {
    expect(
        "env: CFG_TEST_UPSTREAM_KEY",
        "env: CFG_TEST_UNSET",
        10,
        "`CFG_TEST_UNSET` is not set",
    );
}

#[test]
fn unreadable_secret_file() {
    expect(
        "env: CFG_TEST_UPSTREAM_KEY",
        "file: /nonexistent/key",
        10,
        "cannot read secret file",
    );
}

#[test]
fn inline_or_ambiguous_secret() {
    expect(
        "      - env: CFG_TEST_UPSTREAM_KEY",
        "      - { env: CFG_TEST_UPSTREAM_KEY, file: /x }",
        10,
        "either `env` or `file`",
    );
}

#[test]
fn route_names_unknown_upstream() {
    expect(
        "upstream: anthropic }",
        "upstream: anthropik }",
        13,
        "unknown upstream `anthropik`",
    );
}

#[test]
fn invalid_cidr() {
    expect(
        "ip_allow: [ 10.0.0.0/8 ]",
        "ip_allow: [ 10.0.0.0/40 ]",
        19,
        "invalid CIDR",
    );
}

#[test]
fn invalid_trusted_proxy() {
    expect(
        "  max_body: 32MiB",
        "  max_body: 32MiB\n  trusted_proxies: [ nowhere ]",
        16,
        "invalid CIDR",
    );
}

#[test]
fn bad_listener_address() {
    expect(
        "addr: 127.0.0.1:18080",
        "addr: localhost",
        2,
        "invalid address",
    );
}

#[test]
fn admin_on_a_listener_address() {
    expect(
        "addr: 127.0.0.1:19090",
        "addr: 127.0.0.1:18080",
        4,
        "must differ",
    );
}

#[test]
fn bad_endpoint_url() {
    expect(
        "url: https://api.anthropic.com",
        "url: ftp://api.anthropic.com",
        8,
        "http:// or https://",
    );
}

#[test]
fn only_backup_endpoints() {
    expect(
        "url: https://api.anthropic.com",
        "url: https://api.anthropic.com\n        backup: true",
        8,
        "at least one must be a primary",
    );
}

#[test]
fn bad_sha256() {
    expect(
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "abc",
        18,
        "64 hex",
    );
}

#[test]
fn duplicate_tenant() {
    expect(
        "  - name: team-a\n",
        "  - name: team-a\n    keys: [ { sha256: \"0000000000000000000000000000000000000000000000000000000000000001\" } ]\n  - name: team-a\n",
        19,
        "defined twice",
    );
}

#[test]
fn bad_retry_entry() {
    expect(
        "    timeouts:",
        "    retry: { on: [connect, sometimes] }\n    timeouts:",
        11,
        "retry.on",
    );
}

#[test]
fn bad_cooldown_key() {
    expect(
        "    timeouts:",
        "    cooldown: { \"2xx\": 1s }\n    timeouts:",
        11,
        "cooldown key",
    );
}

#[test]
fn bad_utc_offset() {
    expect(
        "      requests: { rate: 100/m, burst: 20 }",
        "      quota: { daily_tokens: 10, utc_offset: \"Mars\" }",
        21,
        "UTC offset",
    );
}

#[test]
fn missing_tls_certificate() {
    expect(
        "  - addr: 127.0.0.1:18080",
        "  - addr: 127.0.0.1:18080\n    tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem }",
        3,
        "cannot read `/nonexistent/c.pem`",
    );
}

#[test]
fn bad_state_url() {
    expect(
        "listeners:",
        "state: postgres://db\nlisteners:",
        1,
        "state must be",
    );
}

#[test]
fn missing_log_directory() {
    expect(
        "  max_body: 32MiB\n",
        "  max_body: 32MiB\nlogging:\n  access: { path: /nonexistent/dir/access.log }\n",
        17,
        "does not exist",
    );
}

#[test]
fn forbidden_set_header() {
    expect(
        "    timeouts:",
        "    set_headers: { x-api-key: oops }\n    timeouts:",
        11,
        "cannot be set here",
    );
}

#[test]
fn unknown_method() {
    expect(
        "methods: [POST]",
        "methods: [FETCH]",
        13,
        "unknown HTTP method",
    );
}

#[test]
fn zero_concurrency() {
    expect(
        "      requests: { rate: 100/m, burst: 20 }",
        "      concurrency: 0",
        21,
        "at least 1",
    );
}

#[test]
fn unreadable_config_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c", "/nonexistent/s.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("/nonexistent/s.yaml:1:1: cannot read config"));
}

#[test]
fn several_problems_are_all_reported() {
    let text = VALID
        .replace("upstream: anthropic }", "upstream: nope }")
        .replace("10.0.0.0/8", "10.0.0.0/99")
        .replace("env: CFG_TEST_UPSTREAM_KEY", "env: CFG_TEST_UNSET");
    let (code, _, err, file) = check(&text);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(&file)).collect();
    assert_eq!(lines.len(), 3, "{err}");
}

#[test]
fn spend_quota_needs_pricing_and_a_positive_amount() {
    expect(
        "      requests: { rate: 100/m, burst: 20 }",
        "      quota: { daily_cost: 25 }",
        21,
        "daily_cost needs a `pricing` table",
    );
    expect(
        "      requests: { rate: 100/m, burst: 20 }",
        "      quota: { monthly_cost: -3 }",
        21,
        "monthly_cost must be a positive amount",
    );
}

#[test]
fn spend_quota_without_catch_all_price_is_a_warning() {
    let text = VALID.replacen(
        "      requests: { rate: 100/m, burst: 20 }",
        "      quota: { daily_cost: 25, monthly_cost: 400 }\npricing:\n  models:\n    - { model: \"claude-sonnet-*\", input: 3, output: 15 }",
        1,
    );
    let (code, out, err, _) = check(&text);
    assert_eq!(code, 0, "{err}");
    assert!(
        format!("{out}{err}").contains("match no `pricing` pattern"),
        "{out}{err}"
    );
    // with a catch-all price there is nothing to warn about
    let (code, out, err, _) = check(&text.replace(
        "    - { model: \"claude-sonnet-*\", input: 3, output: 15 }",
        "    - { model: \"claude-sonnet-*\", input: 3, output: 15 }\n    - { model: \"*\", input: 15, output: 75 }",
    ));
    assert_eq!(code, 0, "{err}");
    assert!(!format!("{out}{err}").contains("pricing"), "{out}{err}");
}
