//! The command line: `sluice -t -c FILE` and `sluice keygen`.

use std::process::Command;

fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_TEST_UNSET_SECRET")
        .output()
        .expect("run sluice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn test_flag_accepts_the_local_example() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/local.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-t", "-c", conf])
        .env("SLUICE_TENANT_KEY", "sk-sluice-x")
        .env("MOCK_UPSTREAM_KEY", "m")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn test_flag_reports_every_problem_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "listeners:\n  - addr: 127.0.0.1:8080\nupstreams:\n  a:\n    endpoints: [ { url: \"http://127.0.0.1:1\" } ]\n    keys: [ { env: SLUICE_TEST_UNSET_SECRET } ]\nroutes:\n  - { path: /v1/messages, upstream: b }\ntenants:\n  - name: t\n    keys: [ { sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" } ]\n    ip_allow: [ 300.1.2.3/8 ]\n",
    )
    .unwrap();
    let f = p.display().to_string();
    let (code, _out, err) = sluice(&["-t", "-c", &f]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:6:")) && l.contains("SLUICE_TEST_UNSET_SECRET")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:8:")) && l.contains("unknown upstream `b`")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{f}:12:")) && l.contains("invalid CIDR")),
        "{err}"
    );
}

#[test]
fn test_flag_reports_unknown_keys_and_bad_units() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "listeners:\n  - addr: 127.0.0.1:8080\n    keepalive: { idle: 75 parsecs }\n",
    )
    .unwrap();
    let f = p.display().to_string();
    let (code, _, err) = sluice(&["-t", "-c", &f]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{f}:3:")), "{err}");
    assert!(err.contains("invalid duration"), "{err}");

    std::fs::write(
        &p,
        "listeners:\n  - addr: 127.0.0.1:8080\nlimits:\n  max_bodyy: 1MiB\n",
    )
    .unwrap();
    let (code, _, err) = sluice(&["-t", "-c", &f]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("{f}:4:3: limits: unknown field `max_bodyy`")),
        "{err}"
    );

    std::fs::write(&p, "limits:\n  max_body: lots\n").unwrap();
    let (code, _, err) = sluice(&["-t", "-c", &f]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("{f}:2:")) && err.contains("invalid size"),
        "{err}"
    );

    let (code, _, err) = sluice(&["-t", "-c", "/nonexistent/sluice.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("/nonexistent/sluice.yaml:1:1: cannot read config"),
        "{err}"
    );
}

#[test]
fn keygen_prints_a_key_and_its_hash() {
    let (code, out, _) = sluice(&["keygen", "--tenant", "team-a"]);
    assert_eq!(code, 0);
    let key = out
        .lines()
        .find(|l| l.starts_with("sk-sluice-"))
        .expect("key line");
    assert!(key.len() >= "sk-sluice-".len() + 32, "≥128 bits");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    assert!(out.contains(&format!("sha256: \"{digest}\"")), "{out}");
    assert!(out.contains("- name: team-a"));
    let (_, out2, _) = sluice(&["keygen", "--tenant", "team-a"]);
    assert_ne!(out, out2);
}
