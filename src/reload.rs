//! Reloading the config (SIGHUP, `POST /admin/reload`): re-read the file, validate it
//! completely, and swap it in atomically. Requests in flight keep the snapshot they
//! started with; limiter and quota state lives outside the config (keyed by tenant
//! name), so unchanged tenants keep theirs. An invalid file is refused — logged with
//! its `FILE:LINE:COL` errors — and the old config keeps serving. Changes that only a
//! restart or upgrade can apply (listeners, threads, …) are reported, not ignored.

use crate::config::Config;
use crate::observe::metrics::METRICS;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What one reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// `ok` or `error`.
    pub result: &'static str,
    pub at: String,
    pub file: String,
    /// `FILE:LINE:COL: message` for a refused file.
    pub errors: Vec<String>,
    /// Settings that changed in the file but need a restart/upgrade to apply.
    pub restart_required: Vec<String>,
    pub warnings: Vec<String>,
}

/// Performs reloads and remembers the last few.
pub struct Reloader {
    config: Arc<ArcSwap<Config>>,
    history: Mutex<VecDeque<ReloadOutcome>>,
    /// Serialises concurrent reloads (a SIGHUP and an admin call at once).
    busy: Mutex<()>,
}

const HISTORY: usize = 20;

impl Reloader {
    pub fn new(config: Arc<ArcSwap<Config>>) -> Self {
        Reloader {
            config,
            history: Mutex::new(VecDeque::new()),
            busy: Mutex::new(()),
        }
    }

    /// Reload from the file the current config came from.
    pub fn reload(&self) -> ReloadOutcome {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.config.load_full();
        let file = current.source.display().to_string();
        let at = crate::observe::access_log::rfc3339(SystemTime::now());
        let outcome = match Config::load(&current.source) {
            Err(errors) => {
                let errors: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                for e in &errors {
                    log::error!("config reload refused: {e}");
                }
                log::error!("config reload refused; still serving the previous config");
                METRICS.config_reloads.with_label_values(&["error"]).inc();
                ReloadOutcome {
                    result: "error",
                    at,
                    file,
                    errors,
                    restart_required: vec![],
                    warnings: vec![],
                }
            }
            Ok(new) => {
                let restart_required = restart_required(&current, &new);
                for r in &restart_required {
                    log::warn!("config reload: {r} changed but needs a restart or upgrade (`sluice -u`) to apply");
                }
                for w in &new.warnings {
                    log::warn!("{w}");
                }
                let warnings = new.warnings.clone();
                for up in &new.upstreams {
                    if let Some(old) = current.upstreams.iter().find(|o| o.name == up.name) {
                        up.inherit(old);
                    }
                }
                self.config.store(Arc::new(new));
                METRICS.config_reloads.with_label_values(&["ok"]).inc();
                log::info!("config reloaded from {file}");
                ReloadOutcome {
                    result: "ok",
                    at,
                    file,
                    errors: vec![],
                    restart_required,
                    warnings,
                }
            }
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(outcome.clone());
        outcome
    }

    /// The last reloads, oldest first.
    pub fn history(&self) -> Vec<ReloadOutcome> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Settings a running process cannot change.
pub fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let listeners = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| format!("{:?}", l))
            .collect::<Vec<_>>()
    };
    if listeners(old) != listeners(new) {
        out.push("listeners".to_string());
    }
    let s = (&old.server, &new.server);
    if s.0.threads != s.1.threads {
        out.push("server.threads".into());
    }
    if s.0.grace_period != s.1.grace_period {
        out.push("server.grace_period".into());
    }
    if s.0.pid_file != s.1.pid_file
        || s.0.upgrade_sock != s.1.upgrade_sock
        || s.0.error_log != s.1.error_log
    {
        out.push("server.pid_file/upgrade_sock/error_log".into());
    }
    if old.admin.as_ref().map(|a| a.addr) != new.admin.as_ref().map(|a| a.addr) {
        out.push("admin.addr".into());
    }
    if old.redis != new.redis {
        out.push("state".into());
    }
    if old.access_log != new.access_log {
        out.push("logging.access".into());
    }
    if old.audit != new.audit {
        out.push("logging.audit".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "listeners: [{addr: 127.0.0.1:18080}]\nupstreams: {u: {endpoints: [{url: http://127.0.0.1:2}]}}\nroutes: [{path: /v1/messages, upstream: u}]\n";

    #[test]
    fn valid_swaps_invalid_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, BASE).unwrap();
        let cfg = Arc::new(ArcSwap::from_pointee(Config::load(&p).unwrap()));
        let r = Reloader::new(cfg.clone());
        let before = cfg.load_full();

        std::fs::write(&p, BASE.replace("/v1/messages", "/v1/models")).unwrap();
        let o = r.reload();
        assert_eq!(o.result, "ok");
        assert!(o.restart_required.is_empty());
        assert_eq!(cfg.load().routes.routes[0].path, "/v1/models");
        // the old snapshot is untouched for whoever still holds it
        assert_eq!(before.routes.routes[0].path, "/v1/messages");

        std::fs::write(&p, BASE.replace("routes:", "routez:")).unwrap();
        let o = r.reload();
        assert_eq!(o.result, "error");
        assert!(
            o.errors[0].starts_with(&format!("{}:3:1:", p.display())),
            "{:?}",
            o.errors
        );
        assert_eq!(
            cfg.load().routes.routes[0].path,
            "/v1/models",
            "old config still serving"
        );

        std::fs::write(&p, BASE.replace("18080", "18081")).unwrap();
        let o = r.reload();
        assert_eq!(o.result, "ok");
        assert_eq!(o.restart_required, vec!["listeners".to_string()]);
        assert_eq!(r.history().len(), 3);
    }
}
