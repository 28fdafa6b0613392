//! Shared limiter state in Redis: every decision is one atomic Lua script, so any number
//! of sluice instances share one set of buckets, quotas and concurrency slots.
//!
//! # Decisions
//!
//! The scripts make exactly the decisions of the in-process backend
//! ([`super::memory`]): the same check order (daily requests, daily tokens, request
//! bucket, token bucket, concurrency), all-or-nothing commit, nothing changed by a refusal,
//! pre-state reported on refusal and post-state on admission, the same retry-after rules.
//!
//! * `admit` — one `EVALSHA` of [`ADMIT_LUA`]: reads every key, checks, then commits.
//! * `settle` — one `EVALSHA` of [`SETTLE_LUA`] (none at all when there is nothing to do):
//!   reconciles the token bucket by `used − reserved` (a refund never goes below empty),
//!   charges the day's token quota, corrects the spend reserved on the admission's day
//!   and month by `cost_used − cost_reserved` (never below 0), releases the concurrency
//!   lease.
//! * `client_ip` — one `EVALSHA` of [`CLIENT_IP_LUA`].
//!
//! Scripts go through [`redis::Script`] (`EVALSHA`, falling back to loading the script
//! when Redis answers `NOSCRIPT`, e.g. after a restart); `connect` preloads them.
//!
//! # Clock and arithmetic
//!
//! The clock is the Redis server's (`TIME`, microseconds), so every instance shares it.
//! Lua numbers are doubles, exact only up to 2^53, and nanoseconds since the epoch
//! (~1.8·10^18) do not fit. So a stored `tat` is kept as a decimal string of nanoseconds
//! and read back *relative to now*: `(tat_µs − now_µs)·1000 + tat_ns_remainder`. Every
//! value the scripts compute is such an offset, bounded by the bucket's tolerance τ, and
//! exact while it stays below 2^53 ns (104 days). Intervals (`interval(cost)`, τ) are
//! computed in Rust with [`Gcra`]'s exact integer arithmetic and passed in as arguments;
//! retry-after, delay, `remaining` and `reset` are computed in Rust from the offsets the
//! script returns, with the same [`Gcra`] methods the memory backend uses. A decision is
//! therefore bit-for-bit the memory backend's decision at the Redis clock's instant.
//!
//! # Keys (`<p>` = key prefix, default `sluice`)
//!
//! | key | type | content | expiry |
//! |-----|------|---------|--------|
//! | `<p>:{<tenant>}:req` | string | request bucket `tat`, ns | `tat` + 1 s |
//! | `<p>:{<tenant>}:tok` | string | token bucket `tat`, ns | `tat` + 1 s |
//! | `<p>:{<tenant>}:conc` | zset | lease id → expiry (µs) | latest lease expiry |
//! | `<p>:{<tenant>}:q:<day>` | hash | `r` requests, `t` tokens, `c` spend (millionths) | 2 days after last write |
//! | `<p>:{<tenant>}:qm:<month>` | hash | `c` spend this month (millionths) | 35 days after last write |
//! | `<p>:ip:<addr>` | string | client-address bucket `tat`, ns | `tat` + 1 s |
//!
//! A bucket whose `tat` is in the past is indistinguishable from an absent one, so expiring
//! it then loses nothing. The `{…}` hash tag keeps a tenant's keys in one cluster slot (one
//! script touches only one tenant). In the tag, `%`, `{` and `}` of the tenant name are
//! percent-encoded (an empty name becomes `%`), so every name gives a distinct, non-empty tag.
//!
//! # Connection
//!
//! [`RedisBackend::connect`] is eager and cheap to retry: it parses the URL, opens one
//! multiplexed connection and loads the scripts within 1 s, or returns `Err` (a refused
//! connection fails at once). Once connected, the backend reconnects by itself: the
//! underlying [`ConnectionManager`] replaces a dropped connection on the next call (one
//! attempt per call, no background retry loop), so a backend that worked once can be kept
//! for the life of the process. Each call is bounded by a 250 ms timeout; any failure is a
//! [`BackendError`] whose message never contains the URL or the password.

