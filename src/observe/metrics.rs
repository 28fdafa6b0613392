//! Prometheus metrics (SPEC §5), in one registry served at `admin.addr/metrics`.
//!
//! Labels are bounded: tenant and upstream/endpoint/key ids come from the config, routes
//! from the route table (`""` for unmatched paths), codes are HTTP statuses, reasons are
//! the fixed `x-sluice-reason` set, model is the *family* reported by the upstream (date
//! suffix removed, at most [`MAX_MODELS`] distinct values, then `other`), and `biz` is the
//! tenant's configured label or a sanitised `X-Biz-Type` (at most [`MAX_BIZ`] values).
//! Never request ids, never free text.

use crate::config::Config;
use once_cell::sync::Lazy;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::Mutex;

/// Distinct model families kept as label values.
pub const MAX_MODELS: usize = 64;
/// Distinct `biz` values kept as label values.
pub const MAX_BIZ: usize = 64;

/// Request latency buckets: 5 ms to 30 min (LLM answers can stream for many minutes).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1200.0, 1800.0,
];
/// Time in sluice itself: 20 µs to 1 s.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0,
];

/// Every metric sluice exports.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub ttfb: HistogramVec,
    pub overhead: Histogram,
    pub upstream_requests: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub tokens: IntCounterVec,
    pub rejections: IntCounterVec,
    pub filter_hits: IntCounterVec,
    pub active_streams: IntGauge,
    pub circuit_open: IntGaugeVec,
    pub key_available: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub quota_used: prometheus::GaugeVec,
    pub quota_warnings: IntGauge,
    pub limiter_fallback: IntGauge,
    pub log_dropped: IntCounterVec,
    pub admin_auth_failures: IntCounter,
    pub cost: prometheus::CounterVec,
    pub spend_alert: IntGaugeVec,
    pub cache_requests: IntCounterVec,
    pub cache_tokens_saved: IntCounterVec,
    models: Mutex<HashSet<String>>,
    biz: Mutex<HashSet<String>>,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(h.clone()));
    h
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = r.register(Box::new(g.clone()));
    g
}

/// The process-wide metrics. (Metric definitions are constants: building them cannot
/// fail on anything a client or config controls.)
pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let r = Registry::new();
    let overhead = Histogram::with_opts(
        HistogramOpts::new(
            "sluice_overhead_seconds",
            "Time spent in sluice itself per request: total minus time waiting on the upstream",
        )
        .buckets(OVERHEAD_BUCKETS.to_vec()),
    )
    .unwrap_or_else(|e| panic!("overhead metric: {e}"));
    let _ = r.register(Box::new(overhead.clone()));
    let admin_auth_failures = IntCounter::new(
        "sluice_admin_auth_failures_total",
        "Admin requests refused for a missing or wrong token",
    )
    .unwrap_or_else(|e| panic!("admin metric: {e}"));
    let _ = r.register(Box::new(admin_auth_failures.clone()));
    let quota_used = prometheus::GaugeVec::new(
        Opts::new(
            "sluice_quota_used_ratio",
            "Share of a tenant's daily quota used (this instance's latest view)",
        ),
        &["tenant", "quota"],
    )
    .unwrap_or_else(|e| panic!("quota metric: {e}"));
    let _ = r.register(Box::new(quota_used.clone()));
    Metrics {
        requests: counter(&r, "sluice_requests_total", "Requests answered, by tenant, route and status", &["tenant", "route", "code", "biz"]),
        duration: histogram(&r, "sluice_request_duration_seconds", "Request duration, arrival to last byte", &["tenant", "route"], LATENCY_BUCKETS),
        ttfb: histogram(&r, "sluice_time_to_first_byte_seconds", "Arrival to the first response byte sent to the client", &["tenant", "route"], LATENCY_BUCKETS),
        overhead,
        upstream_requests: counter(&r, "sluice_upstream_requests_total", "Upstream tries, by upstream, endpoint and status (connect_error, timeout for failures without one)", &["upstream", "endpoint", "code"]),
        upstream_retries: counter(&r, "sluice_upstream_retries_total", "Upstream tries beyond the first", &["upstream"]),
        tokens: counter(&r, "sluice_tokens_total", "Tokens used, from upstream usage", &["tenant", "model", "kind"]),
        rejections: counter(&r, "sluice_rejections_total", "Requests refused by sluice, by x-sluice-reason", &["tenant", "reason"]),
        filter_hits: counter(&r, "sluice_filter_hits_total", "Content filter actions", &["filter", "action"]),
        active_streams: gauge(&r, "sluice_active_streams", "SSE responses being streamed now"),
        circuit_open: gauge_vec(&r, "sluice_circuit_open", "1 while an endpoint's circuit is open or half-open", &["upstream", "endpoint"]),
        key_available: gauge_vec(&r, "sluice_key_available", "1 while an upstream key is not resting (by key id)", &["upstream", "key"]),
        config_reloads: counter(&r, "sluice_config_reloads_total", "Config reloads by result", &["result"]),
        quota_used,
        quota_warnings: gauge(&r, "sluice_quota_warnings", "Quota warnings logged since start"),
        limiter_fallback: gauge(&r, "sluice_limiter_fallback_decisions", "Limit decisions made locally because Redis was unreachable"),
        log_dropped: counter(&r, "sluice_log_lines_dropped_total", "Log lines lost (writer behind, or file unwritable)", &["log"]),
        admin_auth_failures,
        cost: {
            let c = prometheus::CounterVec::new(
                Opts::new("sluice_cost_total", "Cost of upstream usage in the pricing currency"),
                &["tenant", "model"],
            )
            .unwrap_or_else(|e| panic!("cost metric: {e}"));
            let _ = r.register(Box::new(c.clone()));
            c
        },
        spend_alert: gauge_vec(&r, "sluice_spend_alert", "1 while a tenant's spend rate is over its spend_alert threshold", &["tenant"]),
        cache_requests: counter(&r, "sluice_cache_requests_total", "Cacheable requests by result: hit, miss, bypass", &["tenant", "result"]),
        cache_tokens_saved: counter(&r, "sluice_cache_tokens_saved_total", "Tokens (input + output) cache hits did not spend upstream", &["tenant"]),
        registry: r,
        models: Mutex::new(HashSet::new()),
        biz: Mutex::new(HashSet::new()),
    }
});

