//! Fuzz target: `SseParser` + `StreamUsage` must never panic, must give the
//! same result however the input is split, and `usage_from_json` must never
//! panic.
//!
//! Input layout: byte 0 picks the split point, byte 1 the event-size limit
//! (0 = default), the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::sse::{SseParser, DEFAULT_MAX_EVENT_SIZE};
use sluice::usage::{usage_from_json, StreamUsage};

type Outcome = (
    Vec<(String, Vec<u8>)>,
    u64,
    u64,
    bool,
    sluice::usage::Usage,
    bool,
);

fn run(chunks: &[&[u8]], limit: usize) -> Outcome {
    let mut parser = SseParser::with_max_event_size(limit);
    let mut usage = StreamUsage::new();
    let mut events = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |ev| {
            assert!(ev.event.len() + ev.data.len() <= limit);
            usage.observe(ev);
            events.push((ev.event.to_owned(), ev.data.to_vec()));
        });
    }
    let truncated = parser.finish();
    (
        events,
        parser.events_seen(),
        parser.oversized_dropped(),
        truncated,
        usage.usage(),
        usage.completed(),
    )
}

fuzz_target!(|data: &[u8]| {
    let (split, limit, stream) = match data {
        [s, l, rest @ ..] => (*s as usize, *l as usize, rest),
        _ => return,
    };
    let limit = if limit == 0 {
        DEFAULT_MAX_EVENT_SIZE
    } else {
        limit
    };
    let cut = if stream.is_empty() {
        0
    } else {
        split * stream.len() / 255
    };
    let (a, b) = stream.split_at(cut.min(stream.len()));

    let split_run = run(&[a, b], limit);
    let whole_run = run(&[stream], limit);
    assert_eq!(split_run, whole_run);

    let _ = usage_from_json(stream);
});
