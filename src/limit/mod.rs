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

/// `quota: {daily_requests, daily_tokens, warn_at, utc_offset}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub daily_requests: Option<u64>,
    pub daily_tokens: Option<u64>,
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
    /// Today's use after this decision (requests, tokens), when a quota is set.
    pub quota_used: Option<(u64, u64)>,
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
            daily_requests: None,
            daily_tokens: None,
            warn_at: 0.8,
            utc_offset_secs: 0,
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
    fn reason_codes_round_trip() {
        for r in [
            LimitReason::ClientIp,
            LimitReason::Requests,
            LimitReason::Tokens,
            LimitReason::Concurrency,
            LimitReason::QuotaRequests,
            LimitReason::QuotaTokens,
        ] {
            assert_eq!(LimitReason::from_code(r.code()), Some(r));
        }
        assert_eq!(LimitReason::from_code(0), None);
    }
}
