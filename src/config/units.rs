//! Humane units used in the config file: durations (`250ms`, `30s`, `5m`), sizes
//! (`64KiB`, `32MiB`) and rates (`100/m`). Each type deserializes from a string (or a
//! bare integer where that is unambiguous) and reports a readable error otherwise.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A duration written as `250ms`, `30s`, `5m`, `1h`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

/// A byte size written as `64KiB`, `32MiB`, `1GiB`, `512KB`, `1024` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

/// A rate written as `N/s`, `N/m`, `N/h` (also `N/d`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Events allowed per `per`.
    pub count: u64,
    /// The period the count applies to.
    pub per: Duration,
}

impl Rate {
    /// Events per second as a float.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.as_secs_f64()
    }
}

/// A fraction written as `80%` or `0.8`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

/// Parse `80%` / `0.8` into a fraction in (0, 1].
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("invalid percentage `{t}` (write e.g. 80%)"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!(
            "percentage `{t}` must be above 0% and at most 100%"
        ));
    }
    Ok(v)
}

/// Parse a UTC offset: `+08:00`, `-05:30`, `+8`, `Z`, `UTC`. Returns seconds.
pub fn parse_utc_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let err = || format!("invalid UTC offset `{t}` (write e.g. +08:00 or -05:00)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(err()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None => (rest, "0"),
    };
    let h: i64 = h.parse().map_err(|_| err())?;
    let m: i64 = m.parse().map_err(|_| err())?;
    if h > 14 || m > 59 {
        return Err(err());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Parse a humane duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (write e.g. 250ms, 30s, 5m)".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "duration `{t}` has no unit (write e.g. {t}s or {t}ms)"
        ));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration `{t}`: {e} (write e.g. 250ms, 30s, 5m)"))
}

/// Parse a humane byte size.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(format!("invalid size `{t}` (write e.g. 64KiB, 32MiB)"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size unit `{unit}` in `{t}` (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size `{t}` (write e.g. 64KiB, 32MiB)"))?;
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 / 2.0 {
        return Err(format!("size `{t}` is out of range"));
    }
    Ok(v.round() as u64)
}

/// Parse a rate `N/s|m|h|d`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim();
    let err = || format!("invalid rate `{t}` (write N/s, N/m or N/h, e.g. 100/m)");
    let (n, unit) = t.split_once('/').ok_or_else(err)?;
    let count: u64 = n.trim().parse().map_err(|_| err())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        _ => return Err(err()),
    };
    if count == 0 {
        return Err(format!("rate `{t}` must be greater than zero"));
    }
    Ok(Rate { count, per })
}

struct StrVisitor<F>(&'static str, F);

impl<'de, T, F: Fn(&str) -> Result<T, String>> Visitor<'de> for StrVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.1)(&v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.1)(&v.to_string()).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.1)(&v.to_string()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor("a duration such as 30s", |s: &str| {
            parse_duration(s).map(Dur)
        }))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor("a size such as 64KiB", |s: &str| {
            parse_size(s).map(Size)
        }))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor("a percentage such as 80%", |s: &str| {
            parse_percent(s).map(Percent)
        }))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor("a rate such as 100/m", parse_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512KB").unwrap(), 512_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1e400MiB").is_err());
    }

    #[test]
    fn percents_and_offsets() {
        assert_eq!(parse_percent("80%").unwrap(), 0.8);
        assert_eq!(parse_percent("0.5").unwrap(), 0.5);
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("120%").is_err());
        assert!(parse_percent("lots").is_err());
        assert_eq!(parse_utc_offset("+08:00").unwrap(), 8 * 3600);
        assert_eq!(parse_utc_offset("-05:30").unwrap(), -(5 * 3600 + 30 * 60));
        assert_eq!(parse_utc_offset("Z").unwrap(), 0);
        assert_eq!(parse_utc_offset("+8").unwrap(), 8 * 3600);
        assert!(parse_utc_offset("08:00").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }

    #[test]
    fn rates() {
        let r = parse_rate("100/m").unwrap();
        assert_eq!(r.count, 100);
        assert_eq!(r.per, Duration::from_secs(60));
        assert!((parse_rate("10/s").unwrap().per_second() - 10.0).abs() < 1e-9);
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("x/m").is_err());
        assert!(parse_rate("5/week").is_err());
        assert!(parse_rate("0/s").is_err());
    }
}
