use super::*;
use crate::filter::{filter_text, RuleSpec};
use crate::sse::SseParser;
use proptest::prelude::*;
use serde_json::Value;

const BASIC: &[u8] = include_bytes!("../../../tests/data/stream_basic.sse");
const CRLF: &[u8] = include_bytes!("../../../tests/data/stream_crlf.sse");
const ERROR: &[u8] = include_bytes!("../../../tests/data/stream_error.sse");

/// All built-ins. (A custom regex holds back its whole window, `max_len` chars, so the
/// minimal-hold tests use built-ins only; the property tests add one.)
fn builtins() -> Arc<Redactor> {
    Arc::new(
        Redactor::new(
            &[
                RuleSpec::builtin("cn_id_card"),
                RuleSpec::builtin("bank_card"),
                RuleSpec::builtin("cn_mobile"),
                RuleSpec::builtin("email"),
            ],
            "[REDACTED]",
        )
        .unwrap(),
    )
}

/// All built-ins plus a custom rule.
fn redactor() -> Arc<Redactor> {
    Arc::new(
        Redactor::new(
            &[
                RuleSpec::builtin("cn_id_card"),
                RuleSpec::builtin("bank_card"),
                RuleSpec::builtin("cn_mobile"),
                RuleSpec::builtin("email"),
                RuleSpec::custom("employee_id", r"EMP-\d{6}"),
            ],
            "[REDACTED]",
        )
        .unwrap(),
    )
}

fn banned() -> Arc<BannedWords> {
    Arc::new(
        BannedWords::new(&[
            "违禁词".to_string(),
            "bad".to_string(),
            "ＡＢＣ".to_string(),
        ])
        .unwrap(),
    )
}

fn full() -> StreamFilter {
    StreamFilter::new(Some(builtins()), Some((banned(), "[FILTERED]".to_string())))
}

fn full_custom() -> StreamFilter {
    StreamFilter::new(Some(redactor()), Some((banned(), "[FILTERED]".to_string())))
}

type Ev = (String, Vec<u8>);

fn events(stream: &[u8]) -> Vec<Ev> {
    let mut p = SseParser::with_max_event_size(64 << 20);
    let mut out = Vec::new();
    p.feed(stream, |e| out.push((e.event.to_string(), e.data.to_vec())));
    assert!(!p.finish(), "output ends mid-event");
    out
}

/// (index, text) of a text delta event.
fn text_delta(e: &Ev) -> Option<(u64, String)> {
    let v: Value = serde_json::from_slice(&e.1).ok()?;
    if v["type"] == "content_block_delta" && v["delta"]["type"] == "text_delta" {
        Some((
            v["index"].as_u64()?,
            v["delta"]["text"].as_str()?.to_string(),
        ))
    } else {
        None
    }
}

/// Text per block index, and the other events in order.
fn split(evs: &[Ev]) -> (Vec<(u64, String)>, Vec<Ev>) {
    let mut texts: Vec<(u64, String)> = Vec::new();
    let mut others = Vec::new();
    for e in evs {
        match text_delta(e) {
            Some((ix, t)) => match texts.iter_mut().find(|(i, _)| *i == ix) {
                Some((_, s)) => s.push_str(&t),
                None => texts.push((ix, t)),
            },
            None => others.push(e.clone()),
        }
    }
    (texts, others)
}

fn run(f: &mut StreamFilter, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        f.push(c, &mut out);
        assert!(f.held_chars() <= f.window());
    }
    assert!(!f.finish(&mut out));
    out
}

/// A text delta as Anthropic serializes it (the filter's fast path).
fn delta(ix: u64, text: &str) -> String {
    format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{ix},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
        serde_json::to_string(text).unwrap()
    )
}

/// The same delta with other key order and spacing (the serde_json path).
fn delta_reordered(ix: u64, text: &str) -> String {
    format!(
        "event: content_block_delta\ndata: {}\n\n",
        serde_json::json!({"type":"content_block_delta","index":ix,"delta":{"type":"text_delta","text":text}})
    )
}

