//! The in-memory history behind the status page: fixed-size rings, no per-request
//! samples.
//!
//! * 90 slots of 10 s (15 minutes), each with request counters, token count, the peak of
//!   active streams and three small latency histograms (duration, time to first byte,
//!   gateway overhead) of [`BUCKETS`] log-spaced buckets — about 0.8 KiB a slot, 72 KiB
//!   in all;
//! * per tenant (at most [`MAX_TENANTS`]) six 10 s slots of tokens and requests, for
//!   "tokens/min";
//! * the last [`RECENT`] rejections and the last [`RECENT`] upstream errors (request id,
//!   tenant, reason/status; never bodies or keys; strings capped).
//!
//! Recording a request is O(1): a few integer updates under one short mutex.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Seconds per history slot.
pub const SLOT_SECS: u64 = 10;
/// History slots (15 minutes).
pub const SLOTS: usize = 90;
/// Entries kept in each recent-events ring.
pub const RECENT: usize = 50;
/// Tenants with a tokens/min ring (more are ignored; tenants come from the config).
pub const MAX_TENANTS: usize = 1024;
/// Per-tenant slots (one minute).
const TENANT_SLOTS: usize = 6;
/// Latency histogram buckets: bucket `i` holds (bound(i-1), bound(i)] with
/// bound(i) = 10 µs · 2^(i/2) — 10 µs to about an hour, each bucket √2 wide.
pub const BUCKETS: usize = 58;
/// Longest string kept in a recent-event entry.
const MAX_STR: usize = 128;

/// What the book needs to know about one finished request (built in
/// `Gateway::record_metrics` from the request context).
#[derive(Debug, Clone, Default)]
pub struct RequestSummary<'a> {
    pub request_id: &'a str,
    /// `""` for unauthenticated requests.
    pub tenant: &'a str,
    /// The status sent to the client (499 = the client left first, 0 = none).
    pub status: u16,
    /// `x-sluice-reason` of a gateway-made answer.
    pub reason: Option<&'a str>,
    pub upstream: Option<&'a str>,
    /// The status the upstream answered with (on the last try).
    pub upstream_status: Option<u16>,
    /// What went wrong (broken stream, timeout, …), as recorded in the access log.
    pub error: Option<&'a str>,
    pub duration: Duration,
    pub ttfb: Option<Duration>,
    pub overhead: Duration,
    /// Tokens counted against limits and quotas (input + cache writes + output).
    pub tokens: u64,
}

/// Upper bound of bucket `i`, in µs.
fn bound_us(i: usize) -> f64 {
    10.0 * 2f64.powf(i as f64 / 2.0)
}

fn bucket_of(us: u64) -> usize {
    if us <= 10 {
        return 0;
    }
    let i = (2.0 * (us as f64 / 10.0).log2()).ceil() as usize;
    // guard against rounding at exact bounds
    let i = if i > 0 && (us as f64) <= bound_us(i - 1) {
        i - 1
    } else {
        i
    };
    i.min(BUCKETS - 1)
}

/// A small fixed latency histogram.
#[derive(Debug, Clone, Copy)]
pub struct Hist {
    counts: [u32; BUCKETS],
    n: u32,
    min_us: u64,
    max_us: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: [0; BUCKETS],
            n: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }
}

impl Hist {
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket_of(us)] += 1;
        self.n += 1;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, o: &Hist) {
        if o.n == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.n += o.n;
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
    }

    pub fn count(&self) -> u32 {
        self.n
    }

    /// The `q` quantile in milliseconds (linear within its bucket, clamped to the
    /// smallest and largest value seen), or `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n as u64);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if cum + c as u64 >= rank {
                let lo = if i == 0 { 0.0 } else { bound_us(i - 1) };
                let hi = bound_us(i);
                let frac = (rank - cum) as f64 / c as f64;
                let us = (lo + (hi - lo) * frac).clamp(self.min_us as f64, self.max_us as f64);
                return Some(round3(us / 1000.0));
            }
            cum += c as u64;
        }
        Some(round3(self.max_us as f64 / 1000.0))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One 10-second slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// `unix_secs / SLOT_SECS` of the period this slot holds (0 = never used).
    id: u64,
    requests: u32,
    /// Status below 400.
    ok: u32,
    client_errors: u32,
    server_errors: u32,
    rejections: u32,
    upstream_errors: u32,
    tokens: u64,
    streams_max: u32,
    duration: Hist,
    ttfb: Hist,
    overhead: Hist,
}

