//! `load-streams`: hold many concurrent SSE streams open through a proxy and
//! measure what each open stream costs it (benches/load/streams.sh).
//!
//! ```text
//! load-streams --target 127.0.0.1:PORT --streams 10000 [--key K] [--header 'k: v']...
//!              [--body FILE] [--open-rate 2000] [--sources 8] [--warmup 3] [--window 10]
//!              [--pid PID]...
//! ```
//!
//! Each stream is one HTTP/1.1 connection carrying one `POST /v1/messages`
//! (`"stream": true`) to the mock upstream, directly or through a proxy; the request
//! asks the mock (`x-mock-timestamps: 1`, see `sluice::mock`) to precede every SSE
//! event with a `: ts=<µs since the Unix epoch>` comment line stamped when the
//! event is written. The client decodes the chunked body, splits it into events,
//! and records arrival − send time for each event (one arrival time per `read`).
//!
//! Phases: the `--pid` processes' RSS is read while idle; the streams are opened at
//! `--open-rate` per second (at most 512 connecting at once), from source addresses
//! 127.0.0.1 … 127.0.0.`--sources` in turn; once every stream has answered 200 the
//! client waits `--warmup` seconds, then measures for `--window` seconds: events and
//! their latency, the `--pid` processes' CPU time (utime + stime from `/proc`) and
//! RSS. It prints one JSON object on stdout and exits, closing every stream.
//! Progress goes to stderr. The exit status is 1 if not every stream opened or a
//! stream ended during the window.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// Hold many SSE streams open and measure per-event latency and proxy cost.
#[derive(Parser, Debug)]
#[command(name = "load-streams", about)]
struct Args {
    /// Address of the mock upstream or of the proxy in front of it.
    #[arg(long)]
    target: SocketAddr,
    /// Number of concurrent streams.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Gateway key sent as `x-api-key` (default: $LOAD_KEY, else none).
    #[arg(long)]
    key: Option<String>,
    /// Extra request header `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Request body (default: a small streaming Messages request).
    #[arg(long)]
    body: Option<std::path::PathBuf>,
    /// Streams opened per second.
    #[arg(long, default_value_t = 2000)]
    open_rate: u32,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N, used in turn (1: let the kernel pick).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    sources: u8,
    /// Seconds between the last stream opening and the measurement window.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Length of the measurement window in seconds.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Seconds to wait for every stream to open before giving up.
    #[arg(long, default_value_t = 120)]
    open_timeout: u64,
    /// Process whose RSS and CPU time are measured (repeatable: summed).
    #[arg(long = "pid")]
    pids: Vec<u32>,
}

const DEFAULT_BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Stream to many clients, please."}]}"#;

const PHASE_RAMP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_DONE: u8 = 2;

/// State shared by every stream task.
struct Shared {
    phase: AtomicU8,
    opened: AtomicU64,
    failed: AtomicU64,
    /// Streams that ended (EOF or error) while measuring.
    ended_in_window: AtomicU64,
    /// Events received while measuring.
    events: AtomicU64,
    /// Latencies (µs) of the events received while measuring.
    samples: Mutex<Vec<u32>>,
    /// First failure, for the report.
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(why);
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Incremental chunked-body decoder feeding an SSE event splitter.
#[derive(Default)]
struct Decoder {
    /// Raw bytes not yet decoded (a partial chunk-size line).
    raw: Vec<u8>,
    /// Bytes left in the current chunk's data.
    left: usize,
    /// CRLF bytes still to skip after a chunk's data.
    skip: usize,
    /// The terminating zero-size chunk was seen.
    done: bool,
    /// Decoded SSE bytes not yet split into events.
    sse: Vec<u8>,
}

impl Decoder {
    /// Decodes `input`; returns false on bad framing.
    fn feed(&mut self, mut input: &[u8]) -> bool {
        while !input.is_empty() && !self.done {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                self.sse.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.skip = 2;
                }
            } else {
                // A chunk-size line, possibly split across reads.
                match memchr::memchr(b'\n', input) {
                    None => {
                        self.raw.extend_from_slice(input);
                        if self.raw.len() > 64 {
                            return false;
                        }
                        input = &[];
                    }
                    Some(i) => {
                        self.raw.extend_from_slice(&input[..i]);
                        input = &input[i + 1..];
                        let line = std::mem::take(&mut self.raw);
                        let text = std::str::from_utf8(&line).unwrap_or("");
                        let hex = text.trim().split(';').next().unwrap_or("");
                        let Ok(size) = usize::from_str_radix(hex, 16) else {
                            return false;
                        };
                        if size == 0 {
                            self.done = true;
                        } else {
                            self.left = size;
                        }
                    }
                }
            }
        }
        true
    }

    /// Calls `f(ts)` for every complete event's `: ts=` stamp (0 when it has none)
    /// and drops the complete events.
    fn events(&mut self, mut f: impl FnMut(u64)) {
        let mut start = 0;
        while let Some(i) = memchr::memmem::find(&self.sse[start..], b"\n\n") {
            let event = &self.sse[start..start + i];
            let ts = event
                .strip_prefix(b": ts=")
                .and_then(|rest| {
                    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
                })
                .unwrap_or(0);
            f(ts);
            start += i + 2;
        }
        self.sse.drain(..start);
    }
}

async fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(target).await;
    };
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    sock.connect(target).await
}

/// One stream: connect, send the request, check the head, then read events until
/// the measurement ends.
async fn stream(
    shared: Arc<Shared>,
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    request: Arc<Vec<u8>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut conn = match connect(target, source).await {
        Ok(c) => c,
        Err(e) => return shared.fail(format!("connect: {e}")),
    };
    let _ = conn.set_nodelay(true);
    if let Err(e) = conn.write_all(&request).await {
        return shared.fail(format!("write: {e}"));
    }
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    let body_start = loop {
        if have == buf.len() {
            return shared.fail("response head over 4 KiB".into());
        }
        match conn.read(&mut buf[have..]).await {
            Ok(0) => return shared.fail("closed before the response head".into()),
            Ok(n) => have += n,
            Err(e) => return shared.fail(format!("read head: {e}")),
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf[..have]) {
            Ok(httparse::Status::Complete(n)) => {
                if resp.code != Some(200) {
                    let text = String::from_utf8_lossy(&buf[n..have]).into_owned();
                    return shared.fail(format!("status {:?}: {text}", resp.code));
                }
                let chunked = resp.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                });
                if !chunked {
                    return shared.fail("response is not chunked".into());
                }
                break n;
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return shared.fail(format!("bad response head: {e}")),
        }
    };
    shared.opened.fetch_add(1, Ordering::Relaxed);
    drop(permit);

    let mut dec = Decoder::default();
    let mut pending = buf[body_start..have].to_vec();
    let mut lat: Vec<u32> = Vec::new();
    loop {
        let arrival = now_micros();
        if !dec.feed(&pending) {
            shared.fail("bad chunked framing".into());
            break;
        }
        let measuring = shared.phase.load(Ordering::Relaxed) == PHASE_MEASURE;
        let mut n = 0u64;
        dec.events(|ts| {
            n += 1;
            if measuring && ts != 0 {
                let d = arrival.saturating_sub(ts);
                lat.push(u32::try_from(d).unwrap_or(u32::MAX));
            }
        });
        if measuring && n > 0 {
            shared.events.fetch_add(n, Ordering::Relaxed);
            let mut s = shared.samples.lock().unwrap_or_else(|e| e.into_inner());
            s.append(&mut lat);
        }
        lat.clear();
        if dec.done {
            break;
        }
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.clear();
                pending.extend_from_slice(&buf[..n]);
            }
        }
    }
    if shared.phase.load(Ordering::Relaxed) != PHASE_DONE {
        shared.ended_in_window.fetch_add(1, Ordering::Relaxed);
    }
}

/// `utime + stime` (clock ticks) and `VmRSS` (KiB) of a process, summed over `pids`.
fn proc_usage(pids: &[u32]) -> (u64, u64) {
    let mut ticks = 0;
    let mut rss = 0;
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the `(comm)`: state is the 1st, utime the 12th, stime the 13th.
            if let Some((_, rest)) = stat.rsplit_once(") ") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                for i in [11, 12] {
                    ticks += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (ticks, rss)
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn build_request(args: &Args) -> Result<Vec<u8>, String> {
    let body = match &args.body {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => DEFAULT_BODY.as_bytes().to_vec(),
    };
    let key = args.key.clone().or_else(|| std::env::var("LOAD_KEY").ok());
    let mut req = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         anthropic-version: 2023-06-01\r\nx-mock-timestamps: 1\r\ncontent-length: {}\r\n",
        args.target,
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("x-api-key: {k}\r\n"));
    }
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("--header {h:?}: expected `name: value`"));
        };
        req.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(&body);
    Ok(req)
}