fn stream_of(deltas: &[&str]) -> String {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for d in deltas {
        s.push_str(&delta(0, d));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    s
}

/// Output text deltas of block 0, one string per emitted delta.
fn out_deltas(out: &[u8]) -> Vec<String> {
    events(out)
        .iter()
        .filter_map(text_delta)
        .map(|(_, t)| t)
        .collect()
}

#[test]
fn no_rules_is_byte_identical() {
    for fx in [BASIC, CRLF, ERROR] {
        let mut f = StreamFilter::new(None, None);
        assert_eq!(run(&mut f, &[fx]), fx);
        let mut f = StreamFilter::new(None, None);
        let chunks: Vec<&[u8]> = fx.chunks(1).collect();
        assert_eq!(run(&mut f, &chunks), fx);
    }
}

#[test]
fn fixtures_without_matches_keep_text_and_events() {
    for fx in [BASIC, CRLF, ERROR] {
        for size in [1, 7, 64, fx.len()] {
            let mut f = full();
            let chunks: Vec<&[u8]> = fx.chunks(size).collect();
            let out = run(&mut f, &chunks);
            let (want_t, want_o) = split(&events(fx));
            let (got_t, got_o) = split(&events(&out));
            assert_eq!(got_t, want_t);
            assert_eq!(got_o, want_o);
            assert!(f.hits().is_empty());
        }
    }
}

#[test]
fn id_card_split_across_deltas_is_caught_with_minimal_hold() {
    let s = stream_of(&["身份证号1101051949", "1231002", "X请核对"]);
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    assert_eq!(
        out_deltas(&out),
        vec!["身份证号".to_string(), "[REDACTED]请核对".to_string()]
    );
    assert_eq!(f.hits().len(), 1);
    assert_eq!(&*f.hits()[0].name, "cn_id_card");
    assert_eq!(f.take_hits().len(), 1);
    assert!(f.hits().is_empty());
}

#[test]
fn unchanged_deltas_pass_as_original_bytes() {
    let s = stream_of(&["你好，", "世界。"]);
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    assert_eq!(out, s.as_bytes());
}

#[test]
fn held_text_is_flushed_before_stop_and_ping_does_not_flush() {
    let mut s = String::new();
    s.push_str(&delta(0, "电话1381234"));
    s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
    s.push_str(&delta(0, "5678"));
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "content_block_delta",
            "ping",
            "content_block_delta",
            "content_block_stop"
        ]
    );
    assert_eq!(out_deltas(&out), vec!["电话", "[REDACTED]"]);

    // Trailing digits at the end of a block are released, filtered, before the stop.
    let s = stream_of(&["总价 100"]);
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    let evs = events(&out);
    let stop = evs
        .iter()
        .position(|e| e.0 == "content_block_stop")
        .unwrap();
    assert_eq!(out_deltas(&out).concat(), "总价 100");
    assert!(evs[..stop].iter().filter_map(text_delta).count() == 2);
}

#[test]
fn banned_word_split_and_full_width() {
    let s = stream_of(&["这是违", "禁词，还有ａ", "ＢＣ和Ｂad!"]);
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    assert_eq!(
        out_deltas(&out).concat(),
        "这是[FILTERED]，还有[FILTERED]和[FILTERED]!"
    );
    let actions: Vec<_> = f.hits().iter().map(|h| h.action).collect();
    assert_eq!(actions, [crate::filter::Action::Mask; 3]);
}

#[test]
fn other_index_and_non_text_deltas() {
    let mut s = String::new();
    s.push_str(&delta(0, "a 138"));
    s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"p\\\": \\\"138\"}}\n\n");
    s.push_str(&delta(0, "12345678 b"));
    s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n");
    s.push_str(&delta(0, "x"));
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    let evs = events(&out);
    // index 1's input_json_delta does not flush index 0: the mobile is caught.
    let texts: Vec<String> = evs.iter().filter_map(text_delta).map(|t| t.1).collect();
    assert_eq!(texts.concat(), "a [REDACTED] bx");
    // The citations delta of index 0 flushed " b" before it.
    let cit = evs
        .iter()
        .position(|e| String::from_utf8_lossy(&e.1).contains("citations_delta"))
        .unwrap();
    let before: String = evs[..cit]
        .iter()
        .filter_map(text_delta)
        .map(|t| t.1)
        .collect();
    assert_eq!(before, "a [REDACTED] b");
}

