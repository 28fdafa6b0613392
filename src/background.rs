//! Work that runs beside request handling: connecting the shared limiter state at
//! start-up (so the first requests are already shared), and active upstream health
//! checks.

use crate::config::Config;
use crate::limit::Limiter;
use crate::relay::Relay;
use crate::reload::Reloader;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The background service.
pub struct Housekeeping {
    pub config: Arc<ArcSwap<Config>>,
    pub limiter: Arc<Limiter>,
    pub relay: Arc<Relay>,
    pub reloader: Arc<Reloader>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Pingora does not handle SIGHUP (its default action would kill the process):
        // SIGHUP means "reload the config", as for nginx.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot listen for SIGHUP ({e}); reload with POST /admin/reload");
                None
            }
        };
        self.limiter.connect().await;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_run: std::collections::HashMap<(String, usize), std::time::Instant> =
            Default::default();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    log::info!("SIGHUP: reloading the config");
                    let r = self.reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                    continue;
                }
            }
            let cfg = self.config.load_full();
            for up in &cfg.upstreams {
                let Some((interval, path)) = &up.health_check else {
                    continue;
                };
                for (i, ep) in up.endpoints.iter().enumerate() {
                    let k = (up.name.clone(), i);
                    if last_run.get(&k).is_some_and(|t| t.elapsed() < *interval) {
                        continue;
                    }
                    last_run.insert(k, std::time::Instant::now());
                    let ok = self.relay.probe(up, ep, path).await;
                    let was = up.healthy[i].swap(ok, Ordering::Relaxed);
                    if was != ok {
                        if ok {
                            log::warn!(
                                "health check: upstream {} endpoint {} is healthy again",
                                up.name,
                                ep.url
                            );
                        } else {
                            log::warn!(
                                "health check: upstream {} endpoint {} failed; taking it out",
                                up.name,
                                ep.url
                            );
                        }
                    }
                }
            }
        }
    }
}
