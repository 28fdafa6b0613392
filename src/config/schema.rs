//! The YAML file as written by operators (SPEC §3). Every struct rejects unknown keys;
//! every key has a default. Nothing here is used at request time: `build` turns it into
//! the runtime [`crate::config::Config`].

use super::units::{Dur, Percent, Rate, Size};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    pub server: Server,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    /// `memory` (default) or `redis://host:port/db`.
    pub state: Option<String>,
    pub upstreams: BTreeMap<String, Upstream>,
    pub routes: Vec<Route>,
    pub limits: Limits,
    pub tenants: Vec<Tenant>,
    pub filters: Filters,
    pub cache: Cache,
    pub auth: AuthConf,
    pub pricing: Option<Pricing>,
    pub logging: Logging,
}

/// `auth: {jwt: [...]}` — token issuers trusted besides static keys.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConf {
    pub jwt: Vec<JwtIssuerConf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConf {
    pub name: String,
    pub algorithms: Vec<String>,
    pub key: JwtKeyConf,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "default_jwt_lifetime")]
    pub max_lifetime: Dur,
    #[serde(default = "default_jwt_leeway")]
    pub leeway: Dur,
    /// Claim naming the tenant (default `sub`).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
}

fn default_jwt_lifetime() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}

fn default_jwt_leeway() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}

fn default_tenant_claim() -> String {
    "sub".into()
}

/// Exactly one of: a shared secret (HS256), a PEM public key (RS256/ES256), a JWKS file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConf {
    pub secret: Option<Secret>,
    pub pem_file: Option<String>,
    pub jwks_file: Option<String>,
}

/// Required request signatures for a tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    pub secret: Secret,
    #[serde(default = "default_sig_window")]
    pub window: Dur,
}

fn default_sig_window() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}

/// `pricing: {currency, models: [...]}` — per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default = "default_currency")]
    pub currency: String,
    pub models: Vec<ModelPrice>,
}

fn default_currency() -> String {
    "USD".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub model: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_write: f64,
    #[serde(default)]
    pub cache_read: f64,
}

/// `spend_alert: {rate, window}`: warn when a tenant spends more than `rate` within `window`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendAlert {
    pub rate: f64,
    #[serde(default = "default_spend_window")]
    pub window: Dur,
}

fn default_spend_window() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}

/// `cache: {enabled, ttl, max_entries, max_body, shared, streams}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    pub enabled: bool,
    pub ttl: Dur,
    pub max_entries: usize,
    pub max_body: Size,
    pub shared: bool,
    pub streams: bool,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            enabled: false,
            ttl: Dur(std::time::Duration::from_secs(300)),
            max_entries: 10_000,
            max_body: Size(1 << 20),
            shared: false,
            streams: false,
        }
    }
}

/// `filters: {request, response}`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    pub request: Option<RequestFilters>,
    pub response: Option<ResponseFilters>,
}

/// One `redact` entry: a built-in name, or a named custom regex.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RedactEntry {
    Builtin(String),
    Custom {
        name: String,
        pattern: String,
        /// Longest match in characters (the stream filter's hold-back window).
        #[serde(default)]
        max_len: Option<usize>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFilters {
    #[serde(default)]
    pub redact: Vec<RedactEntry>,
    #[serde(default = "default_redaction")]
    pub replacement: String,
    pub block: Option<BlockWords>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFilters {
    #[serde(default)]
    pub redact: Vec<RedactEntry>,
    #[serde(default = "default_redaction")]
    pub replacement: String,
    pub block: Option<BlockWords>,
}

/// `block: {words, words_file, replacement}` (replacement: responses only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockWords {
    #[serde(default)]
    pub words: Vec<String>,
    pub words_file: Option<String>,
    /// In responses, banned words are replaced by this.
    pub replacement: Option<String>,
}

fn default_redaction() -> String {
    "[REDACTED]".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub threads: usize,
    pub grace_period: Dur,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub error_log: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            threads: 2,
            grace_period: Dur(std::time::Duration::from_secs(30)),
            pid_file: "/tmp/sluice.pid".into(),
            upgrade_sock: "/tmp/sluice_upgrade.sock".into(),
            error_log: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub addr: String,
    #[serde(default)]
    pub tcp: ListenerTcp,
    #[serde(default)]
    pub keepalive: DownstreamKeepalive,
    /// Terminate TLS here (HTTP/2 is offered by ALPN).
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerTcp {
    pub keepalive: Option<Dur>,
    pub fastopen: Option<usize>,
    pub reuseport: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamKeepalive {
    pub idle: Dur,
    pub max_requests: u32,
}

impl Default for DownstreamKeepalive {
    fn default() -> Self {
        DownstreamKeepalive {
            idle: Dur(std::time::Duration::from_secs(75)),
            max_requests: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub addr: String,
    #[serde(default)]
    pub token: Option<Secret>,
}

/// Where a secret comes from. Secrets are never written inline in the file.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub keys: Vec<UpstreamKey>,
    #[serde(default)]
    pub auth: AuthStyle,
    #[serde(default)]
    pub tls: UpstreamTls,
    #[serde(default = "default_version")]
    pub anthropic_version: String,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub retry: Retry,
    /// Per status class (`"401"`, `"429"`, `"5xx"`…): a duration, or `retry-after`.
    #[serde(default)]
    pub cooldown: BTreeMap<String, String>,
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    pub health_check: Option<HealthCheck>,
}

/// `retry: {attempts, backoff, max_backoff, on}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Total tries, the first included.
    pub attempts: u32,
    pub backoff: Dur,
    pub max_backoff: Dur,
    /// `connect`, `timeout`, status codes (`429`), or classes (`5xx`).
    pub on: Vec<serde_yaml::Value>,
}

impl Default for Retry {
    fn default() -> Self {
        use std::time::Duration as D;
        Retry {
            attempts: 3,
            backoff: Dur(D::from_millis(200)),
            max_backoff: Dur(D::from_secs(5)),
            on: [
                "connect", "timeout", "401", "403", "429", "500", "502", "503", "504", "529",
            ]
            .iter()
            .map(|s| serde_yaml::Value::String(s.to_string()))
            .collect(),
        }
    }
}

/// `circuit_breaker: {error_rate, window, min_requests, open_for}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    pub enabled: bool,
    pub error_rate: Percent,
    pub window: Dur,
    pub min_requests: u32,
    pub open_for: Dur,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        use std::time::Duration as D;
        CircuitBreaker {
            enabled: true,
            error_rate: Percent(0.5),
            window: Dur(D::from_secs(30)),
            min_requests: 20,
            open_for: Dur(D::from_secs(30)),
        }
    }
}

/// `health_check: {interval, path}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
    #[serde(default = "default_hc_path")]
    pub path: String,
}

