//! Per-tenant usage for `GET /admin/usage`: today (UTC) and the current minute —
//! requests, tokens by kind, rejections by reason, and the latest quota ratios. Memory is
//! bounded by the number of tenants (and the fixed reason set).

use crate::usage::Usage;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters for one period.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Counters {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub rejections: BTreeMap<String, u64>,
    /// Answers served from the response cache, and the tokens they saved.
    pub cache_hits: u64,
    pub cache_tokens_saved: u64,
    /// Cost of the usage (with a `pricing` table).
    pub cost: f64,
}

impl Counters {
    fn add(&mut self, usage: &Usage, reason: Option<&str>) {
        self.requests += 1;
        self.input_tokens += usage.input_tokens;
        self.output_tokens += usage.output_tokens;
        self.cache_read_tokens += usage.cache_read_input_tokens;
        self.cache_write_tokens += usage.cache_creation_input_tokens;
        if let Some(r) = reason {
            *self.rejections.entry(r.to_string()).or_default() += 1;
        }
    }
}

#[derive(Debug, Default, Clone)]
struct TenantBook {
    day: u64,
    today: Counters,
    minute: u64,
    this_minute: Counters,
    quota: BTreeMap<&'static str, f64>,
}

/// The book.
#[derive(Debug, Default)]
pub struct UsageBook {
    tenants: Mutex<HashMap<String, TenantBook>>,
}

/// One tenant in the `/admin/usage` answer.
#[derive(Debug, Serialize)]
pub struct TenantUsage {
    pub tenant: String,
    pub today: Counters,
    pub this_minute: Counters,
    pub quota_used: BTreeMap<&'static str, f64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl UsageBook {
    /// Record one finished request of `tenant` (`""` for unauthenticated ones).
    pub fn record(&self, tenant: &str, usage: &Usage, reason: Option<&str>) {
        self.record_at(tenant, usage, reason, now_secs());
    }

    pub fn record_at(&self, tenant: &str, usage: &Usage, reason: Option<&str>, now: u64) {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let b = match map.get_mut(tenant) {
            Some(b) => b,
            None => map.entry(tenant.to_string()).or_default(),
        };
        let (day, minute) = (now / 86_400, now / 60);
        if b.day != day {
            b.day = day;
            b.today = Counters::default();
        }
        if b.minute != minute {
            b.minute = minute;
            b.this_minute = Counters::default();
        }
        b.today.add(usage, reason);
        b.this_minute.add(usage, reason);
    }

    /// Add the cost of a request (call before `record`).
    pub fn record_cost(&self, tenant: &str, cost: f64) {
        let now = now_secs();
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(tenant.to_string()).or_default();
        if b.day != now / 86_400 {
            b.day = now / 86_400;
            b.today = Counters::default();
        }
        if b.minute != now / 60 {
            b.minute = now / 60;
            b.this_minute = Counters::default();
        }
        b.today.cost += cost;
        b.this_minute.cost += cost;
    }

    /// A cache hit (already counted as a request by `record`).
    pub fn record_cache_hit(&self, tenant: &str, saved: u64) {
        let now = now_secs();
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(tenant) {
            if b.day == now / 86_400 {
                b.today.cache_hits += 1;
                b.today.cache_tokens_saved += saved;
            }
            if b.minute == now / 60 {
                b.this_minute.cache_hits += 1;
                b.this_minute.cache_tokens_saved += saved;
            }
        }
    }

    /// The latest quota ratio seen for a tenant (`quota` = "requests" | "tokens").
    pub fn set_quota(&self, tenant: &str, quota: &'static str, ratio: f64) {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_string())
            .or_default()
            .quota
            .insert(quota, ratio);
    }

    /// Everything, sorted by tenant.
    pub fn snapshot(&self) -> Vec<TenantUsage> {
        self.snapshot_at(now_secs())
    }

    pub fn snapshot_at(&self, now: u64) -> Vec<TenantUsage> {
        let map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<TenantUsage> = map
            .iter()
            .map(|(name, b)| TenantUsage {
                tenant: name.clone(),
                today: if b.day == now / 86_400 {
                    b.today.clone()
                } else {
                    Counters::default()
                },
                this_minute: if b.minute == now / 60 {
                    b.this_minute.clone()
                } else {
                    Counters::default()
                },
                quota_used: b.quota.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_over_minutes_and_days() {
        let book = UsageBook::default();
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_creation_input_tokens: 1,
            cache_read_input_tokens: 2,
        };
        let t0 = 86_400 * 100 + 30;
        book.record_at("a", &u, None, t0);
        book.record_at(
            "a",
            &Usage::default(),
            Some("limit.tenant.requests"),
            t0 + 10,
        );
        let s = book.snapshot_at(t0 + 20);
        assert_eq!(s[0].today.requests, 2);
        assert_eq!(s[0].this_minute.input_tokens, 10);
        assert_eq!(s[0].today.rejections["limit.tenant.requests"], 1);
        // next minute: minute counters reset, day counters stay
        let s = book.snapshot_at(t0 + 60);
        assert_eq!(s[0].this_minute.requests, 0);
        assert_eq!(s[0].today.requests, 2);
        // next day
        book.record_at("a", &u, None, t0 + 86_400);
        let s = book.snapshot_at(t0 + 86_400);
        assert_eq!(s[0].today.requests, 1);
        book.set_quota("a", "tokens", 0.5);
        assert_eq!(book.snapshot_at(t0 + 86_400)[0].quota_used["tokens"], 0.5);
    }
}
