//! A line writer on its own thread, used by the access and audit logs: the request path
//! only queues a line (never blocks); the thread batches lines into few writes, rotates
//! files by size (`path` → `path.1` → … → `path.<keep>`), and survives an unwritable
//! file or a full disk — lost lines are counted (`sluice_log_lines_dropped_total{log}`)
//! and warned about, the file is retried every few seconds, and serving goes on.

use crate::config::LogTarget;
use crate::observe::metrics::METRICS;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size-based rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

/// Handle to a writer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct LogWriter {
    name: &'static str,
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
}

enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: Option<File>,
        size: u64,
        rotation: Option<Rotation>,
        retry_at: Instant,
    },
}

const RETRY_OPEN: Duration = Duration::from_secs(5);

impl Sink {
    fn write(&mut self, buf: &[u8], name: &str) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Sink::File {
                path,
                file,
                size,
                rotation,
                retry_at,
            } => {
                if file.is_none() {
                    if Instant::now() < *retry_at {
                        return Err(std::io::Error::other("log file unavailable"));
                    }
                    match open(path) {
                        Ok((f, s)) => {
                            *file = Some(f);
                            *size = s;
                            log::warn!("{name} log {} is writable again", path.display());
                        }
                        Err(e) => {
                            *retry_at = Instant::now() + RETRY_OPEN;
                            return Err(e);
                        }
                    }
                }
                let mut rest = buf;
                while !rest.is_empty() {
                    // With rotation, write as many whole lines as fit, rotate, go on.
                    let mut take = rest.len();
                    if let Some(r) = rotation {
                        let room = r.max_bytes.saturating_sub(*size) as usize;
                        if take > room {
                            take = match rest[..room.min(rest.len())]
                                .iter()
                                .rposition(|b| *b == b'\n')
                            {
                                Some(i) => i + 1,
                                // not even one line fits: a fresh file takes it whole
                                None if *size == 0 => rest
                                    .iter()
                                    .position(|b| *b == b'\n')
                                    .map_or(rest.len(), |i| i + 1),
                                None => 0,
                            };
                        }
                        if take == 0 {
                            *file = None;
                            rotate(path, r.keep);
                            match open(path) {
                                Ok((f, s)) => {
                                    *file = Some(f);
                                    *size = s;
                                }
                                Err(e) => {
                                    *retry_at = Instant::now() + RETRY_OPEN;
                                    return Err(e);
                                }
                            }
                            continue;
                        }
                    }
                    let f = file
                        .as_mut()
                        .ok_or_else(|| std::io::Error::other("log file unavailable"))?;
                    if let Err(e) = f.write_all(&rest[..take]) {
                        // Reopen on the next batch (the file may have been removed, the disk
                        // may have space again).
                        *file = None;
                        *retry_at = Instant::now() + RETRY_OPEN;
                        return Err(e);
                    }
                    *size += take as u64;
                    rest = &rest[take..];
                }
                Ok(())
            }
        }
    }
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, size))
}

/// `path.(keep-1)` → `path.keep`, …, `path` → `path.1`. With `keep` = 0 the current file
/// is simply truncated.
fn rotate(path: &Path, keep: usize) {
    let name = |i: usize| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        let _ = std::fs::remove_file(path);
        return;
    }
    let _ = std::fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(name(i), name(i + 1));
    }
    let _ = std::fs::rename(path, name(1));
}

