//! The admin listener: `/healthz` (alive), `/readyz` (config loaded and an upstream
//! endpoint usable), `/metrics` (Prometheus text), and `/admin/*` behind the admin token
//! (`Authorization: Bearer …`): `/admin/usage`, `POST /admin/reload`, `/admin/reloads`.
//! `GET /` is the status page (see `status`): `POST /admin/login` trades the token for a
//! session cookie, accepted instead of the token on `/admin/*`; `/admin/status` is its
//! data as JSON.

use crate::config::Config;
use crate::limit::Limiter;
use crate::observe::metrics::METRICS;
use crate::observe::usage_book::UsageBook;
use crate::reload::Reloader;
use crate::status::StatusBook;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Serves the admin endpoints.
pub struct AdminApp {
    pub config: Arc<ArcSwap<Config>>,
    pub limiter: Arc<Limiter>,
    pub usage: Arc<UsageBook>,
    pub reloader: Arc<Reloader>,
    pub status: Arc<StatusBook>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json(status: u16, body: String) -> Response<Vec<u8>> {
    respond(status, "application/json", body.into_bytes())
}

fn error(status: u16, kind: &str, message: &str) -> Response<Vec<u8>> {
    json(status, crate::error::error_json(kind, message, ""))
}

/// Is the request carrying the admin token, or a live status-page session cookie
/// (`cookies`: its `Cookie` header values)? (`Err` = the answer to send.)
pub fn check_token(
    cfg: &Config,
    authorization: Option<&[u8]>,
    cookies: &[&[u8]],
    status: &StatusBook,
) -> Result<(), Box<Response<Vec<u8>>>> {
    let Some(token) = cfg.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        return Err(Box::new(error(
            403,
            "permission_error",
            "admin endpoints are disabled: set admin.token in the config",
        )));
    };
    let presented = crate::auth::presented_key(None, authorization);
    let ok = presented.is_some_and(|p| bool::from(p.ct_eq(token.expose().as_bytes())));
    let session = if ok {
        None
    } else {
        status.session_ok(cookies.iter().copied(), token.expose())
    };
    if ok || session == Some(true) {
        Ok(())
    } else {
        METRICS.admin_auth_failures.inc();
        log::warn!(
            "admin request refused: {} admin token",
            if presented.is_some() {
                "wrong"
            } else if session.is_some() {
                "expired or unknown session and no"
            } else {
                "missing"
            }
        );
        Err(Box::new(error(
            401,
            "authentication_error",
            "missing or wrong admin token",
        )))
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let cfg = self.config.load_full();
        match path.as_str() {
            "/" | "/status.css" | "/status.js" => self
                .status
                .asset(&cfg, session.req_header(), &path)
                .unwrap_or_else(|| error(404, "not_found_error", "unknown admin endpoint")),
            "/admin/login" => self.status.login(&cfg, session).await,
            "/admin/logout" => self.status.logout(session),
            "/healthz" => json(200, r#"{"status":"ok"}"#.into()),
            "/readyz" => {
                if cfg.upstreams.iter().any(|u| u.any_usable()) {
                    json(200, r#"{"status":"ready"}"#.into())
                } else {
                    json(503, r#"{"status":"no usable upstream endpoint"}"#.into())
                }
            }
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4",
                METRICS.render(&cfg, Some(&self.limiter)).into_bytes(),
            ),
            p if p.starts_with("/admin/") => {
                let auth = session
                    .req_header()
                    .headers
                    .get("authorization")
                    .map(|v| v.as_bytes().to_vec());
                let cookies: Vec<Vec<u8>> = session
                    .req_header()
                    .headers
                    .get_all("cookie")
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect();
                let cookies: Vec<&[u8]> = cookies.iter().map(Vec::as_slice).collect();
                if let Err(resp) = check_token(&cfg, auth.as_deref(), &cookies, &self.status) {
                    return *resp;
                }
                let method = session.req_header().method.clone();
                match p {
                    "/admin/reload" if method == http::Method::POST => {
                        let r = self.reloader.clone();
                        let outcome = tokio::task::spawn_blocking(move || r.reload()).await;
                        match outcome {
                            Ok(o) => {
                                let status = if o.result == "ok" { 200 } else { 422 };
                                json(status, serde_json::to_string(&o).unwrap_or_default())
                            }
                            Err(_) => error(500, "api_error", "reload failed"),
                        }
                    }
                    "/admin/reload" => {
                        error(405, "invalid_request_error", "use POST /admin/reload")
                    }
                    "/admin/reloads" => json(
                        200,
                        serde_json::to_string(&self.reloader.history()).unwrap_or_default(),
                    ),
                    "/admin/status" => json(
                        200,
                        self.status
                            .status(&cfg, &self.limiter, &self.usage, &self.reloader.history())
                            .to_string(),
                    ),
                    "/admin/usage" => {
                        let body = serde_json::json!({ "tenants": self.usage.snapshot() });
                        json(200, body.to_string())
                    }
                    _ => error(404, "not_found_error", "unknown admin endpoint"),
                }
            }
            _ => error(404, "not_found_error", "unknown admin endpoint"),
        }
    }
}
