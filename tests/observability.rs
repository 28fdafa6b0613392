//! Logs that cannot be written never break serving (lines are counted as lost and warned
//! about; recovery is unit-tested in `observe::log_writer`), and the audit log rotates.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_logs_never_breaks_serving() {
    let (_mock, url) = start_mock();
    // /dev/full answers every write with ENOSPC, like a full disk
    let cfg = format!(
        "{}logging:\n  access: {{ path: /dev/full }}\n  audit: {{ path: /dev/full, bodies: true }}\n",
        default_config()
    );
    let gw = start_gateway_with(&cfg, &url);
    for stream in [false, true, false, true, false] {
        let r = client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .json(&message_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "serving goes on");
        let _ = r.bytes().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lost = |log: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("sluice_log_lines_dropped_total{{log=\"{log}\"}}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(lost("access"), 5.0, "{metrics}");
    assert_eq!(lost("audit"), 5.0, "{metrics}");
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("access log: ") && l.contains("lines lost so far")),
        "the loss is warned about: {logs}"
    );
    assert!(!logs.contains(TENANT_KEY) && !logs.contains(UPSTREAM_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_rotates_by_size() {
    let (_mock, url) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = format!(
        "{}logging:\n  access: {{ path: off }}\n  audit: {{ path: \"{}\", bodies: true, rotate: 8KiB, keep: 2 }}\n",
        default_config(),
        audit.display()
    );
    let gw = start_gateway_with(&cfg, &url);
    for _ in 0..40 {
        let r = client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", TENANT_KEY)
            .json(&message_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let name = |s: &str| dir.path().join(format!("audit.jsonl{s}"));
    assert!(name("").exists() && name(".1").exists() && name(".2").exists());
    assert!(!name(".3").exists(), "keep: 2");
    for s in ["", ".1", ".2"] {
        let text = std::fs::read_to_string(name(s)).unwrap();
        assert!(text.len() <= 8 * 1024, "{s}: {} bytes", text.len());
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["tenant"], "team-a");
            assert!(v["request_body"].as_str().is_some());
        }
    }
    assert!(!std::fs::read_to_string(name(""))
        .unwrap()
        .contains(TENANT_KEY));
}
