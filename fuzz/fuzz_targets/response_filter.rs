//! Fuzz target: `StreamFilter` (all built-ins, a custom rule and a banned-word
//! masker) must never panic, must emit only well-formed SSE, every event it emits must
//! either be an input event passed through or valid JSON, and the same input split at
//! a byte-chosen point must give the same output as fed whole.
//!
//! Input layout: byte 0 picks the split point, the rest is the upstream stream.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice::filter::{BannedWords, Redactor, RuleSpec, StreamFilter};
use sluice::sse::SseParser;

fn filter() -> StreamFilter {
    let rules = [
        RuleSpec::builtin("cn_id_card"),
        RuleSpec::builtin("bank_card"),
        RuleSpec::builtin("cn_mobile"),
        RuleSpec::builtin("email"),
        RuleSpec::custom("employee_id", r"EMP-\d{6}"),
    ];
    let redactor = Redactor::new(&rules, "[REDACTED]").expect("rules");
    let words = [
        "违禁词".to_string(),
        "bad".to_string(),
        "ＡＢＣ".to_string(),
    ];
    let banned = BannedWords::new(&words).expect("words");
    StreamFilter::new(
        Some(Arc::new(redactor)),
        Some((Arc::new(banned), "[FILTERED]".to_string())),
    )
}

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    let mut f = filter();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c, &mut out);
        assert!(f.held_chars() <= f.window());
    }
    f.finish(&mut out);
    assert_eq!(f.held_bytes(), 0);
    out
}

fn events(stream: &[u8]) -> (Vec<(String, Vec<u8>)>, bool) {
    let mut p = SseParser::with_max_event_size(usize::MAX);
    let mut evs = Vec::new();
    p.feed(stream, |e| evs.push((e.event.to_string(), e.data.to_vec())));
    let partial = p.finish();
    (evs, partial)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let cut = (split as usize * stream.len() / 255).min(stream.len());
    let (a, b) = stream.split_at(cut);

    let whole = run(&[stream]);
    let split_out = run(&[a, b]);
    assert_eq!(whole, split_out);

    let (input_events, _) = events(stream);
    let (out_events, partial) = events(&whole);
    assert!(!partial, "output ends mid-event");
    for e in &out_events {
        let passed = input_events.iter().any(|i| i == e);
        assert!(
            passed || serde_json::from_slice::<serde_json::Value>(&e.1).is_ok(),
            "emitted an event that is neither an input event nor JSON: {e:?}"
        );
    }
});
