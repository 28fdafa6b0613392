//! Cost of one limiter decision.
//!
//! * `memory/warm_key` — `MemoryBackend::admit_at` for one warm tenant with a request
//!   limit high enough never to refuse: decisions per second on one core (the project
//!   target is ≥ 5 million/s).
//! * `memory/all_limits` — requests + tokens + concurrency + quota: `admit_at` followed by
//!   `settle_at` (reconcile, quota charge, slot release) per element.
//! * `redis/admit`, `redis/admit_settle_all_limits` — the Redis backend against a private
//!   `redis-server` on an ephemeral port (skipped with a note when the binary is missing),
//!   plus p50/p99 over 5000 sequential calls printed to stderr.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::limit::memory::MemoryBackend;
use sluice::limit::redis::RedisBackend;
use sluice::limit::{
    AdmitRequest, Backend, Gcra, Quota, RequestLimit, SettleRequest, TenantLimits,
};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const S: u64 = 1_000_000_000;

/// 10^12 requests a second: one request drains in 1 ns, so with the clock moving 1 ns
/// per call the bucket never refuses.
fn never_refusing_requests() -> RequestLimit {
    RequestLimit {
        bucket: Gcra::requests(1_000_000_000_000, S, 1_000_000),
        delay: false,
    }
}

fn requests_only() -> TenantLimits {
    TenantLimits {
        requests: Some(never_refusing_requests()),
        ..Default::default()
    }
}

fn all_limits() -> TenantLimits {
    TenantLimits {
        requests: Some(never_refusing_requests()),
        tokens: Some(Gcra::tokens(
            1_000_000_000_000_000,
            S,
            1_000_000_000_000_000,
        )),
        concurrency: Some(1_000_000),
        quota: Some(Quota {
            daily_requests: Some(u64::MAX / 2),
            daily_tokens: Some(u64::MAX / 2),
            warn_at: 0.8,
            ..Default::default()
        }),
    }
}

fn admit_req<'a>(tenant: &'a str, limits: &'a TenantLimits, est: u64) -> AdmitRequest<'a> {
    AdmitRequest {
        tenant,
        limits,
        token_estimate: est,
        cost_estimate: 0,
        lease_id: "bench-lease",
        lease_ttl_ns: 60 * S,
        unix_secs: 1_700_000_000,
    }
}

fn settle_req<'a>(tenant: &'a str, limits: &'a TenantLimits) -> SettleRequest<'a> {
    SettleRequest {
        tenant,
        limits,
        reserved: 100,
        used: 80,
        cost_reserved: 0,
        cost_used: 0,
        admitted_unix_secs: 0,
        lease_id: "bench-lease",
        release_concurrency: true,
        unix_secs: 1_700_000_000,
    }
}

fn memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory");
    g.throughput(Throughput::Elements(1));

    let m = MemoryBackend::new();
    // other tenants exist too, as in a real deployment
    let other = requests_only();
    for i in 0..1000 {
        m.admit_at(&admit_req(&format!("tenant-{i}"), &other, 0), S);
    }

    let limits = requests_only();
    let req = admit_req("warm", &limits, 0);
    let mut now = 10 * S;
    let mut refused = 0u64;
    m.admit_at(&req, now);
    g.bench_function("warm_key", |b| {
        b.iter(|| {
            now += 1;
            let a = m.admit_at(black_box(&req), now);
            refused += a.refused.is_some() as u64;
            a
        })
    });
    assert_eq!(
        refused, 0,
        "memory/warm_key: the bench limit refused requests"
    );

    let limits = all_limits();
    let req = admit_req("warm-all", &limits, 100);
    let done = settle_req("warm-all", &limits);
    g.bench_function("all_limits", |b| {
        b.iter(|| {
            now += 1;
            let a = m.admit_at(black_box(&req), now);
            refused += a.refused.is_some() as u64;
            m.settle_at(black_box(&done), now);
            a
        })
    });
    assert_eq!(
        refused, 0,
        "memory/all_limits: the bench limits refused requests"
    );
    g.finish();
}

/// A private `redis-server`, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// `None` (with a note) when there is no `redis-server` binary.
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("note: skipping the Redis benchmarks: cannot start `redis-server` ({e})");
                return None;
            }
        };
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                eprintln!("note: skipping the Redis benchmarks: redis-server did not come up");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// p50/p99/mean of `n` sequential runs of `f`, in µs, printed to stderr.
fn latency<F: FnMut()>(what: &str, n: usize, mut f: F) {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = t.iter().sum::<Duration>() / n as u32;
    eprintln!(
        "{what}: {n} sequential calls: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs, mean {:.1} µs",
        us(t[n / 2]),
        us(t[n * 99 / 100]),
        us(t[n - 1]),
        us(mean)
    );
}

fn redis(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("note: skipping the Redis benchmarks: no runtime ({e})");
            return;
        }
    };
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let r = match rt.block_on(RedisBackend::connect(&url)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("note: skipping the Redis benchmarks: {e}");
            return;
        }
    };
    let simple = requests_only();
    let req = admit_req("bench", &simple, 0);
    let all = all_limits();
    let req_all = admit_req("bench-all", &all, 100);
    let done_all = settle_req("bench-all", &all);
    let admit = |req: &AdmitRequest<'_>| {
        let a = rt.block_on(r.admit(req)).expect("redis admit");
        assert!(a.refused.is_none(), "the bench limits refused a request");
    };

    // manual percentiles (a warm-up first)
    for _ in 0..500 {
        admit(&req);
    }
    latency("redis/admit (requests)", 5000, || admit(&req));
    latency("redis/admit (all limits)", 5000, || {
        admit(&req_all);
        rt.block_on(r.settle(&done_all)).expect("redis settle");
    });
    // `admit` alone with all limits: settle the lease outside the timed part
    let mut t = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let s = Instant::now();
        admit(&req_all);
        t.push(s.elapsed());
        rt.block_on(r.settle(&done_all)).expect("redis settle");
    }
    t.sort();
    eprintln!(
        "redis/admit only (all limits): p50 {:.1} µs, p99 {:.1} µs",
        t[2500].as_secs_f64() * 1e6,
        t[4950].as_secs_f64() * 1e6
    );

    let mut g = c.benchmark_group("redis");
    g.throughput(Throughput::Elements(1));
    g.bench_function("admit", |b| b.iter(|| admit(black_box(&req))));
    g.bench_function("admit_settle_all_limits", |b| {
        b.iter(|| {
            admit(black_box(&req_all));
            rt.block_on(r.settle(black_box(&done_all)))
                .expect("redis settle");
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
