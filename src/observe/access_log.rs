//! One JSON line per request, written by a dedicated thread so the request path never
//! blocks on stdout or disk. If the writer falls behind, lines are dropped and counted
//! rather than stalling traffic.

use crate::config::LogTarget;
use crate::usage::Usage;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Start writing to `target`. A file that cannot be opened is reported as an error.
    pub fn start(target: &LogTarget) -> std::io::Result<AccessLog> {
        let dropped = Arc::new(AtomicU64::new(0));
        let mut out: Box<dyn Write + Send> = match target {
            LogTarget::Off => return Ok(AccessLog { tx: None, dropped }),
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(16 * 1024);
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut failing = false;
                while let Ok(line) = rx.recv() {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                    // Batch whatever else is already queued into one write.
                    while buf.len() < 60 * 1024 {
                        match rx.try_recv() {
                            Ok(l) => {
                                buf.extend_from_slice(l.as_bytes());
                                buf.push(b'\n');
                            }
                            Err(_) => break,
                        }
                    }
                    let res = out.write_all(&buf).and_then(|_| out.flush());
                    match res {
                        Err(e) if !failing => {
                            log::warn!("access log write failed (lines are being lost): {e}");
                            failing = true;
                        }
                        Ok(()) => failing = false,
                        Err(_) => {}
                    }
                    buf.clear();
                }
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    /// Queue one record; never blocks.
    pub fn write(&self, rec: &AccessRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let line = match serde_json::to_string(rec) {
            Ok(l) => l,
            Err(_) => return,
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    log::warn!("access log is falling behind: {} lines dropped", n + 1);
                }
            }
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
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