fn default_hc_interval() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

fn default_hc_path() -> String {
    "/v1/models".into()
}

fn default_version() -> String {
    "2023-06-01".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// Used only while no primary endpoint is usable.
    #[serde(default)]
    pub backup: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamKey {
    pub env: Option<String>,
    pub file: Option<String>,
    /// A name for the key in logs and metrics (defaults to `<upstream>-<index>`).
    pub id: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStyle {
    #[default]
    XApiKey,
    Bearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    pub ca_file: Option<String>,
    pub verify: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca_file: None,
            verify: true,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect: Dur,
    pub tls: Dur,
    pub first_byte: Dur,
    pub idle: Dur,
    pub total: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        use std::time::Duration as D;
        Timeouts {
            connect: Dur(D::from_secs(5)),
            tls: Dur(D::from_secs(10)),
            first_byte: Dur(D::from_secs(60)),
            idle: Dur(D::from_secs(300)),
            total: Dur(D::from_secs(15 * 60)),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    pub size: usize,
    pub idle: Dur,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            size: 128,
            idle: Dur(std::time::Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub upstream: String,
    #[serde(default)]
    pub prefix: bool,
    /// Override `cache.enabled` for this route.
    pub cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body: Size,
    /// Pre-auth guard by client address.
    pub client_ip: Option<ClientIpLimit>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    // Defaults for every tenant (each overridable per tenant):
    pub requests: Option<RequestsLimit>,
    pub tokens: Option<TokensLimit>,
    pub concurrency: Option<u32>,
    pub quota: Option<QuotaLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: Size(32 << 20),
            client_ip: None,
            trusted_proxies: Vec::new(),
            requests: None,
            tokens: None,
            concurrency: None,
            quota: None,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientIpLimit {
    pub rate: Rate,
    #[serde(default)]
    pub burst: u64,
}

/// `requests: {rate, burst, delay}` — nginx `limit_req`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RequestsLimit {
    pub rate: Rate,
    #[serde(default)]
    pub burst: u64,
    #[serde(default)]
    pub delay: bool,
}

/// `tokens: {rate, burst}` — burst defaults to one period's worth.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TokensLimit {
    pub rate: Rate,
    pub burst: Option<u64>,
}

/// `quota: {daily_tokens, daily_requests, daily_cost, monthly_cost, warn_at, utc_offset}`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    pub daily_tokens: Option<u64>,
    pub daily_requests: Option<u64>,
    /// Spend per day / calendar month in the `pricing` currency (needs `pricing`).
    pub daily_cost: Option<f64>,
    pub monthly_cost: Option<f64>,
    #[serde(default = "default_warn_at")]
    pub warn_at: Percent,
    /// `+08:00`, `-05:00`, `Z` (default: UTC).
    pub utc_offset: Option<String>,
}

fn default_warn_at() -> Percent {
    Percent(0.8)
}

/// Per-tenant overrides of `limits`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimits {
    pub requests: Option<RequestsLimit>,
    pub tokens: Option<TokensLimit>,
    pub concurrency: Option<u32>,
    pub quota: Option<QuotaLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: String,
    #[serde(default)]
    pub keys: Vec<TenantKey>,
    pub biz: Option<String>,
    #[serde(default)]
    pub ip_allow: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub limits: TenantLimits,
    /// Override `cache.enabled` (and the route's setting) for this tenant.
    pub cache: Option<bool>,
    /// JWT claim values that map to this tenant (default: the tenant's name).
    #[serde(default)]
    pub jwt_subjects: Vec<String>,
    /// Require HMAC-signed requests.
    pub signing: Option<Signing>,
    pub spend_alert: Option<SpendAlert>,
}

/// A tenant key: its SHA-256 (hex), or for local setups the key itself from env/file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKey {
    pub sha256: Option<String>,
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    pub access: AccessLog,
    pub audit: Option<AuditLog>,
}

/// `audit: {path, bodies, rotate, keep}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLog {
    pub path: String,
    /// Include request and response bodies (after redaction). Off by default.
    #[serde(default)]
    pub bodies: bool,
    #[serde(default = "default_rotate")]
    pub rotate: Size,
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_rotate() -> Size {
    Size(256 << 20)
}

fn default_keep() -> usize {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// `stdout`, `off`, or a file path (appended to).
    pub path: String,
    pub format: LogFormat,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            path: "stdout".into(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
}