#[test]
fn crlf_cr_and_split_terminators() {
    let lf = stream_of(&["号码13812", "345678。"]);
    for s in [lf.clone(), lf.replace('\n', "\r\n"), lf.replace('\n', "\r")] {
        let bytes = s.as_bytes();
        for cut in 0..=bytes.len() {
            let mut f = full();
            let out = run(&mut f, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(out_deltas(&out).concat(), "号码[REDACTED]。", "cut {cut}");
            let (_, others) = split(&events(&out));
            let (_, want) = split(&events(bytes));
            assert_eq!(others, want);
        }
    }
}

#[test]
fn oversized_event_passes_through() {
    let big = "x".repeat(MAX_EVENT_SIZE + 10);
    let mut s = delta(0, "电话1381234");
    s.push_str(&format!("event: big\ndata: {big}\n\n"));
    s.push_str(&delta(0, "5678"));
    let mut f = full();
    let chunks: Vec<&[u8]> = s.as_bytes().chunks(1 << 20).collect();
    let mut out = Vec::new();
    for c in chunks {
        f.push(c, &mut out);
        assert!(f.held_bytes() <= MAX_EVENT_SIZE + f.window() * 4);
    }
    f.finish(&mut out);
    let evs = events(&out);
    let bi = evs.iter().position(|e| e.0 == "big").unwrap();
    assert_eq!(evs[bi].1.len(), big.len());
    // Held text was flushed before the big event (so the number was cut in two).
    let before: String = evs[..bi]
        .iter()
        .filter_map(text_delta)
        .map(|t| t.1)
        .collect();
    assert_eq!(before, "电话1381234");
    assert_eq!(out_deltas(&out).concat(), "电话13812345678");
}

#[test]
fn finish_drops_incomplete_event_and_flushes() {
    let mut f = full();
    let mut out = Vec::new();
    f.push(delta(0, "电话138").as_bytes(), &mut out);
    f.push(b"event: content_block_delta\ndata: {\"type\"", &mut out);
    assert!(f.held_bytes() > 0);
    assert!(f.finish(&mut out));
    assert_eq!(out_deltas(&out).concat(), "电话138");
    assert_eq!(f.held_bytes(), 0);
}

#[test]
fn hold_is_bounded_by_window_for_long_runs() {
    // An endless run of email-ish chars and digits never holds more than the window.
    let mut f = full();
    let mut out = Vec::new();
    for _ in 0..200 {
        f.push(delta(0, "xyz.def-123").as_bytes(), &mut out);
        assert!(f.held_chars() <= f.window());
        f.push(delta(0, "4567890123").as_bytes(), &mut out);
        assert!(f.held_chars() <= f.window());
    }
    f.finish(&mut out);
    assert_eq!(
        out_deltas(&out).concat(),
        "xyz.def-1234567890123".repeat(200)
    );
}

#[test]
fn custom_rule_hold_is_its_window() {
    let mut spec = RuleSpec::custom("emp", r"EMP-\d{6}");
    spec.max_len = Some(10);
    let r = Arc::new(Redactor::new(&[spec], "#").unwrap());
    assert_eq!(r.window(), 11);
    let mut f = StreamFilter::new(Some(r), None);
    let mut out = Vec::new();
    f.push(delta(0, "工号是EMP-12").as_bytes(), &mut out);
    assert!(f.held_chars() <= 11);
    f.push(
        delta(0, "3456，好的，这是一段很长的文字").as_bytes(),
        &mut out,
    );
    f.finish(&mut out);
    assert_eq!(
        out_deltas(&out).concat(),
        "工号是#，好的，这是一段很长的文字"
    );
}

#[test]
fn rewritten_events_escape_json() {
    let s = stream_of(&["\"引号\"\\ 13812345678\n\u{1}", "😀"]);
    let mut f = full();
    let out = run(&mut f, &[s.as_bytes()]);
    for e in events(&out) {
        serde_json::from_slice::<Value>(&e.1).unwrap();
    }
    assert_eq!(out_deltas(&out).concat(), "\"引号\"\\ [REDACTED]\n\u{1}😀");
}

#[test]
fn fast_path_parses_anthropic_text_deltas_only() {
    let ok = |d: &str| fast_text_delta(d.as_bytes()).map(|(i, t)| (i, t.into_owned()));
    assert_eq!(
        ok(
            r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"a\n\u0031\ud83d\ude00\"b"}}"#
        ),
        Some((12, "a\n1😀\"b".to_string()))
    );
    assert_eq!(
        ok(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#),
        Some((0, String::new()))
    );
    for bad in [
        r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"a"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":1}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}} "#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\x"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"a"}}"#,
        r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"a"}}"#,
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\nb\"}}",
    ] {
        assert_eq!(ok(bad), None, "{bad}");
    }
}

