//! In-process limiter state: one small mutex-guarded record per tenant, and a sharded
//! map for client addresses. Exact (no sampling); a decision is a map lookup, a lock and
//! a few integer operations.

use super::{
    Admission, AdmitRequest, Backend, BackendError, BucketState, Gcra, LimitReason, QuotaUse,
    SettleRequest,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Per-tenant state.
#[derive(Debug, Default, Clone, Copy)]
struct TenantState {
    req_tat: u64,
    tok_tat: u64,
    active: u32,
    day: u64,
    day_requests: u64,
    day_tokens: u64,
    /// Spend today and this month, millionths (settled + in-flight reservations).
    day_cost: u64,
    month: u64,
    month_cost: u64,
}

const SHARDS: usize = 32;

/// The in-memory backend.
pub struct MemoryBackend {
    start: Instant,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantState>>>>,
    ips: Vec<Mutex<HashMap<String, u64>>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock origin offset so that a stored 0 always means "empty bucket".
const EPOCH_OFFSET_NS: u64 = 3_600_000_000_000;

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend {
            start: Instant::now(),
            tenants: RwLock::new(HashMap::new()),
            ips: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Monotonic nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64 + EPOCH_OFFSET_NS
    }

    fn state(&self, tenant: &str) -> Arc<Mutex<TenantState>> {
        if let Some(s) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return s.clone();
        }
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_string())
            .or_default()
            .clone()
    }

    /// The decision, on an explicit clock (unit tests drive time by hand).
    pub fn admit_at(&self, req: &AdmitRequest<'_>, now: u64) -> Admission {
        let st = self.state(req.tenant);
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
        decide(&mut s, req, now)
    }

    pub fn settle_at(&self, req: &SettleRequest<'_>, now: u64) {
        let st = self.state(req.tenant);
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
        settle(&mut s, req, now);
    }

    pub fn client_ip_at(&self, key: &str, bucket: &Gcra, now: u64) -> (bool, u64) {
        let shard = shard_of(key);
        let mut map = self.ips[shard].lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 50_000 {
            // forget addresses whose bucket has drained: they are indistinguishable from new
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().unwrap_or(0);
        let c = bucket.check(tat, now, 1);
        if c.allowed {
            map.insert(key.to_string(), c.new_tat);
        }
        (c.allowed, c.retry_after_ns)
    }

    /// Concurrency slots in use (for status and tests).
    pub fn active(&self, tenant: &str) -> u32 {
        self.state(tenant).lock().map(|s| s.active).unwrap_or(0)
    }
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap and good enough to spread addresses over shards
    let mut h: u32 = 0x811c9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h as usize % SHARDS
}

fn roll_day(s: &mut TenantState, day: u64) {
    if s.day != day {
        s.day = day;
        s.day_requests = 0;
        s.day_tokens = 0;
        s.day_cost = 0;
    }
}

fn roll_month(s: &mut TenantState, month: u64) {
    if s.month != month {
        s.month = month;
        s.month_cost = 0;
    }
}

fn quota_use(s: &TenantState) -> QuotaUse {
    QuotaUse {
        requests: s.day_requests,
        tokens: s.day_tokens,
        day_cost: s.day_cost,
        month_cost: s.month_cost,
    }
}

/// `v + delta`, kept within `0..=u64::MAX`.
fn add_signed(v: u64, delta: i128) -> u64 {
    (i128::from(v) + delta).clamp(0, i128::from(u64::MAX)) as u64
}

fn state_of(bucket: &Gcra, tat: u64, now: u64) -> BucketState {
    let level = bucket.level(tat, now);
    BucketState {
        limit: bucket.capacity,
        remaining: bucket.capacity.saturating_sub(level),
        reset_ns: tat.saturating_sub(now),
    }
}

