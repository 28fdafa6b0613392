//! Limits and quotas (SPEC §3 `limits`, `tenants[].limits`, `state`): leaky-bucket
//! request limits with nginx `limit_req` semantics, token budgets reserved on admission
//! and reconciled from real usage, concurrency caps, daily quotas, and a pre-auth guard
//! by client address.
//!
//! One admission decision checks every limit of a tenant at once and either commits all
//! of them or none (a refused request consumes nothing, as in nginx). Backends: `memory`
//! (this process) and `redis` (shared, atomic Lua scripts); [`Limiter`] uses Redis when
//! configured and falls back to memory while Redis is unreachable.

pub mod clientip;
pub mod gcra;
pub mod limiter;
pub mod memory;
pub mod redis;

pub use gcra::Gcra;
pub use limiter::{LimitGuard, Limiter};

/// Per-tenant limits, compiled from the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantLimits {
    pub requests: Option<RequestLimit>,
    pub tokens: Option<Gcra>,
    pub concurrency: Option<u32>,
    pub quota: Option<Quota>,
}

impl TenantLimits {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none()
            && self.tokens.is_none()
            && self.concurrency.is_none()
            && self.quota.is_none()
    }
}

/// `requests: {rate, burst, delay}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    pub bucket: Gcra,
    /// Excess requests wait instead of being refused (nginx without `nodelay`).
    pub delay: bool,
}

/// `quota: {daily_requests, daily_tokens, daily_cost, monthly_cost, warn_at, utc_offset}`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quota {
    pub daily_requests: Option<u64>,
    pub daily_tokens: Option<u64>,
    /// Spend per quota day, in millionths of the `pricing` currency.
    pub daily_cost: Option<u64>,
    /// Spend per calendar month (in the quota's time zone), in millionths.
    pub monthly_cost: Option<u64>,
    /// Fraction (0–1] at which a warning is logged once per day.
    pub warn_at: f64,
    /// Offset of the quota day from UTC, in seconds.
    pub utc_offset_secs: i64,
}

impl Quota {
    /// The quota day number and the seconds left in it, for a Unix time.
    pub fn day(&self, unix_secs: u64) -> (u64, u64) {
        let local = unix_secs as i64 + self.utc_offset_secs;
        let day = local.div_euclid(86_400);
        let left = 86_400 - local.rem_euclid(86_400);
        (day.max(0) as u64, left as u64)
    }

    /// The quota month (`year * 12 + month - 1`) and the seconds left in it.
    pub fn month(&self, unix_secs: u64) -> (u64, u64) {
        let local = unix_secs as i64 + self.utc_offset_secs;
        let days = local.div_euclid(86_400);
        let (y, m) = civil_from_days(days);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let next = days_from_civil(ny, nm, 1);
        let left = (next - days) * 86_400 - local.rem_euclid(86_400);
        (((y * 12 + m as i64 - 1).max(0)) as u64, left.max(1) as u64)
    }

    /// Does this quota limit spend?
    pub fn limits_cost(&self) -> bool {
        self.daily_cost.is_some() || self.monthly_cost.is_some()
    }
}

/// (year, month 1–12) of a day number since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32)
}

/// Day number since 1970-01-01 of a civil date (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One tenant's use of its quotas (the day's and the month's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaUse {
    pub requests: u64,
    pub tokens: u64,
    /// Spend today, millionths (settled, plus reservations of requests in flight).
    pub day_cost: u64,
    /// Spend this month, millionths (likewise).
    pub month_cost: u64,
}

/// Which limit refused a request; its `x-sluice-reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    ClientIp,
    Requests,
    Tokens,
    Concurrency,
    QuotaRequests,
    QuotaTokens,
    QuotaCostDaily,
    QuotaCostMonthly,
}

impl LimitReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            LimitReason::ClientIp => "limit.client_ip",
            LimitReason::Requests => "limit.tenant.requests",
            LimitReason::Tokens => "limit.tenant.tokens",
            LimitReason::Concurrency => "limit.tenant.concurrency",
            LimitReason::QuotaRequests => "quota.requests",
            LimitReason::QuotaTokens => "quota.tokens",
            LimitReason::QuotaCostDaily | LimitReason::QuotaCostMonthly => "quota.cost",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            LimitReason::ClientIp => "too many requests from this address",
            LimitReason::Requests => "request rate limit exceeded for this key",
            LimitReason::Tokens => "token rate limit exceeded for this key",
            LimitReason::Concurrency => "too many concurrent requests for this key",
            LimitReason::QuotaRequests => "daily request quota exhausted for this key",
            LimitReason::QuotaTokens => "daily token quota exhausted for this key",
            LimitReason::QuotaCostDaily => "daily spend quota exhausted for this key",
            LimitReason::QuotaCostMonthly => "monthly spend quota exhausted for this key",
        }
    }

    /// Parse the wire form (for the Redis backend's replies).
    pub fn from_code(code: i64) -> Option<LimitReason> {
        Some(match code {
            1 => LimitReason::Requests,
            2 => LimitReason::Tokens,
            3 => LimitReason::Concurrency,
            4 => LimitReason::QuotaRequests,
            5 => LimitReason::QuotaTokens,
            6 => LimitReason::ClientIp,
            7 => LimitReason::QuotaCostDaily,
            8 => LimitReason::QuotaCostMonthly,
            _ => return None,
        })
    }

    pub fn code(&self) -> i64 {
        match self {
            LimitReason::Requests => 1,
            LimitReason::Tokens => 2,
            LimitReason::Concurrency => 3,
            LimitReason::QuotaRequests => 4,
            LimitReason::QuotaTokens => 5,
            LimitReason::ClientIp => 6,
            LimitReason::QuotaCostDaily => 7,
            LimitReason::QuotaCostMonthly => 8,
        }
    }
}

