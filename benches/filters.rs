//! Throughput of the content filters over ~1 MiB of mixed Chinese/English text with a
//! realistic sprinkle of PII (one match every ~16 KiB) and many near misses (dates,
//! prices, order numbers, versions).
//!
//! * `request_redaction/1MiB_mixed`: `RequestFilter::apply` on a Messages request
//!   whose prompt is that text, all built-ins on (`+block`: plus 200 banned words).
//! * `stream_filter/1MiB`: `StreamFilter` over an SSE stream of that text in ~40-char
//!   text deltas, fed in 1 KiB network chunks, all built-ins + banned-word masking.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::filter::{BannedWords, Redactor, RequestFilter, RuleSpec, StreamFilter};

const TARGET: usize = 1024 * 1024;

const ZH: &[&str] = &[
    "请帮我总结一下这份季度报告的主要内容，",
    "重点关注收入增长和成本控制两个方面。",
    "我们在2024年第三季度的营收达到了1,250万元，同比增长23.5%。",
    "客户反馈显示，新版本的用户体验有明显改善，",
    "订单号A-20241103-7781的物流信息需要更新，",
    "会议定于12月15日下午3点在三楼会议室举行。",
    "根据合同第5条第2款的约定，付款期限为30天。",
    "这个函数的时间复杂度是O(n log n)，空间复杂度是O(1)。",
    "请把下面的英文翻译成中文，并保持专业术语不变。",
    "服务器在凌晨2:30出现了短暂的故障，持续约15分钟。",
];

const EN: &[&str] = &[
    "Please review the following pull request and point out any race conditions. ",
    "The latency p99 dropped from 120ms to 45ms after the cache change in v2.3.1. ",
    "Our team shipped 14 features in Q3, and the backlog shrank by 37 percent. ",
    "Refactor this function so that it no longer allocates on the hot path. ",
    "The invoice total was $4,312.50, due on 2024-11-30, reference INV-88213. ",
    "fn main() { let v: Vec<u32> = (0..1024).collect(); println!(\"{}\", v.len()); } ",
    "Customer says the app crashes on iOS 17.2 when uploading photos over 12 MB. ",
    "Call the support line between 9am and 5pm, Monday to Friday. ",
];

const PII: &[&str] = &[
    "身份证号11010519491231002X请核对",
    "联系电话13812345678，",
    "call +86 13912345678 tomorrow ",
    "卡号6222 0212 3456 7890 128，",
    "card 4111-1111-1111-1111 expired ",
    "email john.doe@example.com for details ",
    "邮箱zhangsan@qq.com，",
];

/// Deterministic mixed text of about `TARGET` bytes.
fn prompt() -> String {
    let mut s = String::with_capacity(TARGET + 256);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut since_pii = 0;
    while s.len() < TARGET {
        let r = next();
        let piece = if since_pii > 16 * 1024 {
            since_pii = 0;
            PII[(r as usize / 7) % PII.len()]
        } else if r % 2 == 0 {
            ZH[(r as usize / 3) % ZH.len()]
        } else {
            EN[(r as usize / 3) % EN.len()]
        };
        since_pii += piece.len();
        s.push_str(piece);
        if r % 11 == 0 {
            s.push('\n');
        }
    }
    s
}

fn redactor() -> Redactor {
    let rules: Vec<RuleSpec> = ["cn_id_card", "bank_card", "cn_mobile", "email"]
        .iter()
        .map(|n| RuleSpec::builtin(n))
        .collect();
    Redactor::new(&rules, "[REDACTED]").expect("rules")
}

fn banned() -> BannedWords {
    let mut words: Vec<String> = (0..200).map(|i| format!("禁用词{i}号")).collect();
    words.push("违禁词示例".to_string());
    words.push("forbidden phrase".to_string());
    BannedWords::new(&words).expect("words")
}

fn request_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": text}],
    }))
    .expect("json")
}

fn sse_stream(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    out.extend_from_slice(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
    out.extend_from_slice(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 40).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        // Anthropic's serialization (key order as the API sends it).
        out.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":");
        out.extend_from_slice(
            serde_json::to_string(&text[start..end])
                .expect("json")
                .as_bytes(),
        );
        out.extend_from_slice(b"}}\n\n");
        start = end;
    }
    out.extend_from_slice(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    out.extend_from_slice(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":300000}}\n\n");
    out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out
}

fn bench(c: &mut Criterion) {
    let text = prompt();
    let body = request_body(&text);

    let mut group = c.benchmark_group("request_redaction");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let f = RequestFilter::new(Some(redactor()), None);
    let (_, hits) = f
        .apply(&body)
        .expect("not blocked")
        .expect("planted matches");
    assert!(hits.len() >= 40, "{} hits", hits.len());
    group.bench_function("1MiB_mixed", |b| {
        b.iter(|| f.apply(black_box(&body)).map(|o| o.map(|(v, _)| v.len())))
    });
    let fb = RequestFilter::new(Some(redactor()), Some(banned()));
    group.bench_function("1MiB_mixed+block", |b| {
        b.iter(|| fb.apply(black_box(&body)).map(|o| o.map(|(v, _)| v.len())))
    });
    group.finish();

    let stream = sse_stream(&text);
    let r = Arc::new(redactor());
    let m = Arc::new(banned());
    let mut group = c.benchmark_group("stream_filter");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    let run = |redactor: Option<Arc<Redactor>>, masker: Option<(Arc<BannedWords>, String)>| {
        let mut f = StreamFilter::new(redactor, masker);
        let mut out = Vec::with_capacity(stream.len() + 4096);
        for chunk in stream.chunks(1024) {
            f.push(chunk, &mut out);
        }
        f.finish(&mut out);
        out.len()
    };
    group.bench_function("1MiB", |b| {
        b.iter(|| run(Some(r.clone()), Some((m.clone(), "[FILTERED]".to_string()))))
    });
    group.bench_function("1MiB_redact_only", |b| {
        b.iter(|| run(Some(r.clone()), None))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