fn decide(s: &mut TenantState, req: &AdmitRequest<'_>, now: u64) -> Admission {
    let l = req.limits;
    let mut out = Admission::default();
    let refuse = |mut out: Admission, reason, retry| {
        out.refused = Some(reason);
        out.retry_after_ns = retry;
        out
    };
    if let Some(b) = &l.requests {
        out.requests = Some(state_of(&b.bucket, s.req_tat, now));
    }
    if let Some(b) = &l.tokens {
        out.tokens = Some(state_of(b, s.tok_tat, now));
    }
    if let Some(q) = &l.quota {
        let (day, left) = q.day(req.unix_secs);
        roll_day(s, day);
        let (month, month_left) = q.month(req.unix_secs);
        roll_month(s, month);
        out.quota_used = Some(quota_use(s));
        let left_ns = left * 1_000_000_000;
        if q.daily_requests.is_some_and(|lim| s.day_requests >= lim) {
            return refuse(out, LimitReason::QuotaRequests, left_ns);
        }
        if q.daily_tokens.is_some_and(|lim| s.day_tokens >= lim) {
            return refuse(out, LimitReason::QuotaTokens, left_ns);
        }
        if q.daily_cost.is_some_and(|lim| s.day_cost >= lim) {
            return refuse(out, LimitReason::QuotaCostDaily, left_ns);
        }
        if q.monthly_cost.is_some_and(|lim| s.month_cost >= lim) {
            return refuse(
                out,
                LimitReason::QuotaCostMonthly,
                month_left * 1_000_000_000,
            );
        }
    }
    let mut req_check = None;
    if let Some(b) = &l.requests {
        let c = b.bucket.check(s.req_tat, now, 1);
        if !c.allowed {
            return refuse(out, LimitReason::Requests, c.retry_after_ns);
        }
        req_check = Some((c, b.delay));
    }
    let mut tok_check = None;
    if let Some(b) = &l.tokens {
        if req.token_estimate > 0 {
            let c = b.check(s.tok_tat, now, req.token_estimate);
            if !c.allowed {
                return refuse(out, LimitReason::Tokens, c.retry_after_ns);
            }
            tok_check = Some(c);
        }
    }
    if let Some(max) = l.concurrency {
        if s.active >= max {
            // No schedule frees a slot; suggest a short wait.
            return refuse(out, LimitReason::Concurrency, 1_000_000_000);
        }
        s.active += 1;
    }
    // Everything passed: commit, and report the state after this request.
    if let (Some((c, delay)), Some(b)) = (req_check, &l.requests) {
        s.req_tat = c.new_tat;
        if delay {
            out.delay_ns = c.delay_ns;
        }
        out.requests = Some(state_of(&b.bucket, s.req_tat, now));
    }
    if let (Some(c), Some(b)) = (tok_check, &l.tokens) {
        s.tok_tat = c.new_tat;
        out.tokens = Some(state_of(b, s.tok_tat, now));
    }
    if l.quota.is_some() {
        s.day_requests += 1;
        s.day_cost = s.day_cost.saturating_add(req.cost_estimate);
        s.month_cost = s.month_cost.saturating_add(req.cost_estimate);
        out.quota_used = Some(quota_use(s));
    }
    out
}