use super::{
    Admission, AdmitRequest, Backend, BackendError, BucketState, Gcra, LimitReason, QuotaUse,
    SettleRequest,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script, ScriptInvocation};
use std::time::Duration;

/// Deadline for `connect` (connection + loading the scripts).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadline for one decision.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a quota day key outlives its last write.
const QUOTA_KEY_TTL_SECS: u64 = 2 * 86_400;
/// How long a quota month key outlives its last write (longer than any month).
const QUOTA_MONTH_KEY_TTL_SECS: u64 = 35 * 86_400;
/// Concurrency refusals suggest this wait (no schedule frees a slot), as in memory.
const CONCURRENCY_RETRY_NS: u64 = 1_000_000_000;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Helpers shared by the scripts: the clock and the `tat` codec.
macro_rules! lua_prelude {
    () => {
        r#"
local MAXREL = 9007199254740992
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- A stored tat, as nanoseconds after now (0 when absent, past or unreadable).
local function rel_of(key)
  local v = redis.call('GET', key)
  if not v then return 0 end
  local n = string.len(v)
  if n < 4 then return 0 end
  local us = tonumber(string.sub(v, 1, n - 3))
  local sub = tonumber(string.sub(v, n - 2))
  if not us or not sub then return 0 end
  local rel = (us - now_us) * 1000 + sub
  if rel < 0 then return 0 end
  if rel > MAXREL then return MAXREL end
  return rel
end

-- Store tat = now + rel ns; the key expires a second after tat has passed.
local function store(key, rel)
  if rel > MAXREL then rel = MAXREL end
  local q = math.floor(rel / 1000)
  local sub = rel - q * 1000
  local ms = math.ceil(rel / 1000000) + 1000
  redis.call('SET', key, string.format('%.0f%03d', now_us + q, sub),
    'PX', string.format('%.0f', ms))
end
"#
    };
}

/// The admission decision.
///
/// KEYS: 1 request bucket, 2 token bucket, 3 concurrency zset, 4 quota day hash,
/// 5 quota month hash.
/// ARGV: 1 request mode (0 none, 1 check), 2 request interval(1) ns, 3 request τ ns,
/// 4 token mode (0 none, 1 report only, 2 check), 5 token interval(estimate) ns,
/// 6 token τ ns, 7 concurrency limit (-1 none), 8 lease id, 9 lease ttl µs,
/// 10 quota (0/1), 11 daily requests (-1 none), 12 daily tokens (-1 none),
/// 13 quota key ttl s, 14 daily cost (-1 none), 15 monthly cost (-1 none),
/// 16 cost estimate to reserve, 17 month key ttl s.
///
/// Reply: `{code, request_rel_ns, token_rel_ns, day_requests, day_tokens, day_cost,
/// month_cost}` where code 0 is admitted (offsets and counts after the commit) and
/// otherwise a [`LimitReason::code`] (offsets and counts before, nothing written).
pub const ADMIT_LUA: &str = concat!(
    lua_prelude!(),
    r#"
local req_mode = tonumber(ARGV[1])
local req_i1 = tonumber(ARGV[2])
local req_tau = tonumber(ARGV[3])
local tok_mode = tonumber(ARGV[4])
local tok_icost = tonumber(ARGV[5])
local tok_tau = tonumber(ARGV[6])
local conc_limit = tonumber(ARGV[7])
local lease_ttl_us = tonumber(ARGV[9])
local quota = tonumber(ARGV[10])
local daily_r = tonumber(ARGV[11])
local daily_t = tonumber(ARGV[12])
local daily_c = tonumber(ARGV[14])
local monthly_c = tonumber(ARGV[15])

local req_rel = 0
if req_mode == 1 then req_rel = rel_of(KEYS[1]) end
local tok_rel = 0
if tok_mode >= 1 then tok_rel = rel_of(KEYS[2]) end
local qr, qt, qc, mc = 0, 0, 0, 0
if quota == 1 then
  local h = redis.call('HMGET', KEYS[4], 'r', 't', 'c')
  qr = tonumber(h[1]) or 0
  qt = tonumber(h[2]) or 0
  qc = tonumber(h[3]) or 0
  mc = tonumber(redis.call('HGET', KEYS[5], 'c')) or 0
  if daily_r >= 0 and qr >= daily_r then return {4, req_rel, tok_rel, qr, qt, qc, mc} end
  if daily_t >= 0 and qt >= daily_t then return {5, req_rel, tok_rel, qr, qt, qc, mc} end
  if daily_c >= 0 and qc >= daily_c then return {7, req_rel, tok_rel, qr, qt, qc, mc} end
  if monthly_c >= 0 and mc >= monthly_c then return {8, req_rel, tok_rel, qr, qt, qc, mc} end
end
local req_new = nil
if req_mode == 1 then
  req_new = req_rel + req_i1
  if req_new > req_tau then return {1, req_rel, tok_rel, qr, qt, qc, mc} end
end
local tok_new = nil
if tok_mode == 2 then
  tok_new = tok_rel + tok_icost
  if tok_new > tok_tau then return {2, req_rel, tok_rel, qr, qt, qc, mc} end
end
if conc_limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now_us))
  if redis.call('ZCARD', KEYS[3]) >= conc_limit then
    return {3, req_rel, tok_rel, qr, qt, qc, mc}
  end