/// A recent rejection or upstream error.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentEvent {
    /// Unix time, seconds.
    pub at: u64,
    pub request_id: String,
    pub tenant: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct TenantSlot {
    id: u64,
    tokens: u64,
    requests: u32,
}

/// The rings; one mutex around all of it in [`super::StatusBook`].
#[derive(Debug)]
pub struct History {
    slots: Vec<Slot>,
    tenants: HashMap<String, [TenantSlot; TENANT_SLOTS]>,
    rejections: VecDeque<RecentEvent>,
    upstream_errors: VecDeque<RecentEvent>,
    /// Since the process started (not windowed).
    pub total_requests: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            slots: vec![Slot::default(); SLOTS],
            tenants: HashMap::new(),
            rejections: VecDeque::with_capacity(RECENT),
            upstream_errors: VecDeque::with_capacity(RECENT),
            total_requests: 0,
        }
    }
}

/// Which recent ring (if any) a request belongs to.
pub fn classify(s: &RequestSummary<'_>) -> (bool, bool) {
    let upstream_reason = s.reason.is_some_and(|r| r.starts_with("upstream."));
    let rejection = s.reason.is_some() && !upstream_reason;
    let upstream_error = upstream_reason
        || (s.reason.is_none() && s.upstream_status.is_some_and(|c| c >= 400))
        || s.error.is_some_and(|e| e.starts_with("upstream"));
    (rejection, upstream_error)
}

fn cap(s: &str) -> String {
    if s.len() <= MAX_STR {
        return s.to_string();
    }
    let mut end = MAX_STR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Build the recent-event entry for a request (outside the lock: it allocates).
pub fn event(s: &RequestSummary<'_>, now: u64) -> RecentEvent {
    RecentEvent {
        at: now,
        request_id: cap(s.request_id),
        tenant: cap(s.tenant),
        status: s.status,
        reason: s.reason.map(cap),
        upstream: s.upstream.map(cap),
        upstream_status: s.upstream_status,
        error: s.error.map(cap),
    }
}

fn push(ring: &mut VecDeque<RecentEvent>, e: RecentEvent) {
    if ring.len() == RECENT {
        ring.pop_front();
    }
    ring.push_back(e);
}

/// Counters and percentiles over a span of slots.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Seconds covered.
    pub seconds: u64,
    pub requests: u64,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub rejections: u64,
    pub upstream_errors: u64,
    pub tokens: u64,
    /// Requests per second over `seconds`.
    pub rps: f64,
    /// Share of requests answered below 400 (`null` without requests).
    pub success_rate: Option<f64>,
    pub latency_ms: Quantiles,
    pub ttfb_ms: Quantiles,
    pub overhead_ms: Quantiles,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(h: &Hist) -> Quantiles {
        Quantiles {
            p50: h.quantile_ms(0.5),
            p99: h.quantile_ms(0.99),
        }
    }
}

/// Per-slot series, oldest first, for the sparklines.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    /// Unix time of the first slot's start.
    pub start: u64,
    pub slot_secs: u64,
    pub requests: Vec<u32>,
    pub rps: Vec<f64>,
    pub success_rate: Vec<Option<f64>>,
    pub latency_p50_ms: Vec<Option<f64>>,
    pub latency_p99_ms: Vec<Option<f64>>,
    pub ttfb_p50_ms: Vec<Option<f64>>,
    pub ttfb_p99_ms: Vec<Option<f64>>,
    pub overhead_p50_ms: Vec<Option<f64>>,
    pub overhead_p99_ms: Vec<Option<f64>>,
    pub active_streams: Vec<u32>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn rate(ok: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| (ok as f64 / n as f64 * 10_000.0).round() / 10_000.0)
}