fn settle(s: &mut TenantState, req: &SettleRequest<'_>, now: u64) {
    let l = req.limits;
    if let Some(b) = &l.tokens {
        let delta = req.used as i64 - req.reserved as i64;
        if delta != 0 {
            s.tok_tat = b.adjust(s.tok_tat, now, delta);
        }
    }
    if let Some(q) = &l.quota {
        let (day, _) = q.day(req.unix_secs);
        roll_day(s, day);
        s.day_tokens = s.day_tokens.saturating_add(req.used);
        // Spend is reconciled on the day and month the request was admitted in; when
        // those are over, their counters are gone and there is nothing left to fix.
        let delta = i128::from(req.cost_used) - i128::from(req.cost_reserved);
        if delta != 0 {
            if q.day(req.admitted_unix_secs).0 == s.day {
                s.day_cost = add_signed(s.day_cost, delta);
            }
            if q.month(req.admitted_unix_secs).0 == s.month {
                s.month_cost = add_signed(s.month_cost, delta);
            }
        }
    }
    if req.release_concurrency && l.concurrency.is_some() {
        s.active = s.active.saturating_sub(1);
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn admit(&self, req: &AdmitRequest<'_>) -> Result<Admission, BackendError> {
        Ok(self.admit_at(req, self.now_ns()))
    }

    async fn settle(&self, req: &SettleRequest<'_>) -> Result<(), BackendError> {
        self.settle_at(req, self.now_ns());
        Ok(())
    }

    async fn client_ip(&self, key: &str, bucket: &Gcra) -> Result<(bool, u64), BackendError> {
        Ok(self.client_ip_at(key, bucket, self.now_ns()))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Quota, RequestLimit, TenantLimits};
    use super::*;

    const S: u64 = 1_000_000_000;

    fn limits() -> TenantLimits {
        TenantLimits {
            requests: Some(RequestLimit {
                bucket: Gcra::requests(10, S, 2),
                delay: false,
            }),
            tokens: Some(Gcra::tokens(1000, 60 * S, 1000)),
            concurrency: Some(2),
            quota: Some(Quota {
                daily_requests: Some(5),
                daily_tokens: Some(2000),
                warn_at: 0.8,
                ..Default::default()
            }),
        }
    }

    fn admit<'a>(l: &'a TenantLimits, est: u64, unix: u64) -> AdmitRequest<'a> {
        AdmitRequest {
            tenant: "t",
            limits: l,
            token_estimate: est,
            cost_estimate: 0,
            lease_id: "x",
            lease_ttl_ns: 60 * S,
            unix_secs: unix,
        }
    }

    fn settle_req<'a>(
        l: &'a TenantLimits,
        reserved: u64,
        used: u64,
        unix: u64,
    ) -> SettleRequest<'a> {
        SettleRequest {
            tenant: "t",
            limits: l,
            reserved,
            used,
            cost_reserved: 0,
            cost_used: 0,
            admitted_unix_secs: unix,
            lease_id: "x",
            release_concurrency: true,
            unix_secs: unix,
        }
    }

    #[test]
    fn refusal_consumes_nothing() {
        let l = limits();
        let m = MemoryBackend::new();
        let now = 10 * S;
        let a = m.admit_at(&admit(&l, 100, 1000), now);
        assert_eq!(a.refused, None);
        let b = m.admit_at(&admit(&l, 100, 1000), now);
        assert_eq!(b.refused, None);
        // concurrency 2 is now full: refused, and neither the request bucket nor the
        // quota moved
        let c = m.admit_at(&admit(&l, 100, 1000), now);
        assert_eq!(c.refused, Some(LimitReason::Concurrency));
        assert_eq!(c.requests.unwrap().remaining, 1);
        assert_eq!(
            c.quota_used,
            Some(QuotaUse {
                requests: 2,
                tokens: 0,
                ..Default::default()
            })
        );
        m.settle_at(&settle_req(&l, 100, 10, 1000), now);
        let d = m.admit_at(&admit(&l, 100, 1000), now);
        assert_eq!(d.refused, None);
        assert_eq!(d.requests.unwrap().remaining, 0);
    }

    #[test]
    fn request_limit_then_tokens_then_quota() {
        let l = limits();
        let m = MemoryBackend::new();
        let now = 10 * S;
        for _ in 0..3 {
            let a = m.admit_at(&admit(&l, 10, 1000), now);
            assert_eq!(a.refused, None);
            m.settle_at(&settle_req(&l, 10, 10, 1000), now);
        }
        let a = m.admit_at(&admit(&l, 10, 1000), now);
        assert_eq!(a.refused, Some(LimitReason::Requests));
        assert_eq!(a.retry_after_ns, 100_000_000);
        // later: token estimate too big for what is left (1000 - 30)
        let a = m.admit_at(&admit(&l, 995, 1000), now + S);
        assert_eq!(a.refused, Some(LimitReason::Tokens));
        assert!(a.retry_after_ns > 0);
        // quota: 5 requests a day
        let a = m.admit_at(&admit(&l, 10, 1000), now + S);
        assert_eq!(a.refused, None);
        m.settle_at(&settle_req(&l, 10, 10, 1000), now + S);
        let a = m.admit_at(&admit(&l, 10, 1000), now + 2 * S);
        assert_eq!(a.refused, None);
        m.settle_at(&settle_req(&l, 10, 10, 1000), now + 2 * S);
        let a = m.admit_at(&admit(&l, 10, 1000), now + 3 * S);
        assert_eq!(a.refused, Some(LimitReason::QuotaRequests));
        assert_eq!(a.retry_after_ns, (86_400 - 1000) * S);
        // next day: fresh quota
        let a = m.admit_at(&admit(&l, 10, 86_400 + 5), now + 4 * S);
        assert_eq!(a.refused, None);
        assert_eq!(
            a.quota_used,
            Some(QuotaUse {
                requests: 1,
                tokens: 0,
                ..Default::default()
            })
        );
    }

    #[test]
    fn token_quota_counts_real_usage() {
        let l = TenantLimits {
            quota: Some(Quota {
                daily_tokens: Some(100),
                warn_at: 1.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = MemoryBackend::new();
        assert_eq!(m.admit_at(&admit(&l, 0, 50), S).refused, None);
        m.settle_at(&settle_req(&l, 0, 120, 50), S);
        let a = m.admit_at(&admit(&l, 0, 60), S);
        assert_eq!(a.refused, Some(LimitReason::QuotaTokens));
        assert_eq!(
            a.quota_used,
            Some(QuotaUse {
                requests: 1,
                tokens: 120,
                ..Default::default()
            })
        );
    }

    #[test]
    fn cost_quota_reserves_then_reconciles() {
        // 1.00 a day (1_000_000 millionths), 1.50 a month
        let l = TenantLimits {
            quota: Some(Quota {
                daily_cost: Some(1_000_000),
                monthly_cost: Some(1_500_000),
                warn_at: 0.8,
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = MemoryBackend::new();
        let t0 = 1_764_000_000; // 2025-11-24 16:00 UTC
        let adm = |cost: u64, unix: u64| {
            let mut a = admit(&l, 0, unix);
            a.cost_estimate = cost;
            m.admit_at(&a, S)
        };
        // two requests in flight reserve 0.60 each: the second is admitted (0.60 < 1.00),
        // a third is refused while both reservations stand
        assert_eq!(adm(600_000, t0).refused, None);
        let b = adm(600_000, t0);
        assert_eq!(b.refused, None);
        assert_eq!(b.quota_used.map(|u| u.day_cost), Some(1_200_000));
        let c = adm(1, t0);
        assert_eq!(c.refused, Some(LimitReason::QuotaCostDaily));
        assert_eq!(c.retry_after_ns, 8 * 3600 * S);
        // both really cost 0.10: reconciled down to 0.20, so there is room again
        let done = |unix: u64| {
            let mut s = settle_req(&l, 0, 0, unix);
            s.cost_reserved = 600_000;
            s.cost_used = 100_000;
            s.admitted_unix_secs = t0;
            s
        };
        m.settle_at(&done(t0 + 5), S);
        m.settle_at(&done(t0 + 5), S);
        let d = adm(700_000, t0 + 10);
        assert_eq!(d.refused, None);
        assert_eq!(d.quota_used.map(|u| u.day_cost), Some(900_000));
        // next day: the day counter is fresh, the month still remembers 0.90
        let next = t0 + 9 * 3600;
        let e = adm(700_000, next);
        assert_eq!(e.refused, None);
        assert_eq!(
            e.quota_used.map(|u| (u.day_cost, u.month_cost)),
            Some((700_000, 1_600_000))
        );
        // the month is spent: refused until December starts (5 days 23 h away)
        let f = adm(1, next + 60);
        assert_eq!(f.refused, Some(LimitReason::QuotaCostMonthly));
        assert_eq!(f.retry_after_ns, (6 * 86_400 - 3600 - 60) * S);
        // a settle for yesterday's admission does not touch today's counter
        let mut late = settle_req(&l, 0, 0, next + 70);
        late.cost_reserved = 700_000;
        late.cost_used = 0;
        late.admitted_unix_secs = t0 + 10;
        m.settle_at(&late, S);
        let g = adm(0, next + 80);
        assert_eq!(
            g.quota_used.map(|u| (u.day_cost, u.month_cost)),
            Some((700_000, 900_000))
        );
        assert_eq!(g.refused, None);
    }

    #[test]
    fn delay_mode_reports_the_wait() {
        let l = TenantLimits {
            requests: Some(RequestLimit {
                bucket: Gcra::requests(10, S, 2),
                delay: true,
            }),
            ..Default::default()
        };
        let m = MemoryBackend::new();
        let d: Vec<u64> = (0..3)
            .map(|_| m.admit_at(&admit(&l, 0, 0), S).delay_ns / 1_000_000)
            .collect();
        assert_eq!(d, vec![0, 100, 200]);
        assert_eq!(
            m.admit_at(&admit(&l, 0, 0), S).refused,
            Some(LimitReason::Requests)
        );
    }

    #[test]
    fn client_ip_buckets_are_separate() {
        let m = MemoryBackend::new();
        let b = Gcra::requests(1, S, 1);
        assert!(m.client_ip_at("10.0.0.1", &b, S).0);
        assert!(m.client_ip_at("10.0.0.1", &b, S).0);
        let (ok, retry) = m.client_ip_at("10.0.0.1", &b, S);
        assert!(!ok);
        assert_eq!(retry, S);
        assert!(m.client_ip_at("10.0.0.2", &b, S).0);
    }
}
