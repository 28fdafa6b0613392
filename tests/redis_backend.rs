//! The Redis limiter backend against a real `redis-server` that each test starts on an
//! ephemeral port (and kills on drop). The binary must be installed: these tests fail,
//! rather than skip, without it.
//!
//! The main check drives the memory backend (on an explicit clock) and the Redis backend
//! (on Redis's clock) through the same sequences and requires the same decisions.

use sluice::limit::memory::MemoryBackend;
use sluice::limit::redis::RedisBackend;
use sluice::limit::{
    Admission, AdmitRequest, Backend, Gcra, LimitReason, Quota, RequestLimit, SettleRequest,
    TenantLimits,
};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// A private `redis-server`, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): the Redis backend tests need the binary \
                     on PATH (install it with `apt-get install -y redis-server`)"
                )
            });
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server on port {port} exited at start: {status}");
            }
            if ping(port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Does something answer PING with +PONG on this port?
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(&server.url())
        .await
        .expect("connect to the test redis-server")
}

/// A raw connection for inspecting keys.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

fn requests(count: u64, per_ns: u64, burst: u64, delay: bool) -> RequestLimit {
    RequestLimit {
        bucket: Gcra::requests(count, per_ns, burst),
        delay,
    }
}

fn quota(daily_requests: Option<u64>, daily_tokens: Option<u64>) -> Quota {
    Quota {
        daily_requests,
        daily_tokens,
        warn_at: 0.8,
        ..Default::default()
    }
}

/// One step of a scenario.
#[derive(Debug, Clone)]
enum Step {
    /// Admit with this token estimate and lease id.
    Admit { est: u64, lease: &'static str },
    /// Admit with a spend reservation (millionths).
    AdmitCost { cost: u64, lease: &'static str },
    /// Settle a spend reservation made at unix time `admitted`.
    SettleCost {
        reserved: u64,
        used: u64,
        admitted: u64,
        lease: &'static str,
    },
    /// Settle a request: reserved, used, lease, release the slot.
    Settle {
        reserved: u64,
        used: u64,
        lease: &'static str,
        release: bool,
    },
    /// Let time pass (really for Redis, on the explicit clock for memory).
    Sleep(u64),
    /// Move the quota clock (unix seconds) to this value.
    Unix(u64),
}

use Step::*;

fn admit(est: u64, lease: &'static str) -> Step {
    Admit { est, lease }
}

fn settle(reserved: u64, used: u64, lease: &'static str) -> Step {
    Settle {
        reserved,
        used,
        lease,
        release: true,
    }
}

/// Are two admissions the same decision (retry/delay/reset within `tol` ns, since the
/// Redis clock keeps running between steps)?
fn same(m: &Admission, r: &Admission, tol: u64) -> Result<(), String> {
    let near = |a: u64, b: u64| a.abs_diff(b) <= tol;
    if m.refused != r.refused {
        return Err(format!(
            "refused: memory {:?}, redis {:?}",
            m.refused, r.refused
        ));
    }
    if !near(m.retry_after_ns, r.retry_after_ns) {
        return Err(format!(
            "retry_after: memory {}, redis {}",
            m.retry_after_ns, r.retry_after_ns
        ));
    }
    if !near(m.delay_ns, r.delay_ns) {
        return Err(format!(
            "delay: memory {}, redis {}",
            m.delay_ns, r.delay_ns
        ));
    }
    if m.quota_used != r.quota_used {
        return Err(format!(
            "quota_used: memory {:?}, redis {:?}",
            m.quota_used, r.quota_used
        ));
    }
    // Redis's clock runs on between steps (memory's is frozen), so its buckets may have
    // drained a little more: a level that sits exactly on a unit boundary in memory can
    // show one more unit remaining in Redis, never fewer.
    for (what, a, b) in [
        ("requests", m.requests, r.requests),
        ("tokens", m.tokens, r.tokens),
    ] {
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b))
                if a.limit == b.limit
                    && (a.remaining..=a.remaining + 1).contains(&b.remaining)
                    && near(a.reset_ns, b.reset_ns) => {}
            _ => return Err(format!("{what}: memory {a:?}, redis {b:?}")),
        }
    }
    Ok(())
}

