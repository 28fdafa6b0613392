//! Upstreams as the request path sees them: endpoints (parsed URLs), the pool of
//! upstream keys, and per-upstream settings. Pure Rust; `relay` turns an endpoint into
//! a Pingora peer.

pub mod breaker;
pub mod clock;
mod keys;
pub mod policy;

pub use breaker::{Breaker, BreakerConfig, CircuitState};
pub use keys::{affinity_hash, KeyPool, UpstreamKey};
pub use policy::{Cooldown, CooldownPolicy, RetryPolicy};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::schema::AuthStyle;
use std::time::Duration;

/// A secret string (upstream key, admin token). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value, for putting on the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as configured (label in logs).
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// A path prefix without trailing slash (`""` or `/anthropic`).
    pub base_path: String,
    /// Used only while no primary endpoint is usable.
    pub backup: bool,
    host_header: String,
}

impl Endpoint {
    /// Parse `http(s)://host[:port][/base/path]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "endpoint url `{url}` must start with http:// or https://"
            ));
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "endpoint url `{url}` must not have a query or fragment"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "endpoint url `{url}` must not carry credentials; use upstream keys"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("endpoint url `{url}` has an invalid host or port"))?;
        let default = if tls { 443 } else { 80 };
        let port = port.unwrap_or(default);
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let host_header = if port == default {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(Endpoint {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port,
            base_path: path.trim_end_matches('/').to_string(),
            backup: false,
            host_header,
        })
    }

    /// The `Host` header value (computed once, at parse time: it goes on every request).
    pub fn host_header(&self) -> &str {
        &self.host_header
    }
}

fn split_host_port(a: &str) -> Option<(&str, Option<u16>)> {
    if a.is_empty() {
        return None;
    }
    if let Some(rest) = a.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((a, None)),
    }
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub tls: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

/// An upstream: where to send a routed request and how.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub keys: KeyPool,
    pub auth: AuthStyle,
    /// `anthropic-version` sent when the client sent none.
    pub anthropic_version: String,
    /// Extra headers set on every upstream request.
    pub set_headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
    pub pool_idle: Duration,
    pub pool_size: usize,
    pub verify_tls: bool,
    pub ca_file: Option<String>,
    pub http2: bool,
    pub retry: RetryPolicy,
    pub cooldown: CooldownPolicy,
    /// One per endpoint (`None` = breaker disabled).
    pub breakers: Vec<Option<Breaker>>,
    /// Active health check (interval, path); results in `healthy`.
    pub health_check: Option<(Duration, String)>,
    /// One per endpoint; false after a failed active health check.
    pub healthy: Vec<AtomicBool>,
    rr: AtomicUsize,
}

impl Upstream {
    /// Build the runtime state for `endpoints` (breakers, health flags).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        endpoints: Vec<Endpoint>,
        keys: KeyPool,
        auth: AuthStyle,
        anthropic_version: String,
        set_headers: Vec<(String, String)>,
        timeouts: Timeouts,
        pool: (Duration, usize),
        tls: (bool, Option<String>),
        http2: bool,
        retry: RetryPolicy,
        cooldown: CooldownPolicy,
        breaker: Option<BreakerConfig>,
        health_check: Option<(Duration, String)>,
    ) -> Self {
        let n = endpoints.len();
        Upstream {
            name,
            breakers: (0..n).map(|_| breaker.map(Breaker::new)).collect(),
            healthy: (0..n).map(|_| AtomicBool::new(true)).collect(),
            endpoints,
            keys,
            auth,
            anthropic_version,
            set_headers,
            timeouts,
            pool_idle: pool.0,
            pool_size: pool.1,
            verify_tls: tls.0,
            ca_file: tls.1,
            http2,
            retry,
            cooldown,
            health_check,
            rr: AtomicUsize::new(0),
        }
    }

    /// Carry the runtime state of the same upstream in the previous config across a
    /// reload: key cooldowns (same id and secret), and per endpoint (same URL) the
    /// circuit breaker and the last active health-check result.
    pub fn inherit(&self, old: &Upstream) {
        for k in self.keys.keys() {
            if let Some(o) = old
                .keys
                .keys()
                .iter()
                .find(|o| o.id == k.id && o.secret == k.secret)
            {
                k.inherit(o);
            }
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let Some(j) = old.endpoints.iter().position(|o| o.url == e.url) else {
                continue;
            };
            if let (Some(Some(b)), Some(Some(ob))) = (self.breakers.get(i), old.breakers.get(j)) {
                b.inherit(ob);
            }
            if let (Some(h), Some(oh)) = (self.healthy.get(i), old.healthy.get(j)) {
                h.store(oh.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Can endpoint `i` take traffic (healthy, circuit not open)?
    pub fn endpoint_usable(&self, i: usize) -> bool {
        self.healthy
            .get(i)
            .is_some_and(|h| h.load(Ordering::Relaxed))
            && self
                .breakers
                .get(i)
                .is_some_and(|b| b.as_ref().is_none_or(Breaker::usable))
    }

    /// The endpoint for the next try: a usable primary not in `avoid`, round robin; then
    /// a usable backup not in `avoid`; then any usable primary, then any usable backup.
    /// Takes the half-open probe slot of the endpoint it returns.
    pub fn pick_endpoint(&self, avoid: &[usize]) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        for (backup, fresh) in [(false, true), (true, true), (false, false), (true, false)] {
            for k in 0..n {
                let i = (start + k) % n;
                if self.endpoints[i].backup != backup || (fresh && avoid.contains(&i)) {
                    continue;
                }
                if !self.endpoint_usable(i) {
                    continue;
                }
                let allowed = match &self.breakers[i] {
                    Some(b) => b.allow(),
                    None => true,
                };
                if allowed {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Record the outcome of a try on endpoint `i` for its breaker.
    pub fn record(&self, i: usize, success: bool) {
        if let Some(Some(b)) = self.breakers.get(i) {
            b.record(success);
        }
    }

    /// Is any endpoint usable right now (for `/readyz`)?
    pub fn any_usable(&self) -> bool {
        (0..self.endpoints.len()).any(|i| self.endpoint_usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_endpoints() {
        let e = Endpoint::parse("https://api.anthropic.com").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.base_path.as_str()),
            (true, "api.anthropic.com", 443, "")
        );
        assert_eq!(e.host_header(), "api.anthropic.com");
        let e = Endpoint::parse("http://127.0.0.1:8081/anthropic/").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.base_path.as_str()),
            (false, "127.0.0.1", 8081, "/anthropic")
        );
        assert_eq!(e.host_header(), "127.0.0.1:8081");
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.host_header(), "[::1]:9000");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://").is_err());
        assert!(Endpoint::parse("https://h:notaport").is_err());
        assert!(Endpoint::parse("https://user:pw@h").is_err());
        assert!(Endpoint::parse("https://h/x?y=1").is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("sk-ant-very-secret".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
