use super::*;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str(text, Path::new("test.yaml"))
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = r#"
listeners:
  - addr: 127.0.0.1:8080
upstreams:
  mock:
    endpoints:
      - url: http://127.0.0.1:9999/base
    timeouts: { connect: 1s, first_byte: 250ms }
routes:
  - { path: /v1/messages, methods: [POST], upstream: mock }
  - { path: /v1/models, methods: [get], upstream: mock, prefix: true }
limits:
  max_body: 1MiB
tenants:
  - name: team-a
    keys: [ { sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ]
    ip_allow: [10.0.0.0/8, 127.0.0.1]
    models: [claude-*]
"#;

#[test]
fn good_config_builds() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.listeners[0].addr.port(), 8080);
    assert_eq!(c.upstreams[0].endpoints[0].base_path, "/base");
    assert_eq!(
        c.upstreams[0].timeouts.first_byte,
        Duration::from_millis(250)
    );
    assert_eq!(c.upstreams[0].timeouts.total, Duration::from_secs(900));
    assert_eq!(c.max_body, 1 << 20);
    assert_eq!(c.routes.routes[1].methods, vec!["GET"]);
    assert_eq!(c.tenants.len(), 1);
    assert_eq!(
        c.tenants.authenticate(Some(b"test")).unwrap().name,
        "team-a"
    );
    assert_eq!(c.access_log, LogTarget::Stdout);
    assert!(c.warnings.iter().any(|w| w.contains("no keys")));
}

#[test]
fn unknown_key_has_position() {
    let text = GOOD
        .replace("    prefix: true", "")
        .replace("  max_body: 1MiB", "  max_body: 1MiB\n  max_bdy: 2MiB");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("test.yaml:14:3: "), "{}", e[0]);
    assert!(e[0].contains("unknown field `max_bdy`"), "{}", e[0]);
}

#[test]
fn bad_units_have_positions() {
    let e = errors(&GOOD.replace("connect: 1s", "connect: 1 fortnight"));
    assert!(e[0].starts_with("test.yaml:8:"), "{}", e[0]);
    assert!(e[0].contains("invalid duration"), "{}", e[0]);
    let e = errors(&GOOD.replace("1MiB", "1 MegaBytes"));
    assert!(e[0].starts_with("test.yaml:13:"), "{}", e[0]);
    assert!(e[0].contains("invalid size"), "{}", e[0]);
    let e = errors(&GOOD.replace("connect: 1s", "connect: 30"));
    assert!(e[0].contains("has no unit"), "{}", e[0]);
}

#[test]
fn semantic_errors_are_all_reported_with_positions() {
    let text = GOOD
        .replace("upstream: mock, prefix", "upstream: nope, prefix")
        .replace("10.0.0.0/8", "10.0.0.0/33")
        .replace("127.0.0.1:8080", "127.0.0.1:99999");
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("test.yaml:3:11: invalid address"),
        "{}",
        e[0]
    );
    assert!(e[1].starts_with("test.yaml:11:"), "{}", e[1]);
    assert!(
        e[1].contains("unknown upstream `nope` (defined: mock)"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("test.yaml:17:16: invalid CIDR `10.0.0.0/33`"),
        "{}",
        e[2]
    );
}

#[test]
fn missing_env_secret() {
    let text = GOOD.replace(
        "    timeouts:",
        "    keys: [ { env: SLUICE_TEST_SURELY_UNSET_VAR } ]\n    timeouts:",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("test.yaml:8:20:"), "{}", e[0]);
    assert!(
        e[0].contains("`SLUICE_TEST_SURELY_UNSET_VAR` is not set"),
        "{}",
        e[0]
    );
}

#[test]
fn env_secrets_resolve_and_never_show_in_debug() {
    std::env::set_var("SLUICE_TEST_UPSTREAM_KEY", "sk-ant-test-secret-value");
    std::env::set_var("SLUICE_TEST_TENANT_KEY", "sk-sluice-tenant-value");
    let text = GOOD
        .replace(
            "    timeouts:",
            "    keys: [ { env: SLUICE_TEST_UPSTREAM_KEY, id: main } ]\n    timeouts:",
        )
        .replace(
            "{ sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" }",
            "{ env: SLUICE_TEST_TENANT_KEY }",
        );
    let c = load(&text).unwrap();
    let k = &c.upstreams[0].keys.keys()[0];
    assert_eq!(k.id, "main");
    assert_eq!(k.secret.expose(), "sk-ant-test-secret-value");
    assert!(c
        .tenants
        .authenticate(Some(b"sk-sluice-tenant-value"))
        .is_ok());
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("sk-ant-test-secret-value"));
    assert!(!dbg.contains("sk-sluice-tenant-value"));
}

#[test]
fn bad_sha_and_duplicate_tenants() {
    let text = GOOD.replace("9f86d081", "zz").replace(
        "    models: [claude-*]",
        "    models: [claude-*]\n  - name: team-a\n    keys: []",
    );
    let e = errors(&text);
    assert!(
        e.iter().any(|m| m.contains("sha256 must be 64 hex")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("`team-a` is defined twice")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("needs at least one key")),
        "{e:?}"
    );
}

#[test]
fn syntax_error_has_position() {
    let e = errors("listeners:\n  - addr: [\n");
    assert!(e[0].starts_with("test.yaml:"), "{}", e[0]);
    assert!(!e[0].contains(" at line "), "{}", e[0]);
}

#[test]
fn the_shipped_examples_validate() {
    std::env::set_var("ANTHROPIC_API_KEY", "sk-ant-example");
    std::env::set_var("SLUICE_TENANT_KEY", "sk-sluice-example");
    std::env::set_var("SLUICE_ADMIN_TOKEN", "admin-example");
    std::env::set_var("MOCK_UPSTREAM_KEY", "mock-example");
    for f in ["conf/sluice.yaml", "conf/local.yaml"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        if let Err(e) = Config::load(&p) {
            panic!("{f}: {e}");
        }
    }
}