async fn run(args: Args) -> Result<bool, String> {
    let request = Arc::new(build_request(&args)?);
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(PHASE_RAMP),
        opened: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        ended_in_window: AtomicU64::new(0),
        events: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
        first_error: Mutex::new(None),
    });
    let tick = clock_ticks_per_sec();
    let (_, rss_idle) = proc_usage(&args.pids);

    // Open the streams at the requested pace.
    let t_open = Instant::now();
    let connecting = Arc::new(Semaphore::new(512));
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.open_rate.max(1)));
    for i in 0..args.streams {
        let due = t_open + gap.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = connecting
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let source = (args.sources > 1)
            .then(|| Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(args.sources)) as u8));
        tokio::spawn(stream(
            shared.clone(),
            args.target,
            source,
            request.clone(),
            permit,
        ));
    }
    let deadline = t_open + Duration::from_secs(args.open_timeout);
    loop {
        let opened = shared.opened.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if opened + failed >= args.streams as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_secs = t_open.elapsed().as_secs_f64();
    let opened = shared.opened.load(Ordering::Relaxed);
    eprintln!(
        "load-streams: {opened}/{} streams open after {open_secs:.1}s ({} failed)",
        args.streams,
        shared.failed.load(Ordering::Relaxed)
    );

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (cpu0, rss_start) = proc_usage(&args.pids);
    let t0 = Instant::now();
    shared.phase.store(PHASE_MEASURE, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    shared.phase.store(PHASE_DONE, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, rss_end) = proc_usage(&args.pids);

    let events = shared.events.load(Ordering::Relaxed);
    let mut samples =
        std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|e| e.into_inner()));
    samples.sort_unstable();
    let open_now = opened.saturating_sub(shared.ended_in_window.load(Ordering::Relaxed));
    let rss_open = rss_start.max(rss_end);
    let cpu_secs = cpu1.saturating_sub(cpu0) as f64 / tick as f64;
    let per_stream_kib = if opened > 0 && !args.pids.is_empty() {
        rss_open.saturating_sub(rss_idle) as f64 / opened as f64
    } else {
        0.0
    };
    let cpu_ms_per_1000 = if events > 0 && !args.pids.is_empty() {
        cpu_secs * 1e3 / (events as f64 / 1000.0)
    } else {
        0.0
    };
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = serde_json::json!({
        "streams": args.streams,
        "opened": opened,
        "failed": shared.failed.load(Ordering::Relaxed),
        "ended_in_window": shared.ended_in_window.load(Ordering::Relaxed),
        "open_at_end": open_now,
        "open_secs": (open_secs * 10.0).round() / 10.0,
        "window_secs": (secs * 100.0).round() / 100.0,
        "events": events,
        "events_per_sec": (events as f64 / secs).round(),
        "lat_p50_us": percentile(&samples, 0.50),
        "lat_p90_us": percentile(&samples, 0.90),
        "lat_p99_us": percentile(&samples, 0.99),
        "lat_p999_us": percentile(&samples, 0.999),
        "lat_max_us": samples.last().copied().unwrap_or(0),
        "rss_idle_kib": rss_idle,
        "rss_open_kib": rss_open,
        "rss_per_stream_kib": (per_stream_kib * 100.0).round() / 100.0,
        "cpu_secs": cpu_secs,
        "cpu_ms_per_1000_events": (cpu_ms_per_1000 * 1000.0).round() / 1000.0,
        "first_error": first_error,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{report}");
    let _ = out.flush();
    Ok(opened == args.streams as u64 && shared.ended_in_window.load(Ordering::Relaxed) == 0)
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load-streams: cannot start tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match rt.block_on(run(args)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("load-streams: {e}");
            2
        }
    };
    // Exiting closes every stream at once; no need to wait for the tasks.
    std::process::exit(code);
}