/// What a bucket looks like after a decision (for the `anthropic-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    pub limit: u64,
    pub remaining: u64,
    /// Nanoseconds until the bucket is empty (fully replenished).
    pub reset_ns: u64,
}

/// Everything one admission decision needs.
#[derive(Debug, Clone)]
pub struct AdmitRequest<'a> {
    pub tenant: &'a str,
    pub limits: &'a TenantLimits,
    /// Token estimate to reserve (0 = not token-limited for this request).
    pub token_estimate: u64,
    /// Worst-case cost to reserve against spend quotas, millionths (0 = none).
    pub cost_estimate: u64,
    /// Unique id of this request (concurrency lease).
    pub lease_id: &'a str,
    /// How long a concurrency lease may live if never released (crashed instance).
    pub lease_ttl_ns: u64,
    pub unix_secs: u64,
}

/// The answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// `None` = admitted.
    pub refused: Option<LimitReason>,
    pub retry_after_ns: u64,
    /// Admitted in delay mode: wait this long first.
    pub delay_ns: u64,
    pub requests: Option<BucketState>,
    pub tokens: Option<BucketState>,
    /// Quota use after this decision (before it, when refused), when a quota is set.
    pub quota_used: Option<QuotaUse>,
}

/// What to do when a request is over.
#[derive(Debug, Clone)]
pub struct SettleRequest<'a> {
    pub tenant: &'a str,
    pub limits: &'a TenantLimits,
    /// Tokens reserved at admission.
    pub reserved: u64,
    /// Tokens really used (from `usage`).
    pub used: u64,
    /// Cost reserved at admission and really incurred, millionths. The difference is
    /// settled on the day and month of `admitted_unix_secs` (a request's spend counts
    /// where it was admitted).
    pub cost_reserved: u64,
    pub cost_used: u64,
    pub admitted_unix_secs: u64,
    pub lease_id: &'a str,
    pub release_concurrency: bool,
    pub unix_secs: u64,
}

/// A backend could not decide (Redis down, timeout…).
#[derive(Debug, thiserror::Error)]
#[error("limit backend unavailable: {0}")]
pub struct BackendError(pub String);

/// Where limiter state lives.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Check every limit of a tenant; commit all or none.
    async fn admit(&self, req: &AdmitRequest<'_>) -> Result<Admission, BackendError>;
    /// Reconcile tokens, charge the quota, release the concurrency slot.
    async fn settle(&self, req: &SettleRequest<'_>) -> Result<(), BackendError>;
    /// The pre-auth guard: one request from `key` (a client address).
    async fn client_ip(&self, key: &str, bucket: &Gcra) -> Result<(bool, u64), BackendError>;
    fn name(&self) -> &'static str;
}

/// A rough token count for a request body: JSON bytes / 4 (English averages ~4 bytes a
/// token; CJK text is ~3 bytes a character and a token or so each, so this
/// under-reserves CJK — reconciliation charges the real figure afterwards).
pub fn estimate_input_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_days() {
        let q = Quota {
            warn_at: 0.8,
            ..Default::default()
        };
        assert_eq!(q.day(86_400 * 3 + 10), (3, 86_390));
        let q8 = Quota {
            utc_offset_secs: 8 * 3600,
            ..q
        };
        // 16:00 UTC is 00:00 in UTC+8: a new day starts
        assert_eq!(q8.day(86_400 * 3 + 16 * 3600), (4, 86_400));
        assert_eq!(q8.day(86_400 * 3 + 16 * 3600 - 1), (3, 1));
    }

    #[test]
    fn quota_months() {
        let q = Quota::default();
        // 1970-01-01 00:00:00: month 1970*12, 31 days left
        assert_eq!(q.month(0), (1970 * 12, 31 * 86_400));
        // 2024-02-29 23:59:59 UTC (leap year): one second of February left
        let feb29_end = 1_709_251_199;
        assert_eq!(q.month(feb29_end), (2024 * 12 + 1, 1));
        assert_eq!(q.month(feb29_end + 1), (2024 * 12 + 2, 31 * 86_400));
        // 2026-12-31 16:00 UTC is 2027-01-01 00:00 in UTC+8
        let q8 = Quota {
            utc_offset_secs: 8 * 3600,
            ..q
        };
        let t = 1_798_761_600; // 2027-01-01 00:00 UTC
        assert_eq!(q8.month(t - 8 * 3600), (2027 * 12, 31 * 86_400));
        assert_eq!(q8.month(t - 8 * 3600 - 1), (2026 * 12 + 11, 1));
        // civil date round trip over 200 years
        for d in (-36_500..36_500).step_by(17) {
            let (y, m) = civil_from_days(d);
            let first = days_from_civil(y, m, 1);
            assert!(first <= d && d - first < 31, "{d}: {y}-{m}");
        }
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in [
            LimitReason::ClientIp,
            LimitReason::Requests,
            LimitReason::Tokens,
            LimitReason::Concurrency,
            LimitReason::QuotaRequests,
            LimitReason::QuotaTokens,
            LimitReason::QuotaCostDaily,
            LimitReason::QuotaCostMonthly,
        ] {
            assert_eq!(LimitReason::from_code(r.code()), Some(r));
        }
        assert_eq!(LimitReason::from_code(0), None);
    }
}
