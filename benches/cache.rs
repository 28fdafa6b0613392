//! Cache hit latency: computing the key of a ~2 KB request and reading the entry, from
//! memory, and from Redis when a `redis-server` binary is available (a throwaway server
//! on an ephemeral port).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sluice::cache::{key, CacheSettings, ResponseCache};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn request() -> Vec<u8> {
    let text = "Summarise the following text in three bullet points. ".repeat(35);
    serde_json::to_vec(
        &serde_json::json!({"model":"claude-sonnet-4-5","max_tokens":512,
        "messages":[{"role":"user","content":text}]}),
    )
    .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = request();
    let answer = Bytes::from(vec![b'x'; 2048]);
    let settings = CacheSettings {
        enabled: true,
        ..Default::default()
    };
    let mem = ResponseCache::new(10_000, None);
    let k = key(
        Some("team-a"),
        "/v1/messages",
        &body,
        Some(b"2023-06-01"),
        None,
    )
    .expect("key");
    rt.block_on(mem.put(&k, answer.clone(), &settings));
    c.bench_function("cache/memory_hit_incl_key", |b| {
        b.iter(|| {
            let k = key(
                Some("team-a"),
                "/v1/messages",
                black_box(&body),
                Some(b"2023-06-01"),
                None,
            )
            .expect("key");
            rt.block_on(mem.get(&k, &settings)).expect("hit")
        })
    });

    let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        eprintln!("redis-server not installed: skipping the Redis hit benchmark");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut child = std::process::Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    std::thread::sleep(Duration::from_millis(300));
    // a fresh cache whose memory tier is empty, so every get goes to Redis
    let shared = ResponseCache::new(10_000, Some(format!("redis://127.0.0.1:{port}/0")));
    rt.block_on(shared.put(&k, answer, &settings));
    let redis_only = ResponseCache::new(10_000, Some(format!("redis://127.0.0.1:{port}/0")));
    rt.block_on(async {
        let mut lat = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            redis_only.get(&k, &settings).await.expect("hit");
            lat.push(t.elapsed());
        }
        lat.sort();
        eprintln!(
            "redis hit latency over 5000 gets: p50 {:?} p99 {:?}",
            lat[2500], lat[4950]
        );
    });
    c.bench_function("cache/redis_hit", |b| {
        b.iter(|| rt.block_on(redis_only.get(&k, &settings)).expect("hit"))
    });
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
