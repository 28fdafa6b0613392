//! One JSON line per request, written by a [`LogWriter`] thread so the request path never
//! blocks on stdout or disk. If the writer falls behind, lines are dropped and counted
//! rather than stalling traffic.

use crate::config::LogTarget;
use crate::observe::log_writer::LogWriter;
use crate::usage::Usage;
use serde::Serialize;

/// What one access log line holds. Never a key, never a body.
#[derive(Debug, Serialize, Default)]
pub struct AccessRecord<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub client_ip: Option<String>,
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub biz: Option<&'a str>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub model: Option<&'a str>,
    pub stream: bool,
    pub upstream: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub upstream_ms: f64,
    pub overhead_ms: f64,
    pub usage: Option<Usage>,
    /// Upstream tries (0 = none made, 1 = no retry).
    pub attempts: u32,
    /// Cost of the usage, in the `pricing` currency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// The access log: one JSON line per request.
#[derive(Clone)]
pub struct AccessLog {
    writer: LogWriter,
}

impl AccessLog {
    /// Start writing to `target`.
    pub fn start(target: &LogTarget) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            writer: LogWriter::start("access", target, None)?,
        })
    }

    /// Queue one record; never blocks.
    pub fn write(&self, rec: &AccessRecord<'_>) {
        if let Ok(line) = serde_json::to_string(rec) {
            self.writer.write_line(line);
        }
    }

    /// Lines lost (writer behind or file unwritable).
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    pub fn enabled(&self) -> bool {
        self.writer.enabled()
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without pulling in a date crate.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// RFC 3339 UTC timestamp with milliseconds for any time.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let now = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let ms = now.subsec_millis();
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days → civil date algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 24);
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn writes_lines_to_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        let log = AccessLog::start(&LogTarget::File(p.clone())).unwrap();
        let rec = AccessRecord {
            request_id: "req_1",
            method: "POST",
            path: "/v1/messages",
            status: 200,
            ..Default::default()
        };
        log.write(&rec);
        log.write(&rec);
        for _ in 0..100 {
            if std::fs::read_to_string(&p)
                .unwrap_or_default()
                .lines()
                .count()
                == 2
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["request_id"], "req_1");
    }
}