/// Run `steps` through both backends; returns the memory backend's decisions.
async fn cross_check(
    r: &RedisBackend,
    tenant: &str,
    limits: &TenantLimits,
    steps: &[Step],
) -> Vec<Admission> {
    let m = MemoryBackend::new();
    let mut now = 10 * S;
    let mut unix = 1_700_000_000u64;
    let mut decisions = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Admit { .. } | AdmitCost { .. } => {
                let (est, cost, lease) = match step {
                    Admit { est, lease } => (*est, 0, *lease),
                    AdmitCost { cost, lease } => (0, *cost, *lease),
                    _ => unreachable!(),
                };
                let req = AdmitRequest {
                    tenant,
                    limits,
                    token_estimate: est,
                    cost_estimate: cost,
                    lease_id: lease,
                    lease_ttl_ns: 60 * S,
                    unix_secs: unix,
                };
                let a = m.admit_at(&req, now);
                let b = r.admit(&req).await.expect("redis admit");
                if let Err(e) = same(&a, &b, 20 * MS) {
                    panic!("{tenant}: step {i} {step:?}: {e}\nmemory: {a:?}\nredis:  {b:?}");
                }
                decisions.push(a);
            }
            Settle {
                reserved,
                used,
                lease,
                release,
            } => {
                let req = SettleRequest {
                    tenant,
                    limits,
                    reserved: *reserved,
                    used: *used,
                    cost_reserved: 0,
                    cost_used: 0,
                    admitted_unix_secs: unix,
                    lease_id: lease,
                    release_concurrency: *release,
                    unix_secs: unix,
                };
                m.settle_at(&req, now);
                r.settle(&req).await.expect("redis settle");
            }
            SettleCost {
                reserved,
                used,
                admitted,
                lease,
            } => {
                let req = SettleRequest {
                    tenant,
                    limits,
                    reserved: 0,
                    used: 0,
                    cost_reserved: *reserved,
                    cost_used: *used,
                    admitted_unix_secs: *admitted,
                    lease_id: lease,
                    release_concurrency: true,
                    unix_secs: unix,
                };
                m.settle_at(&req, now);
                r.settle(&req).await.expect("redis settle");
            }
            Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                now += ms * MS;
            }
            Unix(u) => unix = *u,
        }
    }
    decisions
}

fn refusals(d: &[Admission]) -> Vec<Option<LimitReason>> {
    d.iter().map(|a| a.refused).collect()
}

#[tokio::test]
async fn matches_memory_requests_only() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    // 10 a minute, burst 4: five at once, then refusals with ~6 s retry-after
    let l = TenantLimits {
        requests: Some(requests(10, 60 * S, 4, false)),
        ..Default::default()
    };
    let d = cross_check(&r, "req-only", &l, &vec![admit(0, "a"); 8]).await;
    assert_eq!(d.iter().filter(|a| a.refused.is_none()).count(), 5);
    assert_eq!(d[5].refused, Some(LimitReason::Requests));
    assert_eq!(d[5].retry_after_ns, 6 * S);

    // 10/s, burst 1, with generous sleeps: the bucket drains between bursts
    let l = TenantLimits {
        requests: Some(requests(10, S, 1, false)),
        ..Default::default()
    };
    let steps = [
        admit(0, "a"),
        admit(0, "b"),
        admit(0, "c"),
        Sleep(400),
        admit(0, "d"),
        admit(0, "e"),
        admit(0, "f"),
    ];
    let d = cross_check(&r, "req-sleep", &l, &steps).await;
    assert_eq!(
        refusals(&d),
        vec![
            None,
            None,
            Some(LimitReason::Requests),
            None,
            None,
            Some(LimitReason::Requests)
        ]
    );

    // delay mode (nginx without nodelay): admitted with growing delays, then refused
    let l = TenantLimits {
        requests: Some(requests(10, S, 3, true)),
        ..Default::default()
    };
    let d = cross_check(&r, "req-delay", &l, &vec![admit(0, "a"); 5]).await;
    // (rounded: the Redis clock runs on a little between the calls)
    let delays: Vec<u64> = d.iter().map(|a| (a.delay_ns + MS / 2) / MS).collect();
    assert_eq!(delays, vec![0, 100, 200, 300, 0]);
    assert_eq!(d[4].refused, Some(LimitReason::Requests));
}

