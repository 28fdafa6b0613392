//! What metrics + access logging cost per request: the same calls `proxy::logging`
//! makes (counter with four labels, two histograms with two labels, the overhead
//! histogram, a token counter) plus building and serializing the access record and
//! queueing it to a writer thread (writing to /dev/null).

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::config::LogTarget;
use sluice::observe::access_log::{now_rfc3339, AccessLog, AccessRecord};
use sluice::observe::metrics::METRICS;
use sluice::usage::Usage;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let m = &*METRICS;
    c.bench_function("observe/metrics_per_request", |b| {
        b.iter(|| {
            m.requests
                .with_label_values(&[black_box("team-a"), "/v1/messages", "200", "support"])
                .inc();
            m.duration
                .with_label_values(&["team-a", "/v1/messages"])
                .observe(0.8);
            m.ttfb
                .with_label_values(&["team-a", "/v1/messages"])
                .observe(0.3);
            m.overhead.observe(0.0002);
            let model = m.model_label(Some("claude-sonnet-4-5-20250929"));
            m.tokens
                .with_label_values(&["team-a", &model, "input"])
                .inc_by(120);
            m.tokens
                .with_label_values(&["team-a", &model, "output"])
                .inc_by(80);
        })
    });
    let log = AccessLog::start(&LogTarget::File("/dev/null".into())).expect("writer");
    let usage = Usage {
        input_tokens: 120,
        output_tokens: 80,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
    };
    c.bench_function("observe/access_log_line", |b| {
        b.iter(|| {
            let rec = AccessRecord {
                ts: now_rfc3339(),
                request_id: "req_0123456789abcdef01234567",
                client_ip: Some("203.0.113.7".into()),
                method: "POST",
                path: "/v1/messages",
                route: Some("/v1/messages"),
                tenant: Some("team-a"),
                biz: Some("support"),
                status: 200,
                reason: None,
                model: Some("claude-sonnet-4-5"),
                stream: true,
                upstream: Some("anthropic"),
                endpoint: Some("https://api.anthropic.com"),
                key_id: Some("main"),
                bytes_in: 1200,
                bytes_out: 5400,
                duration_ms: 812.4,
                ttfb_ms: Some(301.2),
                upstream_ms: 811.9,
                overhead_ms: 0.5,
                usage: Some(usage),
                attempts: 1,
                cost: Some(0.0123),
                error: None,
            };
            log.write(black_box(&rec));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