#[test]
fn fixture_with_pii_every_split() {
    let fx: &[u8] = include_bytes!("../../../tests/data/filter_stream_pii.sse");
    let want = "您好，张三的身份证号是[REDACTED]，手机[REDACTED]，\n邮箱 [REDACTED]，卡号 [REDACTED]。请勿外传[FILTERED]内容。";
    let (_, want_others) = split(&events(fx));
    for cut in 0..=fx.len() {
        let mut f = full();
        let out = run(&mut f, &[&fx[..cut], &fx[cut..]]);
        let (texts, others) = split(&events(&out));
        assert_eq!(texts, vec![(0, want.to_string())], "cut {cut}");
        assert_eq!(others, want_others);
        assert_eq!(f.hits().len(), 5);
    }
}

// ---- property tests ----

const ATOMS: &[&str] = &[
    "你好",
    "，",
    "。",
    "世界",
    " ",
    "hello",
    "World",
    "\n",
    "😀",
    "👍🏽",
    "é",
    "\"",
    "\\",
    "1",
    "23",
    "456",
    "-",
    "+",
    "@",
    ".",
    "x",
    "X",
    "86",
    "11010519491231002X",
    "440524188001010014",
    "13812345678",
    "+86 13912345678",
    "86-15912345678",
    "6222 0212 3456 7890 128",
    "4111-1111-1111-1111",
    "4111 1111 1111 1111",
    "john.doe@example.com",
    "a@b.cn",
    "EMP-123456",
    "违禁词",
    "违禁",
    "ＢＡＤ",
    "bad",
    "ａｂｃ",
    "ＡＢ",
    "\u{3000}",
];

/// Mostly the characters the detectors care about, to stress their edge cases.
const SOUP: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    " ",
    "-",
    "+",
    "@",
    ".",
    "x",
    "X",
    "a",
    "com",
    "86",
    "13",
    "1381234",
    "4111",
    "11010519491231002",
    "你",
    "违",
    "禁",
    "词",
    "ｂ",
    "ad",
    "Ａ",
    "ｃ",
    "\u{3000}",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(ATOMS), 0..40),
        proptest::collection::vec(proptest::sample::select(SOUP), 0..80),
    ]
    .prop_map(|v| v.concat())
}

/// Cuts `s` at the char boundaries chosen by `seeds`.
fn cut_chars(s: &str, seeds: &[proptest::sample::Index]) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
    let mut cuts: Vec<usize> = if bounds.is_empty() {
        Vec::new()
    } else {
        seeds
            .iter()
            .map(|i| bounds[i.index(bounds.len())])
            .collect()
    };
    cuts.sort_unstable();
    cuts.dedup();
    let mut parts = Vec::new();
    let mut last = 0;
    for c in cuts {
        parts.push(s[last..c].to_string());
        last = c;
    }
    parts.push(s[last..].to_string());
    parts
}

struct Scenario {
    stream: Vec<u8>,
    /// Whole text per text block index.
    texts: Vec<(u64, String)>,
}

fn scenario(
    t0: &str,
    t1: &str,
    seeds0: &[proptest::sample::Index],
    seeds1: &[proptest::sample::Index],
    pings: &[bool],
    crlf: bool,
) -> Scenario {
    let mut s = String::new();
    let mut ping = pings.iter().cycle();
    let mut maybe_ping = |s: &mut String| {
        if *ping.next().unwrap_or(&false) {
            s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
    };
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n");
    maybe_ping(&mut s);
    for (ix, t, seeds) in [(0u64, t0, seeds0), (1, t1, seeds1)] {
        s.push_str(&format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{ix},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n"));
        for (k, part) in cut_chars(t, seeds).iter().enumerate() {
            if k % 3 == 2 {
                s.push_str(&delta_reordered(ix, part));
            } else {
                s.push_str(&delta(ix, part));
            }
            maybe_ping(&mut s);
        }
        s.push_str(&format!("event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{ix}}}\n\n"));
    }
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"t\",\"input\":{}}}\n\n");
    s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"phone\\\": \\\"13812345678\\\"}\"}}\n\n");
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    if crlf {
        s = s.replace('\n', "\r\n");
    }
    Scenario {
        stream: s.into_bytes(),
        texts: vec![(0, t0.to_string()), (1, t1.to_string())],
    }
}

fn filter_for(which: usize) -> StreamFilter {
    match which {
        0 => full_custom(),
        1 => StreamFilter::new(Some(redactor()), None),
        2 => full(),
        _ => StreamFilter::new(None, Some((banned(), "*".to_string()))),
    }
}