#[tokio::test]
async fn stored_tat_keeps_nanoseconds() {
    // 3 a second: T = 333 333 333.3 ns, rounded up to …334 ns as in the memory backend;
    // the stored tat (ns) must keep that sub-microsecond part, not round to whole µs.
    // (Decisions right at a 1 ns boundary cannot be compared on a live clock; the digits
    // of the stored tat can.)
    let server = RedisServer::start();
    let r = backend(&server).await;
    let l = TenantLimits {
        requests: Some(requests(3, S, 5, false)),
        ..Default::default()
    };
    let d = cross_check(&r, "ns", &l, &vec![admit(0, "a"); 2]).await;
    assert_eq!(refusals(&d), vec![None, None]);
    assert_eq!(d[1].requests.map(|s| s.reset_ns), Some(666_666_668));
    let mut raw = raw(&server).await;
    let tat: String = redis::cmd("GET")
        .arg(r.tenant_key("ns", "req"))
        .query_async(&mut raw)
        .await
        .unwrap();
    // Redis's clock has whole microseconds, so the last three digits are 2·334 mod 1000
    assert!(tat.ends_with("668"), "stored tat {tat}");
    assert!(tat.len() >= 19, "stored tat {tat} is not in nanoseconds");
}

#[tokio::test]
async fn matches_memory_tokens_with_reconcile() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    // 1000 tokens a minute, capacity 1000
    let l = TenantLimits {
        tokens: Some(Gcra::tokens(1000, 60 * S, 1000)),
        ..Default::default()
    };
    let steps = [
        admit(930, "a"),
        admit(930, "b"),        // does not fit
        settle(930, 40, "a"),   // real use 40: refund 890
        admit(930, "c"),        // fits now
        settle(930, 1500, "c"), // overuse is charged
        admit(1, "d"),          // bucket over-full
        admit(0, "e"),          // no estimate: not token-checked
        settle(0, 0, "e"),
        settle(1, 0, "d"),
        settle(0, 0, "x"),
        settle(100_000, 0, "y"), // a refund far below empty stops at empty
        admit(1000, "f"),
        admit(1, "g"),
        admit(2000, "h"), // more than the capacity never fits
    ];
    let d = cross_check(&r, "tok", &l, &steps).await;
    use LimitReason::Tokens;
    assert_eq!(
        refusals(&d),
        vec![
            None,
            Some(Tokens),
            None,
            Some(Tokens),
            None,
            None,
            Some(Tokens),
            Some(Tokens)
        ]
    );
    assert_eq!(d[0].tokens.map(|t| t.remaining), Some(70));
}

#[tokio::test]
async fn matches_memory_concurrency_with_release() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let l = TenantLimits {
        concurrency: Some(2),
        ..Default::default()
    };
    let steps = [
        admit(0, "a"),
        admit(0, "b"),
        admit(0, "c"),
        settle(0, 0, "a"),
        admit(0, "d"),
        admit(0, "e"),
        Settle {
            reserved: 0,
            used: 0,
            lease: "b",
            release: false,
        }, // keeps the slot
        admit(0, "f"),
        settle(0, 0, "b"),
        settle(0, 0, "d"),
        admit(0, "g"),
        admit(0, "h"),
    ];
    let d = cross_check(&r, "conc", &l, &steps).await;
    use LimitReason::Concurrency as C;
    assert_eq!(
        refusals(&d),
        vec![None, None, Some(C), None, Some(C), Some(C), None, None]
    );
    assert_eq!(d[2].retry_after_ns, S);
}

#[tokio::test]
async fn matches_memory_quotas() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let l = TenantLimits {
        quota: Some(quota(Some(3), Some(500))),
        ..Default::default()
    };
    let day = 1_700_000_000 / 86_400 * 86_400;
    let steps = [
        Unix(day + 1000),
        admit(0, "a"),
        settle(0, 100, "a"),
        admit(0, "b"),
        settle(0, 450, "b"), // 550 tokens today: over
        admit(0, "c"),       // refused on tokens (requests still 2 < 3)
        Unix(day + 86_400 + 5),
        admit(0, "d"), // a new day
        admit(0, "e"),
        admit(0, "f"),
        admit(0, "g"), // 4th request of the day
        Unix(day + 86_400 * 3),
        admit(0, "h"),
    ];
    let d = cross_check(&r, "quota", &l, &steps).await;
    use LimitReason::{QuotaRequests as QR, QuotaTokens as QT};
    assert_eq!(
        refusals(&d),
        vec![None, None, Some(QT), None, None, None, Some(QR), None]
    );
    assert_eq!(d[2].retry_after_ns, (86_400 - 1000) * S);
    let used = |d: &Admission| d.quota_used.map(|u| (u.requests, u.tokens));
    assert_eq!(used(&d[2]), Some((2, 550)));
    assert_eq!(used(&d[6]), Some((3, 0)));
}