impl Metrics {
    /// A bounded model label: the family (`claude-sonnet-4-5-20250929` →
    /// `claude-sonnet-4-5`), at most `MAX_MODELS` distinct values.
    pub fn model_label(&self, model: Option<&str>) -> String {
        let Some(m) = model.filter(|m| !m.is_empty() && m.len() <= 64) else {
            return String::from("unknown");
        };
        let family = match m.rsplit_once('-') {
            Some((head, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) => {
                head
            }
            _ => m,
        };
        let family: String = family
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        bounded(&self.models, family, MAX_MODELS)
    }

    /// A bounded biz label: sanitised, at most `MAX_BIZ` distinct values.
    pub fn biz_label(&self, header: Option<&[u8]>, tenant_biz: Option<&str>) -> String {
        let raw = header
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(str::trim)
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= 32
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        match raw.or(tenant_biz) {
            Some(b) => bounded(&self.biz, b.to_ascii_lowercase(), MAX_BIZ),
            None => String::new(),
        }
    }

    /// Refresh state gauges (circuits, keys, limiter) and render the text format.
    pub fn render(&self, cfg: &Config, limiter: Option<&crate::limit::Limiter>) -> String {
        self.circuit_open.reset();
        self.key_available.reset();
        for up in &cfg.upstreams {
            for (i, ep) in up.endpoints.iter().enumerate() {
                let open = !up.endpoint_usable(i)
                    || up.breakers[i]
                        .as_ref()
                        .is_some_and(|b| b.state() != crate::upstream::CircuitState::Closed);
                self.circuit_open
                    .with_label_values(&[&up.name, &ep.url])
                    .set(open as i64);
            }
            for k in up.keys.keys() {
                self.key_available
                    .with_label_values(&[&up.name, &k.id])
                    .set(k.available() as i64);
            }
        }
        if let Some(l) = limiter {
            use std::sync::atomic::Ordering;
            self.quota_warnings
                .set(l.quota_warnings.load(Ordering::Relaxed) as i64);
            self.limiter_fallback
                .set(l.fallback_decisions.load(Ordering::Relaxed) as i64);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn bounded(set: &Mutex<HashSet<String>>, value: String, max: usize) -> String {
    let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
    if s.contains(&value) {
        return value;
    }
    if s.len() >= max {
        return String::from("other");
    }
    s.insert(value.clone());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_families_and_bounds() {
        let m = &*METRICS;
        assert_eq!(
            m.model_label(Some("claude-sonnet-4-5-20250929")),
            "claude-sonnet-4-5"
        );
        assert_eq!(m.model_label(Some("claude-opus-4-1")), "claude-opus-4-1");
        assert_eq!(m.model_label(None), "unknown");
        assert_eq!(m.model_label(Some("we\"ird{model}")), "we_ird_model_");
        for i in 0..200 {
            let l = m.model_label(Some(&format!("flood-{i}")));
            assert!(l.starts_with("flood-") || l == "other");
        }
        assert!(m.models.lock().unwrap().len() <= MAX_MODELS);
    }

    #[test]
    fn biz_labels() {
        let m = &*METRICS;
        assert_eq!(
            m.biz_label(Some(b"Customer_Service"), None),
            "customer_service"
        );
        assert_eq!(m.biz_label(Some(b"has space"), Some("support")), "support");
        assert_eq!(m.biz_label(None, None), "");
    }

    #[test]
    fn renders_text_format() {
        let m = &*METRICS;
        m.requests
            .with_label_values(&["t", "/v1/messages", "200", ""])
            .inc();
        let cfg = crate::config::Config::from_str(
            "listeners: [{addr: 127.0.0.1:1}]\nupstreams: {u: {endpoints: [{url: http://127.0.0.1:2}]}}\nroutes: [{path: /v1/messages, upstream: u}]\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        let text = m.render(&cfg, None);
        assert!(text.contains("sluice_requests_total{"));
        assert!(
            text.contains("sluice_circuit_open{endpoint=\"http://127.0.0.1:2\",upstream=\"u\"} 0")
        );
    }
}
