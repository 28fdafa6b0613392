//! Retry and cooldown policies of an upstream.

use std::time::Duration;

/// When and how often to retry before the first byte reached the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total tries, the first included (1 = no retry).
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Connect/TLS failures and connections that broke before a response.
    pub on_connect: bool,
    /// First-byte timeouts.
    pub on_timeout: bool,
    pub on_status: Vec<u16>,
    /// Status classes (4 = 4xx, 5 = 5xx).
    pub on_class: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            on_connect: false,
            on_timeout: false,
            on_status: vec![],
            on_class: vec![],
        }
    }
}

impl RetryPolicy {
    /// Parse one `on` entry: `connect`, `timeout`, `429`, `5xx`.
    pub fn add_on(&mut self, v: &str) -> Result<(), String> {
        let v = v.trim().to_ascii_lowercase();
        match v.as_str() {
            "connect" => self.on_connect = true,
            "timeout" => self.on_timeout = true,
            "4xx" => self.on_class.push(4),
            "5xx" => self.on_class.push(5),
            s => match s.parse::<u16>() {
                Ok(code) if (400..600).contains(&code) => self.on_status.push(code),
                _ => {
                    return Err(format!(
                    "retry.on: `{v}` is not `connect`, `timeout`, a 4xx/5xx status or `4xx`/`5xx`"
                ))
                }
            },
        }
        Ok(())
    }

    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status) || self.on_class.contains(&(status / 100))
    }

    /// Exponential backoff with full jitter before try number `attempt` (1 = first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let nanos = cap.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::random::<u64>() % (nanos + 1))
    }
}

/// How long a key rests after an upstream status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    For(Duration),
    /// The upstream's `retry-after` (or `anthropic-ratelimit-*-reset`), else `fallback`.
    RetryAfter {
        fallback: Duration,
    },
}

/// Per status code or class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CooldownPolicy {
    /// (status or class×100 with `class` set, rule)
    rules: Vec<(u16, bool, Cooldown)>,
}

impl CooldownPolicy {
    /// The defaults: 401/403 30 min, 429 retry-after (10 s without a header), 529 30 s, 5xx 10 s.
    pub fn defaults() -> Self {
        let mut p = CooldownPolicy::default();
        let m = |s| Duration::from_secs(s);
        p.set("401", Cooldown::For(m(1800))).ok();
        p.set("403", Cooldown::For(m(1800))).ok();
        p.set("429", Cooldown::RetryAfter { fallback: m(10) }).ok();
        p.set("529", Cooldown::For(m(30))).ok();
        p.set("5xx", Cooldown::For(m(10))).ok();
        p
    }

    /// Set the rule for `"401"` or `"5xx"`.
    pub fn set(&mut self, key: &str, rule: Cooldown) -> Result<(), String> {
        let k = key.trim().to_ascii_lowercase();
        let (code, class) = match k.as_str() {
            "4xx" => (4, true),
            "5xx" => (5, true),
            s => match s.parse::<u16>() {
                Ok(c) if (400..600).contains(&c) => (c, false),
                _ => {
                    return Err(format!(
                        "cooldown key `{key}` must be a 4xx/5xx status or `4xx`/`5xx`"
                    ))
                }
            },
        };
        self.rules.retain(|r| !(r.0 == code && r.1 == class));
        self.rules.push((code, class, rule));
        Ok(())
    }

    /// Whether any rule covers `status` (so the upstream's hint is worth reading).
    pub fn applies_to(&self, status: u16) -> bool {
        self.rules.iter().any(|r| {
            if r.1 {
                r.0 == status / 100
            } else {
                r.0 == status
            }
        })
    }

    /// The cooldown for `status` (exact code beats class), given the upstream's
    /// retry-after hint.
    pub fn for_status(&self, status: u16, hint: Option<Duration>) -> Option<Duration> {
        let rule = self
            .rules
            .iter()
            .find(|r| !r.1 && r.0 == status)
            .or_else(|| self.rules.iter().find(|r| r.1 && r.0 == status / 100))?;
        Some(match rule.2 {
            Cooldown::For(d) => d,
            Cooldown::RetryAfter { fallback } => hint.unwrap_or(fallback),
        })
    }
}

/// The upstream's hint: `retry-after` (seconds or HTTP date is not supported: seconds
/// only), else the latest `anthropic-ratelimit-*-reset` (RFC 3339) from now.
pub fn retry_hint(retry_after: Option<&str>, resets: &[&str], now_unix: f64) -> Option<Duration> {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<f64>().ok()) {
        if (0.0..86_400.0).contains(&secs) {
            return Some(Duration::from_secs_f64(secs));
        }
    }
    let latest = resets
        .iter()
        .filter_map(|r| parse_rfc3339(r))
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))))?;
    let d = latest - now_unix;
    (d > 0.0 && d < 86_400.0).then(|| Duration::from_secs_f64(d))
}

/// `2026-11-24T04:30:00Z` / `…+08:00` / with fractional seconds → Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac = format!("0.{}", &r[..end]).parse().ok()?;
        rest = &r[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // days from civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parsing() {
        let mut p = RetryPolicy::default();
        for v in ["connect", "timeout", "429", "5xx"] {
            p.add_on(v).unwrap();
        }
        assert!(p.on_connect && p.on_timeout);
        assert!(p.retries_status(429) && p.retries_status(503) && p.retries_status(529));
        assert!(!p.retries_status(400) && !p.retries_status(401));
        assert!(p.add_on("200").is_err());
        assert!(p.add_on("sometimes").is_err());
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..Default::default()
        };
        for attempt in 1..10 {
            for _ in 0..50 {
                let cap = Duration::from_millis((100u64 << (attempt - 1)).min(300));
                assert!(p.backoff(attempt) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 10, "jittered");
    }

    #[test]
    fn cooldowns() {
        let mut p = CooldownPolicy::defaults();
        assert_eq!(p.for_status(401, None), Some(Duration::from_secs(1800)));
        assert_eq!(
            p.for_status(429, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.for_status(429, None), Some(Duration::from_secs(10)));
        assert_eq!(p.for_status(503, None), Some(Duration::from_secs(10)));
        assert_eq!(p.for_status(529, None), Some(Duration::from_secs(30)));
        assert_eq!(p.for_status(400, None), None);
        p.set("5xx", Cooldown::For(Duration::from_secs(1))).unwrap();
        assert_eq!(p.for_status(500, None), Some(Duration::from_secs(1)));
        assert_eq!(
            p.for_status(529, None),
            Some(Duration::from_secs(30)),
            "exact beats class"
        );
        assert!(p.set("2xx", Cooldown::For(Duration::ZERO)).is_err());
    }

    #[test]
    fn hints() {
        let now = parse_rfc3339("2026-11-24T04:30:00Z").unwrap();
        assert_eq!(
            retry_hint(Some("2"), &[], now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_hint(
                None,
                &["2026-11-24T04:30:05Z", "2026-11-24T04:30:03.5Z"],
                now
            ),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_hint(None, &["2026-11-24T12:30:05+08:00"], now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(retry_hint(Some("soon"), &["garbage"], now), None);
        assert_eq!(retry_hint(None, &["2026-11-24T04:29:00Z"], now), None);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800.0));
    }
}