#[tokio::test]
async fn matches_memory_spend_quotas() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    // 1.00 a day, 1.50 a month (millionths)
    let l = TenantLimits {
        quota: Some(Quota {
            daily_cost: Some(1_000_000),
            monthly_cost: Some(1_500_000),
            warn_at: 0.8,
            ..Default::default()
        }),
        ..Default::default()
    };
    let t0 = 1_764_000_000; // 2025-11-24 16:00 UTC
    let steps = [
        Unix(t0),
        AdmitCost {
            cost: 600_000,
            lease: "a",
        },
        AdmitCost {
            cost: 600_000,
            lease: "b",
        }, // admitted: 0.60 < 1.00
        AdmitCost {
            cost: 1,
            lease: "c",
        }, // refused: reservations fill the day
        SettleCost {
            reserved: 600_000,
            used: 100_000,
            admitted: t0,
            lease: "a",
        },
        SettleCost {
            reserved: 600_000,
            used: 100_000,
            admitted: t0,
            lease: "b",
        },
        AdmitCost {
            cost: 700_000,
            lease: "d",
        }, // 0.20 spent: room again
        Unix(t0 + 9 * 3600), // the next day
        AdmitCost {
            cost: 700_000,
            lease: "e",
        }, // month: 0.90 + 0.70
        AdmitCost {
            cost: 1,
            lease: "f",
        }, // refused: the month is spent
        // yesterday's reservation settles late: only the month is corrected
        SettleCost {
            reserved: 700_000,
            used: 0,
            admitted: t0,
            lease: "d",
        },
        AdmitCost {
            cost: 0,
            lease: "g",
        },
    ];
    let d = cross_check(&r, "spend", &l, &steps).await;
    use LimitReason::{QuotaCostDaily as CD, QuotaCostMonthly as CM};
    assert_eq!(
        refusals(&d),
        vec![None, None, Some(CD), None, None, Some(CM), None]
    );
    assert_eq!(d[2].retry_after_ns, 8 * 3600 * S);
    assert_eq!(d[5].retry_after_ns, (6 * 86_400 - 3600) * S);
    let cost = |d: &Admission| d.quota_used.map(|u| (u.day_cost, u.month_cost));
    assert_eq!(cost(&d[3]), Some((900_000, 900_000)));
    assert_eq!(cost(&d[4]), Some((700_000, 1_600_000)));
    assert_eq!(cost(&d[6]), Some((700_000, 900_000)));
    // the month's hash holds the month's spend and expires (35 days after its last write)
    let month = Quota::default().month(t0).0;
    let mut raw = raw(&server).await;
    let key = r.tenant_key("spend", &format!("qm:{month}"));
    let c: i64 = redis::cmd("HGET")
        .arg(&key)
        .arg("c")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(c, 900_000);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 34 * 86_400 && ttl <= 35 * 86_400, "TTL {ttl}");
}

