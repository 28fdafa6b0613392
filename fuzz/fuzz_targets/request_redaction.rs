//! Fuzz target: `RequestFilter::apply` (all built-ins, a custom rule, banned words)
//! must never panic; when the input is valid JSON a redacted output must be valid JSON
//! too, and an unchanged result must mean the input had nothing to redact. Also runs
//! `filter_message_json` on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::filter::{filter_message_json, BannedWords, Redactor, RequestFilter, RuleSpec};

fn redactor() -> Redactor {
    let rules = [
        RuleSpec::builtin("cn_id_card"),
        RuleSpec::builtin("bank_card"),
        RuleSpec::builtin("cn_mobile"),
        RuleSpec::builtin("email"),
        RuleSpec::custom("employee_id", r"EMP-\d{6}"),
    ];
    Redactor::new(&rules, "[RE\"DACTED]").expect("rules")
}

fuzz_target!(|data: &[u8]| {
    let words = ["违禁词".to_string(), "bad".to_string()];
    let banned = BannedWords::new(&words).expect("words");
    let valid = serde_json::from_slice::<serde_json::Value>(data).is_ok();

    let f = RequestFilter::new(Some(redactor()), Some(banned.clone()));
    if let Ok(Some((out, hits))) = f.apply(data) {
        assert!(!hits.is_empty());
        if valid {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
                "redacted output is not valid JSON"
            );
        }
    }
    // Redaction alone never blocks.
    let only = RequestFilter::new(Some(redactor()), None);
    assert!(only.apply(data).is_ok());

    let r = redactor();
    if let Some((out, _)) = filter_message_json(data, Some(&r), Some((&banned, "*"))) {
        if valid {
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }
});
