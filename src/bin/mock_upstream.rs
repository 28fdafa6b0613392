//! `mock-upstream`: a standalone mock of the Anthropic HTTP API.
//!
//! ```text
//! mock-upstream [--addr 127.0.0.1:0] [--latency-ms N] [--threads N]
//! ```
//!
//! Prints exactly one line, `listening on 127.0.0.1:PORT`, to stdout once the
//! socket is bound (so scripts can read the port), then serves until killed.
//! `--latency-ms` defaults to `$MOCK_UPSTREAM_LATENCY_MS` (else 0). With
//! `--threads 1` (the default) a current-thread runtime is used; otherwise a
//! multi-thread runtime with that many workers. See `sluice::mock` for the
//! endpoints and the `x-mock-*` request-header controls.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use sluice::mock::{MockConfig, MockServer};

/// A fast mock of the Anthropic HTTP API for tests, benchmarks and demos.
#[derive(Parser, Debug)]
#[command(name = "mock-upstream", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Delay before every response head, in milliseconds
    /// (default: $MOCK_UPSTREAM_LATENCY_MS or 0).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let env_default = MockConfig::from_env().latency;
    let latency = args
        .latency_ms
        .map(Duration::from_millis)
        .unwrap_or(env_default);
    let cfg = MockConfig {
        addr: args.addr,
        latency,
    };

    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock-upstream: cannot start tokio runtime: {e}");
            std::process::exit(1);
        }
    };

    runtime.block_on(async move {
        let server = match MockServer::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mock-upstream: cannot listen on {}: {e}", args.addr);
                std::process::exit(1);
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {}", server.addr());
        let _ = stdout.flush();
        drop(stdout);
        // Serve until the process is killed (`server` stays alive meanwhile).
        let _server = server;
        std::future::pending::<()>().await;
    });
}