#[tokio::test]
async fn matches_memory_all_limits() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    // slow rates so that the Redis clock moving a few ms between steps changes nothing
    let l = TenantLimits {
        requests: Some(requests(10, 60 * S, 3, false)),
        tokens: Some(Gcra::tokens(1000, 60 * S, 1000)),
        concurrency: Some(2),
        quota: Some(quota(Some(6), Some(2000))),
    };
    let steps = [
        Unix(1_700_000_000),
        admit(100, "a"),
        admit(100, "b"),
        admit(100, "c"), // concurrency full: nothing else moves
        settle(100, 10, "a"),
        admit(100, "d"),
        admit(100, "e"), // concurrency again
        settle(100, 10, "b"),
        settle(100, 10, "d"),
        admit(100, "f"), // the 4th request: fills the request bucket
        admit(900, "g"), // still requests first
        Unix(1_700_000_000 + 86_400),
        admit(0, "h"), // requests still refuse on a new day
    ];
    let d = cross_check(&r, "all", &l, &steps).await;
    use LimitReason::{Concurrency as C, Requests as R};
    assert_eq!(
        refusals(&d),
        vec![None, None, Some(C), None, Some(C), None, Some(R), Some(R)]
    );

    // the order of checks: quota first, then requests, tokens, concurrency
    let l = TenantLimits {
        requests: Some(requests(10, 60 * S, 1, false)),
        tokens: Some(Gcra::tokens(1000, 60 * S, 1000)),
        concurrency: Some(1),
        quota: Some(quota(Some(2), None)),
    };
    let steps = [
        Unix(1_700_000_000),
        admit(2000, "a"), // tokens refuse (requests pass)
        admit(10, "b"),
        admit(10, "c"), // concurrency refuses
        settle(10, 10, "b"),
        admit(10, "d"),
        settle(10, 10, "d"),
        admit(10, "e"), // quota refuses before the request bucket would
    ];
    let d = cross_check(&r, "order{x}", &l, &steps).await;
    use LimitReason::{QuotaRequests as QR, Tokens as T};
    assert_eq!(refusals(&d), vec![Some(T), None, Some(C), None, Some(QR)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admissions_are_atomic_across_clients() {
    let server = RedisServer::start();
    let a = Arc::new(backend(&server).await);
    let b = Arc::new(backend(&server).await);
    let limits = Arc::new(TenantLimits {
        requests: Some(requests(10, S, 19, false)),
        ..Default::default()
    });
    let start = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let be = if i % 2 == 0 { a.clone() } else { b.clone() };
            let limits = limits.clone();
            tokio::spawn(async move {
                let req = AdmitRequest {
                    tenant: "race",
                    limits: &limits,
                    token_estimate: 0,
                    cost_estimate: 0,
                    lease_id: "l",
                    lease_ttl_ns: S,
                    unix_secs: 0,
                };
                be.admit(&req).await.expect("admit").refused.is_none()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.expect("task") as u64;
    }
    let elapsed = start.elapsed();
    // 20 = burst + 1; one more per 100 ms only if the storm itself lasted that long
    let slack = elapsed.as_millis() as u64 / 100;
    assert!(
        (20..=20 + slack).contains(&admitted),
        "admitted {admitted} of 200 in {elapsed:?} (expected exactly 20)"
    );
    eprintln!("atomicity: {admitted} admitted of 200 in {elapsed:?}");
}

#[tokio::test]
async fn concurrency_leases_release_and_expire() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let l = TenantLimits {
        concurrency: Some(2),
        ..Default::default()
    };
    let req = |lease: &'static str, ttl_ns: u64| AdmitRequest {
        tenant: "leases",
        limits: &l,
        token_estimate: 0,
        cost_estimate: 0,
        lease_id: lease,
        lease_ttl_ns: ttl_ns,
        unix_secs: 0,
    };
    let done = |lease: &'static str| SettleRequest {
        tenant: "leases",
        limits: &l,
        reserved: 0,
        used: 0,
        cost_reserved: 0,
        cost_used: 0,
        admitted_unix_secs: 0,
        lease_id: lease,
        release_concurrency: true,
        unix_secs: 0,
    };
    assert_eq!(r.admit(&req("a", 60 * S)).await.unwrap().refused, None);
    assert_eq!(r.admit(&req("b", 60 * S)).await.unwrap().refused, None);
    let c = r.admit(&req("c", 60 * S)).await.unwrap();
    assert_eq!(c.refused, Some(LimitReason::Concurrency));
    assert_eq!(c.retry_after_ns, S);
    r.settle(&done("a")).await.unwrap();
    assert_eq!(r.admit(&req("c", 60 * S)).await.unwrap().refused, None);
    assert_eq!(
        r.admit(&req("d", 60 * S)).await.unwrap().refused,
        Some(LimitReason::Concurrency)
    );

    // a lease that is never released (a crashed instance) frees itself after its ttl
    r.settle(&done("b")).await.unwrap();
    assert_eq!(
        r.admit(&req("crashed", 200 * MS)).await.unwrap().refused,
        None
    );
    assert_eq!(
        r.admit(&req("e", 60 * S)).await.unwrap().refused,
        Some(LimitReason::Concurrency)
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(r.admit(&req("e", 60 * S)).await.unwrap().refused, None);
    let mut raw = raw(&server).await;
    let leases: Vec<String> = redis::cmd("ZRANGE")
        .arg(r.tenant_key("leases", "conc"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(leases.len(), 2);
    assert!(!leases.contains(&"crashed".to_string()), "{leases:?}");
}

#[tokio::test]
async fn every_key_expires_on_its_own() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let tenant = "ttl{odd}%name";
    let l = TenantLimits {
        requests: Some(requests(10, S, 5, false)),
        tokens: Some(Gcra::tokens(1000, 60 * S, 1000)),
        concurrency: Some(5),
        quota: Some(quota(Some(100), Some(100_000))),
    };
    let unix = 1_700_000_000;
    let a = AdmitRequest {
        tenant,
        limits: &l,
        token_estimate: 500,
        cost_estimate: 0,
        lease_id: "a",
        lease_ttl_ns: 30 * S,
        unix_secs: unix,
    };
    assert_eq!(r.admit(&a).await.unwrap().refused, None);
    r.settle(&SettleRequest {
        tenant,
        limits: &l,
        reserved: 500,
        used: 700,
        cost_reserved: 0,
        cost_used: 0,
        admitted_unix_secs: 0,
        lease_id: "zzz", // another lease: "a" stays
        release_concurrency: true,
        unix_secs: unix,
    })
    .await
    .unwrap();
    assert!(
        r.client_ip("192.0.2.7", &Gcra::requests(1, S, 3))
            .await
            .unwrap()
            .0
    );

    let day = quota(None, None).day(unix).0;
    let mut raw = raw(&server).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.sort();
    let esc = "ttl%7Bodd%7D%25name";
    assert_eq!(
        keys,
        vec![
            "sluice:ip:192.0.2.7".to_string(),
            format!("sluice:{{{esc}}}:conc"),
            format!("sluice:{{{esc}}}:q:{day}"),
            format!("sluice:{{{esc}}}:req"),
            format!("sluice:{{{esc}}}:tok"),
        ]
    );
    for k in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut raw)
            .await
            .unwrap();
        let max = match k {
            k if k.ends_with(":req") => 1_200 + 100, // tat 100 ms ahead + 1 s
            k if k.ends_with(":tok") => 42_000 + 1_000 + 100, // 700 tokens = 42 s + 1 s
            k if k.ends_with(":conc") => 30_000,
            k if k.contains(":q:") => 2 * 86_400_000,
            _ => 2_000,
        };
        assert!(pttl > 0 && pttl <= max, "{k}: PTTL {pttl} (max {max})");
    }
    let hash: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(r.tenant_key(tenant, &format!("q:{day}")))
        .query_async(&mut raw)
        .await
        .unwrap();
    let want: std::collections::BTreeMap<String, String> = [
        ("r".to_string(), "1".to_string()),
        ("t".to_string(), "700".to_string()),
    ]
    .into();
    assert_eq!(hash, want);
    // the request bucket's key really goes away once its tat has passed
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(r.tenant_key(tenant, "req"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn client_ip_buckets_are_separate_and_retry_is_exact() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let m = MemoryBackend::new();
    let b = Gcra::requests(1, S, 1); // 1/s, burst 1
    for addr in ["10.0.0.1", "2001:db8::1"] {
        for i in 0..3 {
            let (ok, retry) = r.client_ip(addr, &b).await.unwrap();
            let (mok, mretry) = m.client_ip_at(addr, &b, 5 * S);
            assert_eq!(ok, mok, "{addr} #{i}");
            assert!(
                retry.abs_diff(mretry) <= 20 * MS,
                "{addr} #{i}: retry {retry} vs {mretry}"
            );
        }
    }
    let (ok, retry) = r.client_ip("10.0.0.1", &b).await.unwrap();
    assert!(!ok);
    assert!(retry <= S && retry > S - 100 * MS, "retry {retry}");
    assert!(r.client_ip("10.0.0.2", &b).await.unwrap().0);
    // after the retry-after, it is admitted again
    tokio::time::sleep(Duration::from_nanos(retry) + Duration::from_millis(5)).await;
    assert!(r.client_ip("10.0.0.1", &b).await.unwrap().0);
}

#[tokio::test]
async fn redis_down_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let port = server.port;
    let r = backend(&server).await;
    assert_eq!(r.name(), "redis");
    let l = TenantLimits {
        requests: Some(requests(10, S, 100, false)),
        concurrency: Some(10),
        quota: Some(quota(Some(1000), None)),
        ..Default::default()
    };
    let a = AdmitRequest {
        tenant: "down",
        limits: &l,
        token_estimate: 0,
        cost_estimate: 0,
        lease_id: "x",
        lease_ttl_ns: S,
        unix_secs: 0,
    };
    let s = SettleRequest {
        tenant: "down",
        limits: &l,
        reserved: 0,
        used: 0,
        cost_reserved: 0,
        cost_used: 0,
        admitted_unix_secs: 0,
        lease_id: "x",
        release_concurrency: true,
        unix_secs: 0,
    };
    assert!(r.admit(&a).await.is_ok());

    server.kill();
    for _ in 0..3 {
        let t = Instant::now();
        let e = r.admit(&a).await.expect_err("admit with redis down");
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "admit took {:?}",
            t.elapsed()
        );
        assert!(e.to_string().contains("limit backend unavailable"), "{e}");
        let t = Instant::now();
        assert!(r.settle(&s).await.is_err());
        assert!(r
            .client_ip("10.1.1.1", &Gcra::requests(1, S, 1))
            .await
            .is_err());
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "settle+client_ip took {:?}",
            t.elapsed()
        );
    }

    // connecting while it is down fails quickly, and never shows the password
    let t = Instant::now();
    let e = RedisBackend::connect(&format!("redis://:hunter2secret@127.0.0.1:{port}/0"))
        .await
        .expect_err("connect to a dead port");
    assert!(
        t.elapsed() < Duration::from_millis(1_100),
        "connect took {:?}",
        t.elapsed()
    );
    assert!(!e.to_string().contains("hunter2secret"), "{e}");
    eprintln!("connect error: {e}");

    // the same backend reconnects by itself once Redis is back
    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match r.admit(&a).await {
            Ok(x) => {
                assert_eq!(x.refused, None);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no reconnect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and the scripts are reloaded on the fresh server (NOSCRIPT fallback)
    assert!(r.settle(&s).await.is_ok());
    assert!(
        r.client_ip("10.1.1.1", &Gcra::requests(1, S, 1))
            .await
            .unwrap()
            .0
    );
}

#[tokio::test]
async fn wrong_password_is_an_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // a server that requires a password
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--requirepass", "rightpass"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install -y redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bad = RedisBackend::connect(&format!("redis://:wrongpass-xyz@127.0.0.1:{port}/0")).await;
    let good = RedisBackend::connect(&format!("redis://:rightpass@127.0.0.1:{port}/0")).await;
    let _ = child.kill();
    let _ = child.wait();
    let e = bad.expect_err("wrong password");
    assert!(!e.to_string().contains("wrongpass-xyz"), "{e}");
    let good = good.expect("right password");
    assert!(!format!("{good:?}").contains("rightpass"));
    assert_eq!(good.endpoint(), format!("127.0.0.1:{port}/0"));
}

#[tokio::test]
async fn hung_redis_times_out_after_250_ms() {
    let server = RedisServer::start();
    let r = backend(&server).await;
    let l = TenantLimits {
        requests: Some(requests(10, S, 100, false)),
        ..Default::default()
    };
    let a = AdmitRequest {
        tenant: "hung",
        limits: &l,
        token_estimate: 0,
        cost_estimate: 0,
        lease_id: "x",
        lease_ttl_ns: S,
        unix_secs: 0,
    };
    assert!(r.admit(&a).await.is_ok());
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill {sig} {pid}");
    };
    // a frozen server accepts nothing and answers nothing: only the deadline ends the call
    signal("-STOP");
    let t = Instant::now();
    let res = r.admit(&a).await;
    let took = t.elapsed();
    signal("-CONT");
    let e = res.expect_err("admit against a frozen server");
    assert!(e.to_string().contains("timed out after 250 ms"), "{e}");
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(400),
        "took {took:?}"
    );
    // once it thaws, the same backend works again
    assert!(r.admit(&a).await.is_ok());
}
