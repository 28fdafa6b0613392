//! Request-body and non-streaming response tests (the stream filter's are in
//! `stream/tests.rs`, the detectors' beside their code).

use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn all_rules() -> Vec<RuleSpec> {
    vec![
        RuleSpec::builtin("cn_id_card"),
        RuleSpec::builtin("bank_card"),
        RuleSpec::builtin("cn_mobile"),
        RuleSpec::builtin("email"),
        RuleSpec::custom("employee_id", r"EMP-\d{6}"),
    ]
}

fn redactor() -> Redactor {
    Redactor::new(&all_rules(), "[REDACTED]").unwrap()
}

fn banned() -> BannedWords {
    BannedWords::new(&[
        "违禁词示例".to_string(),
        "违禁".to_string(),
        "Bad Word".to_string(),
    ])
    .unwrap()
}

fn filter() -> RequestFilter {
    RequestFilter::new(Some(redactor()), Some(banned()))
}

fn apply(body: &str) -> Result<Option<(String, Vec<Hit>)>, Blocked> {
    let f = filter();
    let out = f.apply(body.as_bytes());
    same_in_place(&f, body.as_bytes(), &out);
    out.map(|o| o.map(|(b, h)| (String::from_utf8(b).unwrap(), h)))
}

/// `apply_in_place` leaves exactly the bytes `apply` produces (or the body untouched).
fn same_in_place(f: &RequestFilter, body: &[u8], out: &Result<Option<Filtered>, Blocked>) {
    let mut owned = bytes::BytesMut::from(body);
    match (out, f.apply_in_place(&mut owned)) {
        (Ok(Some((b, h))), Ok(Some(h2))) => {
            assert_eq!(&owned[..], &b[..]);
            assert_eq!(h, &h2);
        }
        (Ok(None), Ok(None)) => assert_eq!(&owned[..], body),
        (Err(a), Err(b)) => assert_eq!(a.word, b.word),
        (a, b) => panic!("apply {a:?} but apply_in_place {b:?}"),
    }
}

#[test]
fn in_place_with_a_replacement_longer_than_the_match() {
    // Longer than any ID or card number: the in-place path must fall back to a copy.
    let long = "[REDACTED BY THE DATA PROTECTION POLICY OF THIS GATEWAY]";
    let f = RequestFilter::new(Some(Redactor::new(&all_rules(), long).unwrap()), None);
    let mixed = RequestFilter::new(Some(redactor()), None);
    let body = r#"{"messages":[{"role":"user","content":"ID 11010519491231002X, card 4111111111111111\n, mail a@b.cn"}]}"#;
    for f in [&f, &mixed] {
        let out = f.apply(body.as_bytes());
        assert!(matches!(out, Ok(Some(_))));
        same_in_place(f, body.as_bytes(), &out);
    }
}

fn redacted(body: &str) -> String {
    let out = apply(body).unwrap().expect("something redacted").0;
    serde_json::from_str::<Value>(&out).expect("valid JSON");
    out
}