end

-- everything passed: commit all of it
if req_new then
  store(KEYS[1], req_new)
  req_rel = math.min(req_new, MAXREL)
end
if tok_new then
  store(KEYS[2], tok_new)
  tok_rel = math.min(tok_new, MAXREL)
end
if conc_limit >= 0 then
  redis.call('ZADD', KEYS[3], string.format('%.0f', now_us + lease_ttl_us), ARGV[8])
  local want = math.ceil(lease_ttl_us / 1000)
  if want < 1 then want = 1 end
  if redis.call('PTTL', KEYS[3]) < want then
    redis.call('PEXPIRE', KEYS[3], string.format('%.0f', want))
  end
end
if quota == 1 then
  qr = redis.call('HINCRBY', KEYS[4], 'r', 1)
  if ARGV[16] ~= '0' then
    qc = redis.call('HINCRBY', KEYS[4], 'c', ARGV[16])
    mc = redis.call('HINCRBY', KEYS[5], 'c', ARGV[16])
  end
  redis.call('EXPIRE', KEYS[4], ARGV[13])
  if daily_c >= 0 or monthly_c >= 0 then redis.call('EXPIRE', KEYS[5], ARGV[17]) end
end
return {0, req_rel, tok_rel, qr, qt, qc, mc}
"#
);

/// The end of a request.
///
/// KEYS: 1 token bucket, 2 quota day hash, 3 concurrency zset, 4 the admission day's
/// quota hash, 5 the admission month's quota hash.
/// ARGV: 1 token mode (0 none, 1 charge, -1 refund), 2 interval(|used − reserved|) ns,
/// 3 tokens to add to the day (-1 no quota), 4 release (0/1), 5 lease id,
/// 6 quota key ttl s, 7 cost correction (used − reserved, millionths; 0 none),
/// 8 month key ttl s.  Reply: 1.
pub const SETTLE_LUA: &str = concat!(
    lua_prelude!(),
    r#"
local tok_mode = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
if tok_mode ~= 0 then
  local rel = rel_of(KEYS[1])
  if tok_mode > 0 then
    rel = rel + interval
  else
    rel = rel - interval
    if rel < 0 then rel = 0 end
  end
  store(KEYS[1], rel)
end
if ARGV[3] ~= '-1' then
  if ARGV[3] ~= '0' then redis.call('HINCRBY', KEYS[2], 't', ARGV[3]) end
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[5])
end
-- Spend is corrected where it was reserved; a counter that has expired is not revived.
if ARGV[7] ~= '0' then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    if redis.call('HINCRBY', KEYS[4], 'c', ARGV[7]) < 0 then redis.call('HSET', KEYS[4], 'c', 0) end
  end
  if redis.call('EXISTS', KEYS[5]) == 1 then
    if redis.call('HINCRBY', KEYS[5], 'c', ARGV[7]) < 0 then redis.call('HSET', KEYS[5], 'c', 0) end
  end