fn expected_text(which: usize, t: &str) -> String {
    let r = redactor();
    let b = banned();
    let out = match which {
        0 => filter_text(t, Some(&r), Some((&b, "[FILTERED]"))),
        1 => r.redact(t),
        2 => filter_text(t, Some(&builtins()), Some((&b, "[FILTERED]"))),
        _ => filter_text(t, None, Some((&b, "*"))),
    };
    out.map_or_else(|| t.to_string(), |x| x.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn prop_streaming_equals_whole(
        t0 in text(),
        t1 in text(),
        seeds0 in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        seeds1 in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        pings in proptest::collection::vec(any::<bool>(), 1..5),
        crlf in any::<bool>(),
        which in 0usize..4,
        chunk_seeds in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
    ) {
        let sc = scenario(&t0, &t1, &seeds0, &seeds1, &pings, crlf);
        let len = sc.stream.len();
        let mut cuts: Vec<usize> = chunk_seeds.iter().map(|i| i.index(len + 1)).collect();
        cuts.sort_unstable();
        let mut f = filter_for(which);
        let window = f.window();
        let mut out = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain(std::iter::once(len)) {
            f.push(&sc.stream[last..c], &mut out);
            last = c;
            // (3) hold-back bounded by the window (+ the partial input event).
            prop_assert!(f.held_chars() <= window, "held {} > window {}", f.held_chars(), window);
            prop_assert!(f.held_bytes() <= 2 * 4 * window + len);
        }
        prop_assert!(!f.finish(&mut out));
        prop_assert_eq!(f.held_bytes(), 0);

        // (2) every output event parses.
        let out_evs = events(&out);
        for e in &out_evs {
            prop_assert!(serde_json::from_slice::<Value>(&e.1).is_ok());
        }
        let (got_texts, got_others) = split(&out_evs);
        let (_, want_others) = split(&events(&sc.stream));
        // (4) non-text events unchanged and in order.
        prop_assert_eq!(got_others, want_others);
        // (1) streaming == whole, per block.
        for (ix, whole) in &sc.texts {
            let want = expected_text(which, whole);
            let got = got_texts
                .iter()
                .find(|(i, _)| i == ix)
                .map_or("", |(_, t)| t.as_str());
            prop_assert_eq!(got, want.as_str(), "block {} of {:?}", ix, whole);
        }
    }

    /// What the `response_filter` fuzz target checks, on SSE-shaped soup and on raw
    /// bytes: no panic, same output for any two-way split, output ends on an event
    /// boundary, every emitted event is an input event or valid JSON.
    #[test]
    fn prop_soup_is_chunking_invariant_and_well_formed(
        input in prop_oneof![
            proptest::collection::vec(proptest::sample::select(SSE_SOUP), 0..60)
                .prop_map(|v| v.concat().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..512),
        ],
        cut in any::<proptest::sample::Index>(),
    ) {
        let c = cut.index(input.len() + 1);
        let mut f = full_custom();
        let mut whole = Vec::new();
        f.push(&input, &mut whole);
        f.finish(&mut whole);
        let mut f = full_custom();
        let mut split = Vec::new();
        f.push(&input[..c], &mut split);
        prop_assert!(f.held_chars() <= f.window());
        f.push(&input[c..], &mut split);
        f.finish(&mut split);
        prop_assert_eq!(&whole, &split);
        let mut p = SseParser::with_max_event_size(usize::MAX);
        let mut ins = Vec::new();
        p.feed(&input, |e| ins.push((e.event.to_string(), e.data.to_vec())));
        let mut p = SseParser::with_max_event_size(usize::MAX);
        let mut outs = Vec::new();
        p.feed(&whole, |e| outs.push((e.event.to_string(), e.data.to_vec())));
        prop_assert!(!p.finish());
        for e in &outs {
            prop_assert!(ins.contains(e) || serde_json::from_slice::<Value>(&e.1).is_ok(), "{:?}", e);
        }
    }
}

const SSE_SOUP: &[&str] = &[
    "event: content_block_delta\n",
    "event: ping\n",
    "event: content_block_stop\n",
    "data: ",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"",
    "data: {\"delta\":{\"text\":\"",
    "\",\"type\":\"text_delta\"},\"index\":0,\"type\":\"content_block_delta\"}",
    "data: {\"type\":\"content_block_stop\",\"index\":0}",
    "data: {\"type\":\"message_stop\"}",
    "\"}}",
    "13812345678",
    "1381",
    "违禁",
    "词",
    "a@b.",
    "com",
    "\\n",
    "\\u0031",
    "\\ud83d\\ude00",
    "\\\"",
    "\n",
    "\r\n",
    "\r",
    ": comment\n",
    "x",
    "😀",
    "\u{ff}",
];
