//! The limiter the proxy talks to: Redis when `state: redis://…` is configured, the
//! in-process backend otherwise — and also while Redis is unreachable, so an outage
//! degrades to local limits (logged once per outage), never to an open gate or to 5xx.

use super::memory::MemoryBackend;
use super::redis::RedisBackend;
use super::{Admission, AdmitRequest, Backend, Gcra, SettleRequest, TenantLimits};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long sluice stays on local limits after a Redis failure before trying again.
const REDIS_RETRY: Duration = Duration::from_secs(1);

/// Which backend made a decision (a concurrency slot is released where it was taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    Memory,
    Redis,
}

/// Limiter state for the process; outlives config reloads.
pub struct Limiter {
    memory: MemoryBackend,
    redis_url: Option<String>,
    /// Connected lazily, on the runtime that serves requests.
    redis: arc_swap::ArcSwapOption<RedisBackend>,
    connecting: tokio::sync::Mutex<()>,
    redis_down_until: Mutex<Option<std::time::Instant>>,
    outage: AtomicBool,
    warned: Mutex<HashSet<(String, &'static str, u64)>>,
    /// Quota warnings so far (metric-ready).
    pub quota_warnings: AtomicU64,
    /// Decisions made locally because Redis was unreachable.
    pub fallback_decisions: AtomicU64,
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Limiter {
    /// `redis_url`: `Some("redis://…")` to share state through Redis.
    pub fn new(redis_url: Option<String>) -> Self {
        Limiter {
            memory: MemoryBackend::new(),
            redis_url,
            redis: arc_swap::ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            redis_down_until: Mutex::new(None),
            outage: AtomicBool::new(false),
            warned: Mutex::new(HashSet::new()),
            quota_warnings: AtomicU64::new(0),
            fallback_decisions: AtomicU64::new(0),
        }
    }

    pub fn memory(&self) -> &MemoryBackend {
        &self.memory
    }

    /// Connect to Redis now (at start-up) rather than on the first request.
    pub async fn connect(&self) {
        if self.redis_url.is_some() && self.redis().await.is_none() {
            log::warn!("Redis is not reachable at start-up; limits are local until it is");
        }
    }

    /// Is sharing through Redis configured?
    pub fn shared(&self) -> bool {
        self.redis_url.is_some()
    }

    /// Redis, unless it failed less than `REDIS_RETRY` ago; connects on first use.
    async fn redis(&self) -> Option<Arc<RedisBackend>> {
        let url = self.redis_url.as_deref()?;
        {
            let down = self
                .redis_down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if matches!(*down, Some(until) if std::time::Instant::now() < until) {
                return None;
            }
        }
        if let Some(r) = self.redis.load_full() {
            return Some(r);
        }
        // One request (re)connects; the others decide locally meanwhile instead of
        // queueing behind a connect that may take up to its timeout.
        let Ok(_one_at_a_time) = self.connecting.try_lock() else {
            return None;
        };
        if let Some(r) = self.redis.load_full() {
            return Some(r);
        }
        match RedisBackend::connect(url).await {
            Ok(r) => {
                let r = Arc::new(r);
                self.redis.store(Some(r.clone()));
                Some(r)
            }
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    fn redis_failed(&self, e: &super::BackendError) {
        *self
            .redis_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now() + REDIS_RETRY);
        if !self.outage.swap(true, Ordering::Relaxed) {
            log::warn!("{e}; limits are local to this instance until Redis is back");
        }
    }

    fn redis_ok(&self) {
        if self.outage.swap(false, Ordering::Relaxed) {
            log::warn!("Redis is reachable again; limits are shared again");
        }
    }

    /// Check every limit of a tenant.
    pub async fn admit(&self, req: &AdmitRequest<'_>) -> (Admission, Used) {
        if let Some(r) = self.redis().await {
            match r.admit(req).await {
                Ok(a) => {
                    self.redis_ok();
                    self.check_warnings(req.tenant, req.limits, &a);
                    return (a, Used::Redis);
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        if self.shared() {
            self.fallback_decisions.fetch_add(1, Ordering::Relaxed);
        }
        let a = self.memory.admit_at(req, self.memory.now_ns());
        self.check_warnings(req.tenant, req.limits, &a);
        (a, Used::Memory)
    }

    pub async fn settle(&self, req: &SettleRequest<'_>, used: Used) {
        if used == Used::Redis {
            if let Some(r) = self.redis.load_full() {
                match r.settle(req).await {
                    Ok(()) => return,
                    Err(e) => self.redis_failed(&e),
                }
            }
            // Redis took the slot but cannot give it back now; its lease expires on
            // its own. Charge the tokens locally so this instance still counts them.
            let local = SettleRequest {
                release_concurrency: false,
                ..req.clone()
            };
            self.memory.settle_at(&local, self.memory.now_ns());
            return;
        }
        self.memory.settle_at(req, self.memory.now_ns());
    }

    /// The pre-auth guard for one client address.
    pub async fn client_ip(&self, key: &str, bucket: &Gcra) -> (bool, u64) {
        if let Some(r) = self.redis().await {
            match r.client_ip(key, bucket).await {
                Ok(d) => {
                    self.redis_ok();
                    return d;
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        self.memory.client_ip_at(key, bucket, self.memory.now_ns())
    }

    /// Log (once per tenant, quota and day — or month) when use crosses `warn_at`.
    fn check_warnings(&self, tenant: &str, limits: &TenantLimits, a: &Admission) {
        let (Some(q), Some(u)) = (&limits.quota, a.quota_used) else {
            return;
        };
        let now = unix_secs();
        let (day, _) = q.day(now);
        let (month, _) = q.month(now);
        let check = |kind: &'static str, period: u64, used: u64, limit: Option<u64>| {
            let Some(limit) = limit.filter(|l| *l > 0) else {
                return;
            };
            if (used as f64) < q.warn_at * limit as f64 {
                return;
            }
            let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if w.len() > 100_000 {
                w.clear(); // bounded: at worst a warning is repeated
            }
            if w.insert((tenant.to_string(), kind, period)) {
                self.quota_warnings.fetch_add(1, Ordering::Relaxed);
                let pct = used as f64 * 100.0 / limit as f64;
                if kind.ends_with("cost") {
                    log::warn!(
                        "quota warning: tenant {tenant} has spent {:.2} of its {kind} {:.2} ({pct:.0}%)",
                        used as f64 / 1e6,
                        limit as f64 / 1e6
                    );
                } else {
                    log::warn!(
                        "quota warning: tenant {tenant} has used {used} of {limit} daily {kind} ({pct:.0}%)"
                    );
                }
            }
        };
        check("requests", day, u.requests, q.daily_requests);
        check("tokens", day, u.tokens, q.daily_tokens);
        check("daily_cost", day, u.day_cost, q.daily_cost);
        check("monthly_cost", month, u.month_cost, q.monthly_cost);
    }

    pub fn now_unix() -> u64 {
        unix_secs()
    }
}

/// Held by a request between admission and its end. `finish` reconciles tokens, charges
/// the quota and frees the concurrency slot; dropping it unfinished (a panic, a path that
/// forgot) does the same in the background, keeping the reservation as the charge.
pub struct LimitGuard {
    limiter: Arc<Limiter>,
    tenant: String,
    limits: TenantLimits,
    reserved: u64,
    cost_reserved: u64,
    admitted_unix_secs: u64,
    lease_id: String,
    used_backend: Used,
    done: bool,
}

impl LimitGuard {
    pub fn new(
        limiter: Arc<Limiter>,
        tenant: &str,
        limits: &TenantLimits,
        reserved: u64,
        cost_reserved: u64,
        lease_id: &str,
        used_backend: Used,
    ) -> Self {
        LimitGuard {
            limiter,
            tenant: tenant.to_string(),
            limits: limits.clone(),
            reserved,
            cost_reserved,
            admitted_unix_secs: unix_secs(),
            lease_id: lease_id.to_string(),
            used_backend,
            done: false,
        }
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Spend reserved at admission, millionths.
    pub fn cost_reserved(&self) -> u64 {
        self.cost_reserved
    }

    /// The request is over: it used `used` tokens and cost `cost_used` millionths.
    pub async fn finish(mut self, used: u64, cost_used: u64) {
        self.done = true;
        let req = SettleRequest {
            tenant: &self.tenant,
            limits: &self.limits,
            reserved: self.reserved,
            used,
            cost_reserved: self.cost_reserved,
            cost_used,
            admitted_unix_secs: self.admitted_unix_secs,
            lease_id: &self.lease_id,
            release_concurrency: true,
            unix_secs: unix_secs(),
        };
        self.limiter.settle(&req, self.used_backend).await;
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let limiter = self.limiter.clone();
        let tenant = std::mem::take(&mut self.tenant);
        let limits = self.limits.clone();
        let lease_id = std::mem::take(&mut self.lease_id);
        let reserved = self.reserved;
        let cost_reserved = self.cost_reserved;
        let admitted_unix_secs = self.admitted_unix_secs;
        let used_backend = self.used_backend;
        let settle = async move {
            let req = SettleRequest {
                tenant: &tenant,
                limits: &limits,
                reserved,
                used: reserved,
                cost_reserved,
                cost_used: cost_reserved,
                admitted_unix_secs,
                lease_id: &lease_id,
                release_concurrency: true,
                unix_secs: unix_secs(),
            };
            limiter.settle(&req, used_backend).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(settle);
            }
            Err(_) => log::warn!("limit guard dropped outside a runtime; slot not released"),
        }
    }
}

/// Render a refusal's retry-after in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).max(1)
}