const CLEAN: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"system":[{"type":"text","text":"你是客服助手。","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"你好，我想查询 2024 年 12 月的账单，订单号 A-1234。"},{"role":"assistant","content":[{"type":"thinking","thinking":"…","signature":"EqQBCkYIBxgCKkA"},{"type":"text","text":"好的 😀 \ud83d\ude00"}]}],"stream":true}"#;

#[test]
fn clean_body_is_forwarded_untouched() {
    assert!(serde_json::from_str::<Value>(CLEAN).is_ok());
    assert_eq!(apply(CLEAN).unwrap(), None);
    assert_eq!(
        RequestFilter::default().apply(CLEAN.as_bytes()).unwrap(),
        None
    );
}

#[test]
fn redacts_prose_only_and_keeps_other_bytes() {
    let body = r#"{"model":"claude-x","messages":[{"role":"user","content":"身份证号11010519491231002X请核对，电话13812345678"}],"system":"联系 a@b.com"}"#;
    let out = redacted(body);
    assert_eq!(
        out,
        r#"{"model":"claude-x","messages":[{"role":"user","content":"身份证号[REDACTED]请核对，电话[REDACTED]"}],"system":"联系 [REDACTED]"}"#
    );
    let (_, hits) = apply(body).unwrap().unwrap();
    let names: Vec<&str> = hits.iter().map(|h| &*h.name).collect();
    assert_eq!(names, ["cn_id_card", "cn_mobile", "email"]);
}

#[test]
fn tool_results_and_nested_content_are_covered() {
    let body = r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_13812345678","content":[{"type":"text","text":"卡号 4111-1111-1111-1111"}]},{"type":"tool_use","id":"toolu_1","name":"lookup","input":{"phone":"13812345678","tags":["EMP-123456"]}}]}]}"#;
    let out = redacted(body);
    assert!(
        out.contains(r#""tool_use_id":"toolu_13812345678""#),
        "{out}"
    );
    assert!(out.contains(r#""text":"卡号 [REDACTED]""#), "{out}");
    assert!(out.contains(r#""phone":"[REDACTED]""#), "{out}");
    assert!(out.contains(r#""tags":["[REDACTED]"]"#), "{out}");
}

#[test]
fn keys_and_skipped_keys_are_untouched() {
    let body = r#"{"a@b.com":"x","13812345678":1,"model":"13812345678","id":"a@b.com","data":"QUJD13812345678==","signature":"11010519491231002X","name":"a@b.com","media_type":"13812345678","role":"13812345678","thinking":"13812345678","type":"13812345678"}"#;
    assert_eq!(apply(body).unwrap(), None);
    // Banned words in keys and skipped values do not block.
    let body = r#"{"违禁":"ok","model":"违禁","data":"违禁词示例"}"#;
    assert_eq!(apply(body).unwrap(), None);
}

#[test]
fn escaped_text_is_decoded_and_only_the_match_rewritten() {
    // Digits written as \u escapes, `\n` between words, an emoji as a surrogate pair.
    let body = r#"{"content":"a\n\u0031\u0033\u0038\u0031\u0032\u0033\u0034\u0035\u0036\u0037\u0038\nb \ud83d\ude00 \"q\""}"#;
    let out = redacted(body);
    assert_eq!(out, r#"{"content":"a\n[REDACTED]\nb \ud83d\ude00 \"q\""}"#);
    // A match right after an escape and one containing a raw emoji neighbour.
    let body = r#"{"content":"\t13812345678😀a@b.com\\"}"#;
    assert_eq!(
        redacted(body),
        r#"{"content":"\t[REDACTED]😀[REDACTED]\\"}"#
    );
}

#[test]
fn replacement_is_json_escaped() {
    let f = RequestFilter::new(
        Some(Redactor::new(&all_rules(), "\"<redacted>\"\\\n").unwrap()),
        None,
    );
    let (out, _) = f.apply(br#"{"c":"x 13812345678 y"}"#).unwrap().unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["c"], "x \"<redacted>\"\\\n y");
}

#[test]
fn banned_words_block_in_any_form() {
    for body in [
        r#"{"messages":[{"role":"user","content":"这是违禁词示例"}]}"#,
        r#"{"messages":[{"role":"user","content":"这是\u8fdd\u7981词"}]}"#,
        r#"{"system":"a BAD WORD"}"#,
        r#"{"system":"a ｂａｄ　ＷＯＲＤ"}"#,
        r#"{"x":[{"y":["deep 违禁"]}]}"#,
        r#""违禁""#,
    ] {
        assert!(apply(body).is_err(), "{body}");
    }
    assert_eq!(
        apply(r#"{"c":"违禁词示例"}"#).unwrap_err(),
        Blocked { word: 0 }
    );
    assert_eq!(apply(r#"{"c":"bad wordy"}"#).unwrap_err().word, 2);
}

#[test]
fn invalid_json_is_not_redacted_but_still_checked() {
    assert_eq!(apply(r#"{"c":"13812345678""#).unwrap(), None);
    assert_eq!(apply("not json 13812345678").unwrap(), None);
    assert!(apply(r#"{"c":"违禁"#).is_err());
    assert!(apply(r#"{"c":"\u8fdd\u7981" trailing"#).is_err());
    assert!(apply("\u{ff}违禁").is_err());
    let mut raw = b"{\"c\":\"\xff ".to_vec();
    raw.extend_from_slice("违禁\"}".as_bytes());
    assert!(filter().apply(&raw).is_err());
}

#[test]
fn redaction_only_or_block_only() {
    let only_block = RequestFilter::new(None, Some(banned()));
    assert_eq!(only_block.apply(br#"{"c":"13812345678"}"#).unwrap(), None);
    assert!(only_block.apply("{\"c\":\"违禁\"}".as_bytes()).is_err());
    let only_redact = RequestFilter::new(Some(redactor()), None);
    assert!(only_redact
        .apply("{\"c\":\"违禁 13812345678\"}".as_bytes())
        .unwrap()
        .is_some());
}

// ---- non-streaming responses ----

const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"text":"电话13812345678，违禁词","type":"text","citations":null},{"type":"tool_use","id":"toolu_1","name":"t","input":{"text":"13812345678"}},{"type":"thinking","thinking":"13812345678","signature":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}"#;

#[test]
fn message_json_filters_text_blocks_only() {
    let r = redactor();
    let b = banned();
    let (out, hits) =
        filter_message_json(MESSAGE.as_bytes(), Some(&r), Some((&b, "[FILTERED]"))).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        MESSAGE.replacen("电话13812345678，违禁词", "电话[REDACTED]，[FILTERED]词", 1)
    );
    let actions: Vec<Action> = hits.iter().map(|h| h.action).collect();
    assert_eq!(actions, [Action::Redact, Action::Mask]);
    // Redaction only.
    let (out, _) = filter_message_json(MESSAGE.as_bytes(), Some(&r), None).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["text"], "电话[REDACTED]，违禁词");
    assert_eq!(v["content"][1]["input"]["text"], "13812345678");
    assert_eq!(v["content"][2]["thinking"], "13812345678");
}

#[test]
fn message_json_unchanged_cases() {
    let r = redactor();
    let clean = r#"{"type":"message","content":[{"type":"text","text":"你好"}]}"#;
    assert!(filter_message_json(clean.as_bytes(), Some(&r), None).is_none());
    assert!(filter_message_json(MESSAGE.as_bytes(), None, None).is_none());
    assert!(filter_message_json(b"{not json 13812345678", Some(&r), None).is_none());
    let err = r#"{"type":"error","error":{"type":"x","message":"13812345678"}}"#;
    assert!(filter_message_json(err.as_bytes(), Some(&r), None).is_none());
    // A text-typed block nested deeper is not a content block.
    let nested = r#"{"x":{"content":[{"type":"text","text":"13812345678"}]}}"#;
    assert!(filter_message_json(nested.as_bytes(), Some(&r), None).is_none());
}

#[test]
fn message_json_with_escapes() {
    let r = redactor();
    let body =
        r#"{"content":[{"type":"t\u0065xt","text":"x\n\u0031\u0033812345678\ud83d\ude00"}]}"#;
    let (out, _) = filter_message_json(body.as_bytes(), Some(&r), None).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"content":[{"type":"t\u0065xt","text":"x\n[REDACTED]\ud83d\ude00"}]}"#
    );
}

// ---- property: redaction on raw bytes == redaction of the parsed document ----

const ATOMS: &[&str] = &[
    "你好",
    "，",
    "。",
    "世界",
    " ",
    "hello",
    "World",
    "\n",
    "\t",
    "😀",
    "👍🏽",
    "\"",
    "\\",
    "/",
    "1",
    "23",
    "-",
    "+",
    "@",
    ".",
    "x",
    "X",
    "11010519491231002X",
    "440524188001010014",
    "13812345678",
    "+86 13912345678",
    "6222 0212 3456 7890 128",
    "4111-1111-1111-1111",
    "john.doe@example.com",
    "a@b.cn",
    "EMP-123456",
    "\u{1}",
    "\u{2028}",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ATOMS), 0..12).prop_map(|v| v.concat())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("content".to_string()),
        Just("text".to_string()),
        Just("model".to_string()),
        Just("name".to_string()),
        Just("data".to_string()),
        Just("type".to_string()),
        text(),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-4000i32..4000).prop_map(|i| Value::from(f64::from(i) / 4.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Serializes like serde_json, but writes the chars of strings as `\u` escapes where
/// `escape` (cycled) says so.
fn write_json(v: &Value, escape: &[bool], k: &mut usize, out: &mut String) {
    match v {
        Value::String(s) => write_str(s, escape, k, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,");
                }
                write_json(x, escape, k, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("{ ");
            for (i, (key, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, escape, k, out);
                out.push_str(" :\n");
                write_json(x, escape, k, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, escape: &[bool], k: &mut usize, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        let esc = !escape.is_empty() && escape[*k % escape.len()];
        *k += 1;
        if esc || (ch as u32) < 0x20 || ch == '"' || ch == '\\' {
            let mut buf = [0u16; 2];
            for u in ch.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(ch);
        }
    }
    out.push('"');
}

/// The expected document: every string value not under a skipped key redacted.
fn expected(v: &Value, key: Option<&str>, r: &Redactor) -> Value {
    match v {
        Value::String(s) => {
            if key.is_some_and(|k| SKIP_KEYS.contains(&k)) {
                v.clone()
            } else {
                Value::String(r.redact(s).map_or_else(|| s.clone(), |x| x.0))
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| expected(x, key, r)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), expected(x, Some(k), r)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_raw_redaction_equals_document_redaction(
        doc in value(),
        escape in proptest::collection::vec(any::<bool>(), 0..7),
    ) {
        let r = redactor();
        let mut body = String::new();
        write_json(&doc, &escape, &mut 0, &mut body);
        let parsed: Value = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(&parsed, &doc);
        let f = RequestFilter::new(Some(r.clone()), None);
        let want = expected(&doc, None, &r);
        same_in_place(&f, body.as_bytes(), &f.apply(body.as_bytes()));
        match f.apply(body.as_bytes()).unwrap() {
            None => prop_assert_eq!(&want, &doc),
            Some((out, hits)) => {
                let got: Value = serde_json::from_slice(&out).expect("output is valid JSON");
                prop_assert_eq!(&got, &want);
                prop_assert!(!hits.is_empty());
            }
        }
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let f = filter();
        same_in_place(&f, &body, &f.apply(&body));
        if let Ok(Some((out, _))) = f.apply(&body) {
            if serde_json::from_slice::<Value>(&body).is_ok() {
                prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
            }
        }
        let r = redactor();
        let _ = filter_message_json(&body, Some(&r), None);
    }
}