impl LogWriter {
    /// A writer that drops everything (`path: off`).
    pub fn off(name: &'static str) -> Self {
        LogWriter {
            name,
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Start the writer thread. Never fails because of the file: an unwritable file is
    /// warned about and retried.
    pub fn start(
        name: &'static str,
        target: &LogTarget,
        rotation: Option<Rotation>,
    ) -> std::io::Result<Self> {
        let sink = match target {
            LogTarget::Off => return Ok(LogWriter::off(name)),
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(p) => {
                let file = match open(p) {
                    Ok((f, s)) => Some((f, s)),
                    Err(e) => {
                        log::warn!("{name} log {} cannot be opened ({e}); retrying, lines are counted as lost meanwhile", p.display());
                        None
                    }
                };
                let size = file.as_ref().map_or(0, |f| f.1);
                Sink::File {
                    path: p.clone(),
                    file: file.map(|f| f.0),
                    size,
                    rotation,
                    retry_at: Instant::now(),
                }
            }
        };
        let (tx, rx) = sync_channel::<String>(16 * 1024);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        std::thread::Builder::new()
            .name(format!("sluice-{name}-log"))
            .spawn(move || run(name, sink, rx, d))?;
        Ok(LogWriter {
            name,
            tx: Some(tx),
            dropped,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queue one line (without the newline); never blocks.
    pub fn write_line(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                lost(self.name, &self.dropped, 1, "the writer is falling behind");
            }
        }
    }

    /// Lines lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn lost(name: &str, dropped: &AtomicU64, n: u64, why: &str) {
    METRICS.log_dropped.with_label_values(&[name]).inc_by(n);
    let before = dropped.fetch_add(n, Ordering::Relaxed);
    // warn at 1, 2, 4, 8… lost lines: visible, but not a second flood
    if (before + n).next_power_of_two() != before.next_power_of_two() || before == 0 {
        log::warn!("{name} log: {} lines lost so far ({why})", before + n);
    }
}

/// How often the writer drains the queue. Senders never wake it (`try_send` into a
/// channel nobody is blocked on costs no syscall), so a busy gateway pays one write per
/// batch, not a wake-up and a write per line.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

const BATCH: usize = 60 * 1024;

fn run(name: &'static str, mut sink: Sink, rx: Receiver<String>, dropped: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(BATCH + 4096);
    loop {
        let mut lines = 0u64;
        let mut closed = false;
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(l) => {
                    buf.extend_from_slice(l.as_bytes());
                    buf.push(b'\n');
                    lines += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let full = buf.len() >= BATCH;
        if lines > 0 {
            if let Err(e) = sink.write(&buf, name) {
                lost(name, &dropped, lines, &e.to_string());
            }
            buf.clear();
        }
        if closed {
            return;
        }
        if !full {
            // drained: wait for the next batch (a full batch means more is queued)
            std::thread::sleep(FLUSH_EVERY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(p: &Path, lines: usize) -> String {
        for _ in 0..200 {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            if t.lines().count() >= lines {
                return t;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let w = LogWriter::start(
            "test",
            &LogTarget::File(p.clone()),
            Some(Rotation {
                max_bytes: 1000,
                keep: 2,
            }),
        )
        .unwrap();
        for i in 0..60 {
            w.write_line(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(80)));
            std::thread::sleep(Duration::from_millis(2)); // separate batches
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(p.exists());
        assert!(dir.path().join("audit.jsonl.1").exists());
        assert!(dir.path().join("audit.jsonl.2").exists());
        assert!(!dir.path().join("audit.jsonl.3").exists(), "keep: 2");
        for f in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(len <= 1000, "{f} is {len} bytes");
        }
        // the newest line is in the current file, and every line is whole JSON
        let cur = std::fs::read_to_string(&p).unwrap();
        assert!(cur.contains("\"n\":59"));
        for f in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
            for l in std::fs::read_to_string(dir.path().join(f)).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
    }

    #[test]
    fn unwritable_file_counts_losses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        let p = sub.join("access.log");
        // the directory does not exist yet: nothing can be written
        let w = LogWriter::start("test-unwritable", &LogTarget::File(p.clone()), None).unwrap();
        w.write_line("{\"a\":1}".into());
        for _ in 0..100 {
            if w.dropped() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(w.dropped(), 1);
        // once it can be written, lines arrive again (after the retry interval)
        std::fs::create_dir_all(&sub).unwrap();
        std::thread::sleep(RETRY_OPEN + Duration::from_millis(100));
        w.write_line("{\"a\":2}".into());
        assert_eq!(wait_for(&p, 1).trim(), "{\"a\":2}");
    }
}