end
return 1
"#
);

/// The pre-auth guard for one client address (a request bucket, cost 1).
///
/// KEYS: 1 address bucket. ARGV: 1 interval(1) ns, 2 τ ns.
/// Reply: `{admitted (1/0), rel_ns before the decision}`.
pub const CLIENT_IP_LUA: &str = concat!(
    lua_prelude!(),
    r#"
local rel = rel_of(KEYS[1])
local new = rel + tonumber(ARGV[1])
if new > tonumber(ARGV[2]) then return {0, rel} end
store(KEYS[1], new)
return {1, rel}
"#
);

/// The Redis backend. Cheap to share (`&self` everywhere); see the module docs for the
/// connection behaviour.
pub struct RedisBackend {
    conn: ConnectionManager,
    admit_script: Script,
    settle_script: Script,
    client_ip_script: Script,
    /// Key prefix (already escaped for use inside hash tags).
    prefix: String,
    timeout: Duration,
    /// `host:port/db`, for messages (never the URL: it may hold a password).
    endpoint: String,
    /// Scrubbed from every message, just in case.
    password: Option<String>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Percent-encode `%`, `{` and `}` so the text can sit inside a `{…}` hash tag; an empty
/// text becomes `%` (which no non-empty text encodes to), so tags are never empty.
fn escape_tag(s: &str) -> String {
    if s.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

impl RedisBackend {
    /// Connect to `redis://[:password@]host:port[/db]` (or `rediss://`, `unix://`):
    /// open a connection and load the scripts within 1 s, or fail. A refused connection
    /// fails immediately, so calling this again later is cheap. Once connected the backend
    /// reconnects by itself after Redis goes away and comes back.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(|e| {
            // The parser's messages are fixed strings, but never echo the URL itself.
            BackendError(format!("invalid Redis URL ({})", e.category()))
        })?;
        let info = client.get_connection_info();
        let endpoint = format!("{}/{}", info.addr(), info.redis_settings().db());
        let password = info
            .redis_settings()
            .password()
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None)
            // One attempt per reconnection: a call while Redis is down fails fast, and the
            // next call tries again (the limiter spaces those calls out).
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let scrub = |e: RedisError| scrub_message(&e.to_string(), password.as_deref());
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| BackendError(format!("redis at {endpoint}: {}", scrub(e))))?;
        let backend = RedisBackend {
            conn,
            admit_script: Script::new(ADMIT_LUA),
            settle_script: Script::new(SETTLE_LUA),
            client_ip_script: Script::new(CLIENT_IP_LUA),
            prefix: "sluice".to_string(),
            timeout: CALL_TIMEOUT,
            endpoint,
            password,
        };
        let load = async {
            let mut conn = backend.conn.clone();
            for s in [
                &backend.admit_script,
                &backend.settle_script,
                &backend.client_ip_script,
            ] {
                s.load_async(&mut conn).await?;
            }
            Ok::<(), RedisError>(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, load).await {
            Ok(Ok(())) => Ok(backend),
            Ok(Err(e)) => Err(backend.error(e)),
            Err(_) => Err(BackendError(format!(
                "redis at {}: no connection within {} ms",
                backend.endpoint,
                CONNECT_TIMEOUT.as_millis()
            ))),
        }
    }

    /// Use another key prefix than `sluice` (several deployments sharing one Redis, tests).
    /// Braces and `%` in it are percent-encoded like tenant names.
    pub fn with_key_prefix(mut self, prefix: &str) -> Self {
        self.prefix = escape_tag(prefix);
        self
    }

    /// Use another per-call deadline than 250 ms.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `host:port/db` of the server (no credentials).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The key of one of a tenant's records: `<prefix>:{<tenant>}:<suffix>`.
    pub fn tenant_key(&self, tenant: &str, suffix: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, escape_tag(tenant), suffix)
    }

    /// The key of a client address's bucket: `<prefix>:ip:<addr>`.
    pub fn client_ip_key(&self, addr: &str) -> String {
        format!("{}:ip:{}", self.prefix, addr)
    }

    fn error(&self, e: RedisError) -> BackendError {
        BackendError(format!(
            "redis at {}: {}",
            self.endpoint,
            scrub_message(&e.to_string(), self.password.as_deref())
        ))
    }

    /// Run one script invocation under the deadline, expecting an array of integers.
    async fn run(&self, inv: &ScriptInvocation<'_>, what: &str) -> Result<Vec<i64>, BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<redis::Value>(&mut conn)).await
        {
            Err(_) => Err(BackendError(format!(
                "redis at {}: {what} timed out after {} ms",
                self.endpoint,
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(self.error(e)),
            Ok(Ok(v)) => ints(&v).ok_or_else(|| {
                BackendError(format!(
                    "redis at {}: unexpected reply to {what}",
                    self.endpoint
                ))
            }),
        }
    }
}

/// Replace any occurrence of the password in a message.
fn scrub_message(msg: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_string(),
    }
}

/// An integer reply, or an array of integer replies.
fn ints(v: &redis::Value) -> Option<Vec<i64>> {
    match v {
        redis::Value::Int(i) => Some(vec![*i]),
        redis::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                redis::Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A script's offset (ns after now) as a `tat` on a clock where now = 0.
fn rel(v: i64) -> u64 {
    v.max(0) as u64
}

/// The memory backend's `state_of`, for a `tat` `rel` ns ahead of now.
fn state_at(bucket: &Gcra, rel: u64) -> BucketState {
    let level = bucket.level(rel, 0);
    BucketState {
        limit: bucket.capacity,
        remaining: bucket.capacity.saturating_sub(level),
        reset_ns: rel,
    }
}

/// A count that Redis can hold (HINCRBY takes a signed 64-bit integer).
fn clamp_i64(v: u64) -> u64 {
    v.min(i64::MAX as u64)
}

/// A cost reservation as a script argument (HINCRBY takes a signed 64-bit integer).
fn clamp_cost(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// An optional limit as a script argument (-1 = none).
fn opt_arg(v: Option<u64>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "-1".to_string(),
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn admit(&self, req: &AdmitRequest<'_>) -> Result<Admission, BackendError> {
        let l = req.limits;
        let day = l.quota.as_ref().map(|q| q.day(req.unix_secs));
        let month = l.quota.as_ref().map(|q| q.month(req.unix_secs));
        let day_key = match day {
            Some((d, _)) => self.tenant_key(req.tenant, &format!("q:{d}")),
            None => self.tenant_key(req.tenant, "q"),
        };
        let month_key = match month {
            Some((m, _)) => self.tenant_key(req.tenant, &format!("qm:{m}")),
            None => self.tenant_key(req.tenant, "qm"),
        };
        let mut inv = self.admit_script.prepare_invoke();
        inv.key(self.tenant_key(req.tenant, "req"))
            .key(self.tenant_key(req.tenant, "tok"))
            .key(self.tenant_key(req.tenant, "conc"))
            .key(day_key)
            .key(month_key);
        match &l.requests {
            Some(r) => inv.arg(1).arg(r.bucket.interval(1)).arg(r.bucket.tau()),
            None => inv.arg(0).arg(0).arg(0),
        };
        match &l.tokens {
            Some(b) if req.token_estimate > 0 => {
                inv.arg(2).arg(b.interval(req.token_estimate)).arg(b.tau())
            }
            Some(b) => inv.arg(1).arg(0).arg(b.tau()),
            None => inv.arg(0).arg(0).arg(0),
        };
        inv.arg(l.concurrency.map(i64::from).unwrap_or(-1))
            .arg(req.lease_id)
            .arg(req.lease_ttl_ns.div_ceil(1000));
        match &l.quota {
            Some(q) => inv
                .arg(1)
                .arg(opt_arg(q.daily_requests.map(clamp_i64)))
                .arg(opt_arg(q.daily_tokens.map(clamp_i64))),
            None => inv.arg(0).arg(-1).arg(-1),
        };
        inv.arg(QUOTA_KEY_TTL_SECS);
        match &l.quota {
            Some(q) => inv
                .arg(opt_arg(q.daily_cost.map(clamp_i64)))
                .arg(opt_arg(q.monthly_cost.map(clamp_i64))),
            None => inv.arg(-1).arg(-1),
        };
        inv.arg(clamp_cost(req.cost_estimate))
            .arg(QUOTA_MONTH_KEY_TTL_SECS);

        let r = self.run(&inv, "admit").await?;
        let &[code, req_rel, tok_rel, day_r, day_t, day_c, month_c] = r.as_slice() else {
            return Err(BackendError(format!(
                "redis at {}: unexpected reply to admit",
                self.endpoint
            )));
        };
        let (req_rel, tok_rel) = (rel(req_rel), rel(tok_rel));
        let mut out = Admission {
            requests: l.requests.as_ref().map(|r| state_at(&r.bucket, req_rel)),
            tokens: l.tokens.as_ref().map(|b| state_at(b, tok_rel)),
            quota_used: l.quota.as_ref().map(|_| QuotaUse {
                requests: day_r.max(0) as u64,
                tokens: day_t.max(0) as u64,
                day_cost: day_c.max(0) as u64,
                month_cost: month_c.max(0) as u64,
            }),
            ..Admission::default()
        };
        if code == 0 {
            if let Some(r) = l.requests.as_ref().filter(|r| r.delay) {
                // the memory backend's delay: everything beyond the one unit served now
                out.delay_ns = req_rel.saturating_sub(r.bucket.interval(1));
            }
            return Ok(out);
        }
        let reason = LimitReason::from_code(code)
            .filter(|r| *r != LimitReason::ClientIp)
            .ok_or_else(|| {
                BackendError(format!(
                    "redis at {}: unexpected reply to admit",
                    self.endpoint
                ))
            })?;
        // Retry-after exactly as the memory backend computes it, from the pre-state.
        let retry = match reason {
            LimitReason::QuotaRequests | LimitReason::QuotaTokens | LimitReason::QuotaCostDaily => {
                day.map(|(_, left)| left).unwrap_or(0) * NS_PER_SEC
            }
            LimitReason::QuotaCostMonthly => month.map(|(_, left)| left).unwrap_or(0) * NS_PER_SEC,
            LimitReason::Requests => l
                .requests
                .as_ref()
                .map(|r| r.bucket.check(req_rel, 0, 1).retry_after_ns)
                .unwrap_or(0)
                .max(1),
            LimitReason::Tokens => l
                .tokens
                .as_ref()
                .map(|b| b.check(tok_rel, 0, req.token_estimate).retry_after_ns)
                .unwrap_or(0)
                .max(1),
            LimitReason::Concurrency | LimitReason::ClientIp => CONCURRENCY_RETRY_NS,
        };
        out.refused = Some(reason);
        out.retry_after_ns = retry;
        Ok(out)
    }

    async fn settle(&self, req: &SettleRequest<'_>) -> Result<(), BackendError> {
        let l = req.limits;
        let delta = req.used as i128 - req.reserved as i128;
        let (tok_mode, interval) = match &l.tokens {
            Some(b) if delta > 0 => (1, b.interval(delta.min(u64::MAX as i128) as u64)),
            Some(b) if delta < 0 => (-1, b.interval((-delta).min(u64::MAX as i128) as u64)),
            _ => (0, 0),
        };
        let day = l.quota.as_ref().map(|q| q.day(req.unix_secs).0);
        let release = req.release_concurrency && l.concurrency.is_some();
        if tok_mode == 0 && day.is_none() && !release {
            return Ok(()); // nothing to do: no round trip
        }
        let day_key = match day {
            Some(d) => self.tenant_key(req.tenant, &format!("q:{d}")),
            None => self.tenant_key(req.tenant, "q"),
        };
        let cost_delta = match &l.quota {
            Some(q) if q.limits_cost() => {
                (i128::from(req.cost_used) - i128::from(req.cost_reserved))
                    .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            }
            _ => 0,
        };
        let (admit_day_key, admit_month_key) = match &l.quota {
            Some(q) => (
                self.tenant_key(
                    req.tenant,
                    &format!("q:{}", q.day(req.admitted_unix_secs).0),
                ),
                self.tenant_key(
                    req.tenant,
                    &format!("qm:{}", q.month(req.admitted_unix_secs).0),
                ),
            ),
            None => (
                self.tenant_key(req.tenant, "q"),
                self.tenant_key(req.tenant, "qm"),
            ),
        };
        let mut inv = self.settle_script.prepare_invoke();
        inv.key(self.tenant_key(req.tenant, "tok"))
            .key(day_key)
            .key(self.tenant_key(req.tenant, "conc"))
            .key(admit_day_key)
            .key(admit_month_key)
            .arg(tok_mode)
            .arg(interval)
            .arg(match day {
                Some(_) => clamp_i64(req.used).to_string(),
                None => "-1".to_string(),
            })
            .arg(if release { 1 } else { 0 })
            .arg(req.lease_id)
            .arg(QUOTA_KEY_TTL_SECS)
            .arg(cost_delta)
            .arg(QUOTA_MONTH_KEY_TTL_SECS);
        self.run(&inv, "settle").await.map(|_| ())
    }

    async fn client_ip(&self, key: &str, bucket: &Gcra) -> Result<(bool, u64), BackendError> {
        let mut inv = self.client_ip_script.prepare_invoke();
        inv.key(self.client_ip_key(key))
            .arg(bucket.interval(1))
            .arg(bucket.tau());
        let r = self.run(&inv, "client_ip").await?;
        match r.as_slice() {
            [1, _] => Ok((true, 0)),
            [0, pre] => Ok((false, bucket.check(rel(*pre), 0, 1).retry_after_ns.max(1))),
            _ => Err(BackendError(format!(
                "redis at {}: unexpected reply to client_ip",
                self.endpoint
            ))),
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_escaped_and_distinct() {
        assert_eq!(escape_tag("acme"), "acme");
        assert_eq!(escape_tag(""), "%");
        assert_eq!(escape_tag("a{b}c%"), "a%7Bb%7Dc%25");
        assert_ne!(escape_tag("%7B"), escape_tag("{"));
        assert!(!escape_tag("}{").contains(['{', '}']));
    }

    #[test]
    fn replies_are_parsed_without_panics() {
        use redis::Value;
        assert_eq!(ints(&Value::Int(3)), Some(vec![3]));
        assert_eq!(
            ints(&Value::Array(vec![Value::Int(1), Value::Int(2)])),
            Some(vec![1, 2])
        );
        assert_eq!(ints(&Value::Array(vec![Value::Int(1), Value::Nil])), None);
        assert_eq!(ints(&Value::Nil), None);
        assert_eq!(ints(&Value::Okay), None);
    }

    #[test]
    fn passwords_are_scrubbed() {
        assert_eq!(
            scrub_message("auth hunter2 failed", Some("hunter2")),
            "auth *** failed"
        );
        assert_eq!(scrub_message("x", Some("")), "x");
        assert_eq!(scrub_message("x", None), "x");
    }

    #[test]
    fn state_matches_memory_formula() {
        let g = Gcra::requests(10, NS_PER_SEC, 4); // T = 100 ms, capacity 5
        assert_eq!(
            state_at(&g, 0),
            BucketState {
                limit: 5,
                remaining: 5,
                reset_ns: 0
            }
        );
        let s = state_at(&g, 250_000_000);
        assert_eq!((s.remaining, s.reset_ns), (2, 250_000_000));
    }

    #[tokio::test]
    async fn bad_urls_fail_without_echoing_them() {
        let e = RedisBackend::connect("nonsense://:hunter2@x")
            .await
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("invalid Redis URL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