impl History {
    /// Record one request at `now` (Unix seconds); `streams` = active streams now.
    pub fn record(
        &mut self,
        s: &RequestSummary<'_>,
        now: u64,
        streams: u32,
        recent: Option<(bool, bool, RecentEvent)>,
    ) {
        let id = now / SLOT_SECS;
        let slot = &mut self.slots[(id % SLOTS as u64) as usize];
        if slot.id != id {
            *slot = Slot {
                id,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        match s.status {
            1..=399 => slot.ok += 1,
            400..=499 => slot.client_errors += 1,
            _ => slot.server_errors += 1,
        }
        slot.tokens += s.tokens;
        slot.streams_max = slot.streams_max.max(streams);
        slot.duration.observe(s.duration);
        if let Some(t) = s.ttfb {
            slot.ttfb.observe(t);
        }
        slot.overhead.observe(s.overhead);
        self.total_requests += 1;
        if let Some((rejection, upstream_error, ev)) = recent {
            if rejection {
                slot.rejections += 1;
            }
            if upstream_error {
                slot.upstream_errors += 1;
            }
            match (rejection, upstream_error) {
                (true, true) => {
                    push(&mut self.rejections, ev.clone());
                    push(&mut self.upstream_errors, ev);
                }
                (true, false) => push(&mut self.rejections, ev),
                (false, true) => push(&mut self.upstream_errors, ev),
                (false, false) => {}
            }
        }
        if !self.tenants.contains_key(s.tenant) && self.tenants.len() < MAX_TENANTS {
            self.tenants
                .insert(s.tenant.to_string(), [TenantSlot::default(); TENANT_SLOTS]);
        }
        if let Some(ring) = self.tenants.get_mut(s.tenant) {
            let t = &mut ring[(id % TENANT_SLOTS as u64) as usize];
            if t.id != id {
                *t = TenantSlot {
                    id,
                    ..TenantSlot::default()
                };
            }
            t.tokens += s.tokens;
            t.requests += 1;
        }
    }

    /// Note the active-stream count at `now` (sampled at status reads too).
    pub fn sample_streams(&mut self, now: u64, streams: u32) {
        let id = now / SLOT_SECS;
        let slot = &mut self.slots[(id % SLOTS as u64) as usize];
        if slot.id != id {
            *slot = Slot {
                id,
                ..Slot::default()
            };
        }
        slot.streams_max = slot.streams_max.max(streams);
    }

    fn slot_at(&self, id: u64) -> Option<&Slot> {
        let s = &self.slots[(id % SLOTS as u64) as usize];
        (s.id == id && id != 0).then_some(s)
    }

    /// Totals over the last `n` slots (the current one included) at `now`.
    pub fn summary(&self, now: u64, n: usize) -> Summary {
        let cur = now / SLOT_SECS;
        let mut agg = Slot::default();
        for k in 0..n.min(SLOTS) as u64 {
            let Some(s) = cur.checked_sub(k).and_then(|id| self.slot_at(id)) else {
                continue;
            };
            agg.requests += s.requests;
            agg.ok += s.ok;
            agg.client_errors += s.client_errors;
            agg.server_errors += s.server_errors;
            agg.rejections += s.rejections;
            agg.upstream_errors += s.upstream_errors;
            agg.tokens += s.tokens;
            agg.duration.merge(&s.duration);
            agg.ttfb.merge(&s.ttfb);
            agg.overhead.merge(&s.overhead);
        }
        let seconds = n.min(SLOTS) as u64 * SLOT_SECS;
        Summary {
            seconds,
            requests: agg.requests as u64,
            ok: agg.ok as u64,
            client_errors: agg.client_errors as u64,
            server_errors: agg.server_errors as u64,
            rejections: agg.rejections as u64,
            upstream_errors: agg.upstream_errors as u64,
            tokens: agg.tokens,
            rps: round2(agg.requests as f64 / seconds as f64),
            success_rate: rate(agg.ok as u64, agg.requests as u64),
            latency_ms: Quantiles::of(&agg.duration),
            ttfb_ms: Quantiles::of(&agg.ttfb),
            overhead_ms: Quantiles::of(&agg.overhead),
        }
    }

    /// The 15-minute series ending with the current slot at `now`.
    pub fn series(&self, now: u64) -> Series {
        let cur = now / SLOT_SECS;
        let first = cur.saturating_sub(SLOTS as u64 - 1);
        let mut out = Series {
            start: first * SLOT_SECS,
            slot_secs: SLOT_SECS,
            requests: Vec::with_capacity(SLOTS),
            rps: Vec::with_capacity(SLOTS),
            success_rate: Vec::with_capacity(SLOTS),
            latency_p50_ms: Vec::with_capacity(SLOTS),
            latency_p99_ms: Vec::with_capacity(SLOTS),
            ttfb_p50_ms: Vec::with_capacity(SLOTS),
            ttfb_p99_ms: Vec::with_capacity(SLOTS),
            overhead_p50_ms: Vec::with_capacity(SLOTS),
            overhead_p99_ms: Vec::with_capacity(SLOTS),
            active_streams: Vec::with_capacity(SLOTS),
        };
        let empty = Slot::default();
        for id in first..=cur {
            let s = self.slot_at(id).unwrap_or(&empty);
            // the current slot has only run for part of its 10 s
            let secs = if id == cur {
                (now - cur * SLOT_SECS + 1).min(SLOT_SECS)
            } else {
                SLOT_SECS
            };
            out.requests.push(s.requests);
            out.rps.push(round2(s.requests as f64 / secs as f64));
            out.success_rate.push(rate(s.ok as u64, s.requests as u64));
            out.latency_p50_ms.push(s.duration.quantile_ms(0.5));
            out.latency_p99_ms.push(s.duration.quantile_ms(0.99));
            out.ttfb_p50_ms.push(s.ttfb.quantile_ms(0.5));
            out.ttfb_p99_ms.push(s.ttfb.quantile_ms(0.99));
            out.overhead_p50_ms.push(s.overhead.quantile_ms(0.5));
            out.overhead_p99_ms.push(s.overhead.quantile_ms(0.99));
            out.active_streams.push(s.streams_max);
        }
        out
    }

    /// (tokens, requests) of `tenant` in the last minute (six slots) at `now`.
    pub fn tenant_minute(&self, tenant: &str, now: u64) -> (u64, u64) {
        let cur = now / SLOT_SECS;
        let Some(ring) = self.tenants.get(tenant) else {
            return (0, 0);
        };
        ring.iter()
            .filter(|t| t.id != 0 && t.id + (TENANT_SLOTS as u64) > cur && t.id <= cur)
            .fold((0, 0), |(tok, req), t| {
                (tok + t.tokens, req + t.requests as u64)
            })
    }

    /// Tenants that have a ring (sorted).
    pub fn tenants(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tenants.keys().cloned().collect();
        v.sort();
        v
    }

    /// Recent rejections and upstream errors, newest first.
    pub fn recent(&self) -> (Vec<RecentEvent>, Vec<RecentEvent>) {
        (
            self.rejections.iter().rev().cloned().collect(),
            self.upstream_errors.iter().rev().cloned().collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(status: u16, ms: u64) -> RequestSummary<'static> {
        RequestSummary {
            request_id: "r",
            tenant: "a",
            status,
            duration: Duration::from_millis(ms),
            ttfb: Some(Duration::from_millis(ms / 2)),
            overhead: Duration::from_micros(300),
            tokens: 10,
            ..RequestSummary::default()
        }
    }

    #[test]
    fn buckets_are_monotonic_and_cover_the_range() {
        let mut last = 0;
        for us in [
            0u64,
            5,
            10,
            11,
            14,
            15,
            20,
            100,
            1_000,
            1_000_000,
            3_600_000_000,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            assert!(us as f64 <= bound_us(b) || b == BUCKETS - 1, "{us} in {b}");
            if b > 0 {
                assert!(us as f64 > bound_us(b - 1), "{us} in {b}");
            }
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_close_and_clamped() {
        let mut h = Hist::default();
        assert_eq!(h.quantile_ms(0.5), None);
        h.observe(Duration::from_millis(42));
        assert_eq!(h.quantile_ms(0.5), Some(42.0));
        assert_eq!(h.quantile_ms(0.99), Some(42.0));
        let mut h = Hist::default();
        for ms in 1..=1000 {
            h.observe(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.2, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.2, "{p99}");
        assert!(p99 <= 1000.0);
    }

    #[test]
    fn slots_roll_and_windows_sum() {
        let mut h = History::default();
        let t0 = 1_700_000_000u64;
        h.record(&req(200, 10), t0, 1, None);
        h.record(&req(200, 30), t0 + 1, 2, None);
        h.record(&req(503, 1000), t0 + 12, 0, None);
        let s = h.summary(t0 + 12, 6);
        assert_eq!(s.requests, 3);
        assert_eq!(s.ok, 2);
        assert_eq!(s.server_errors, 1);
        assert_eq!(s.success_rate, Some(0.6667));
        assert_eq!(s.tokens, 30);
        let series = h.series(t0 + 12);
        assert_eq!(series.requests.len(), SLOTS);
        assert_eq!(series.requests.iter().sum::<u32>(), 3);
        assert_eq!(*series.active_streams.iter().max().unwrap(), 2);
        // 15 minutes later everything has left the window
        let later = t0 + 12 + SLOTS as u64 * SLOT_SECS;
        assert_eq!(h.summary(later, SLOTS).requests, 0);
        assert_eq!(h.series(later).requests.iter().sum::<u32>(), 0);
        // a slot reused after wrapping starts from zero
        h.record(&req(200, 5), later, 0, None);
        assert_eq!(h.summary(later, SLOTS).requests, 1);
        assert_eq!(h.total_requests, 4);
    }

    #[test]
    fn tenant_minute_and_recent_rings_are_bounded() {
        let mut h = History::default();
        let t0 = 1_700_000_000u64;
        for i in 0..(RECENT as u64 + 10) {
            let mut r = req(429, 1);
            r.reason = Some("limit.tenant.requests");
            let (rej, up) = classify(&r);
            assert!(rej && !up);
            let ev = event(&r, t0 + i);
            h.record(&r, t0 + i, 0, Some((rej, up, ev)));
        }
        let (rej, up) = h.recent();
        assert_eq!(rej.len(), RECENT);
        assert!(up.is_empty());
        assert_eq!(rej[0].at, t0 + RECENT as u64 + 9, "newest first");
        let (tok, reqs) = h.tenant_minute("a", t0 + RECENT as u64 + 9);
        assert!(reqs > 0 && reqs <= 60 && tok == reqs * 10);
        assert_eq!(h.tenant_minute("a", t0 + 10_000), (0, 0));
        for i in 0..(MAX_TENANTS + 10) {
            let name = format!("t{i}");
            let mut r = req(200, 1);
            r.tenant = &name;
            h.record(&r, t0, 0, None);
        }
        assert_eq!(h.tenants().len(), MAX_TENANTS);
    }

    #[test]
    fn memory_bound_is_fixed() {
        // the figure stated in docs/status-page.md
        assert!(
            std::mem::size_of::<Slot>() <= 820,
            "{}",
            std::mem::size_of::<Slot>()
        );
        assert!(std::mem::size_of::<Slot>() * SLOTS <= 72 * 1024);
        assert_eq!(History::default().slots.len(), SLOTS);
    }

    #[test]
    fn classification() {
        let mut r = req(529, 1);
        r.upstream_status = Some(529);
        assert_eq!(classify(&r), (false, true));
        r.reason = Some("upstream.timeout");
        r.upstream_status = None;
        assert_eq!(classify(&r), (false, true));
        let mut r = req(200, 1);
        r.upstream_status = Some(200);
        assert_eq!(classify(&r), (false, false));
        r.error = Some("upstream stream interrupted: idle timeout");
        assert_eq!(classify(&r), (false, true));
        let long = "x".repeat(1000);
        r.request_id = &long;
        assert!(event(&r, 1).request_id.len() <= MAX_STR + 3);
    }
}
