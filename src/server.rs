//! Builds and runs the Pingora server from a loaded [`Config`]: process settings,
//! the proxy service on every listener, and the admin service.

use crate::admin::AdminApp;
use crate::background::Housekeeping;
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::downstream::app::Frontend;
use crate::limit::Limiter;
use crate::observe::access_log::AccessLog;
use crate::observe::audit::AuditLog;
use crate::observe::usage_book::UsageBook;
use crate::proxy::{Gateway, H2Gateway};
use crate::relay::Relay;
use crate::reload::Reloader;
use arc_swap::ArcSwap;
use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TcpSocketOptions;
use pingora::protocols::TcpKeepalive;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

/// How the process was asked to start.
pub struct RunOptions {
    pub daemon: bool,
    pub upgrade: bool,
}

fn server_conf(cfg: &Config, daemon: bool) -> ServerConf {
    let s = &cfg.server;
    let mut conf = ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        error_log: s.error_log.clone(),
        daemon,
        ..ServerConf::default()
    };
    // One single-threaded tokio runtime per worker thread (connections are spread over
    // them at accept) instead of one work-stealing runtime: under load this took
    // sluice's CPU per relayed request from ~62 to ~48 µs (docs/performance.md).
    conf.work_stealing = false;
    let grace = s.grace_period.as_secs().max(1);
    conf.grace_period_seconds = Some(grace);
    conf.graceful_shutdown_timeout_seconds = Some(grace);
    conf
}

fn socket_options(l: &crate::config::Listener) -> TcpSocketOptions {
    let mut o = TcpSocketOptions::default();
    o.tcp_fastopen = l.fastopen;
    o.so_reuseport = l.reuseport;
    o.tcp_keepalive = l.tcp_keepalive.map(|idle| TcpKeepalive {
        idle,
        interval: Duration::from_secs(10),
        count: 5,
        #[cfg(target_os = "linux")]
        user_timeout: Duration::ZERO,
    });
    o
}

/// Start serving `cfg` and never return.
pub fn run(cfg: Config, opts: RunOptions) -> Result<(), String> {
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&cfg, opts.daemon));
    server.bootstrap();

    let access_log = AccessLog::start(&cfg.access_log)
        .map_err(|e| format!("cannot open access log {:?}: {e}", cfg.access_log))?;
    let listeners = cfg.listeners.clone();
    let admin = cfg.admin.clone();
    let source = cfg.source.display().to_string();
    let shared = Arc::new(ArcSwap::from_pointee(cfg));

    let limiter = Arc::new(Limiter::new(shared.load().redis.clone()));
    let pool = shared
        .load()
        .upstreams
        .iter()
        .map(|u| u.pool_size)
        .sum::<usize>()
        .max(1);
    let relay = Arc::new(Relay::new(pool, shared.load().server.threads));
    let reloader = Arc::new(Reloader::new(shared.clone()));
    let housekeeping = background_service(
        "housekeeping",
        Housekeeping {
            config: shared.clone(),
            limiter: limiter.clone(),
            relay: relay.clone(),
            reloader: reloader.clone(),
        },
    );
    server.add_service(housekeeping);
    let usage = Arc::new(UsageBook::default());
    let audit = AuditLog::start(shared.load().audit.as_ref())
        .map_err(|e| format!("cannot start the audit log: {e}"))?;
    let cache = Arc::new(ResponseCache::new(
        shared.load().cache.max_entries,
        shared.load().redis.clone(),
    ));
    let status = Arc::new(crate::status::StatusBook::new());
    let gateway = Arc::new(Gateway::new(
        shared.clone(),
        relay,
        limiter.clone(),
        access_log,
        audit,
        usage.clone(),
        cache,
        status.clone(),
    ));
    let mut server_options = HttpServerOptions::default();
    server_options.keepalive_request_limit = listeners
        .iter()
        .map(|l| l.keepalive_max_requests)
        .min()
        .filter(|n| *n > 0);
    // HTTP/1.x is served by sluice's own front end; HTTP/2 (TLS + ALPN) by Pingora's
    // HttpProxy with the same gateway behind the ProxyHttp hooks (docs/architecture.md).
    let mut h2 = HttpProxy::new(H2Gateway(gateway.clone()), server.configuration.clone());
    h2.handle_init_modules();
    h2.server_options = Some(server_options);
    let mut proxy = Service::new("sluice".to_string(), Frontend::new(gateway, h2));
    for l in &listeners {
        match &l.tls {
            None => proxy.add_tcp_with_settings(&l.addr.to_string(), socket_options(l)),
            Some((cert, key)) => {
                let mut tls = TlsSettings::intermediate(cert, key).map_err(|e| {
                    format!("listener {}: cannot load TLS certificate/key: {e}", l.addr)
                })?;
                tls.enable_h2();
                proxy.add_tls_with_settings(&l.addr.to_string(), Some(socket_options(l)), tls);
            }
        }
    }
    server.add_service(proxy);

    if let Some(a) = admin {
        let mut svc = Service::new(
            "sluice-admin".to_string(),
            HttpServer::new_app(AdminApp {
                config: shared.clone(),
                limiter,
                usage,
                reloader,
                status,
            }),
        );
        svc.add_tcp(&a.addr.to_string());
        server.add_service(svc);
    }

    let addrs: Vec<String> = listeners.iter().map(|l| l.addr.to_string()).collect();
    log::info!(
        "sluice {} serving {source} on {}",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", ")
    );
    server.run_forever()
}
