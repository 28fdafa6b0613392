//! Throughput of `SseParser` + `StreamUsage` over a ~1 MiB synthetic but
//! realistic Anthropic stream (the recorded fixture's text and tool-input
//! deltas repeated), fed in 1 KiB chunks and in one piece.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::sse::SseParser;
use sluice::usage::StreamUsage;

const FIXTURE: &[u8] = include_bytes!("../tests/data/stream_basic.sse");
const TARGET_SIZE: usize = 1024 * 1024;

/// Splits the fixture into events (blank-line separated, `\n` endings).
fn fixture_events() -> Vec<&'static [u8]> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < FIXTURE.len() {
        if FIXTURE[i] == b'\n' && FIXTURE[i + 1] == b'\n' {
            events.push(&FIXTURE[start..i + 2]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    events
}

/// message_start, ping, content_block_start, then the fixture's deltas
/// repeated up to ~1 MiB, then the closing events.
fn synthetic_stream() -> Vec<u8> {
    let events = fixture_events();
    let is = |e: &&[u8], name: &str| e.starts_with(format!("event: {name}\n").as_bytes());
    let deltas: Vec<&[u8]> = events
        .iter()
        .copied()
        .filter(|e| is(e, "content_block_delta"))
        .collect();
    let head: Vec<&[u8]> = events
        .iter()
        .copied()
        .take_while(|e| !is(e, "content_block_delta"))
        .collect();
    let tail: Vec<&[u8]> = events
        .iter()
        .copied()
        .skip_while(|e| !is(e, "message_delta"))
        .collect();
    assert!(!deltas.is_empty() && !head.is_empty() && !tail.is_empty());

    let mut out = Vec::with_capacity(TARGET_SIZE + 4096);
    for e in &head {
        out.extend_from_slice(e);
    }
    for e in deltas.iter().cycle() {
        if out.len() >= TARGET_SIZE {
            break;
        }
        out.extend_from_slice(e);
    }
    for e in &tail {
        out.extend_from_slice(e);
    }
    out
}

fn run(stream: &[u8], chunk: usize) -> (u64, u64) {
    let mut parser = SseParser::new();
    let mut usage = StreamUsage::new();
    for c in stream.chunks(chunk) {
        parser.feed(c, |ev| usage.observe(ev));
    }
    let truncated = parser.finish();
    assert!(!truncated && usage.completed());
    (parser.events_seen(), usage.usage().total())
}

fn bench(c: &mut Criterion) {
    let stream = synthetic_stream();
    let mut group = c.benchmark_group("sse_parser+usage");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for (label, chunk) in [("1KiB_chunks", 1024), ("one_piece", stream.len())] {
        group.bench_with_input(
            BenchmarkId::new(label, stream.len()),
            &chunk,
            |b, &chunk| b.iter(|| run(black_box(&stream), chunk)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
