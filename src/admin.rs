//! The admin listener: `/healthz` (alive) and `/readyz` (config loaded and at least one
//! upstream endpoint configured). Metrics, reload and usage arrive with their issues.

use crate::config::Config;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// Serves the admin endpoints.
pub struct AdminApp {
    pub config: Arc<ArcSwap<Config>>,
}

fn json(status: u16, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => json(200, r#"{"status":"ok"}"#.into()),
            "/readyz" => {
                let cfg = self.config.load();
                let usable = cfg.upstreams.iter().any(|u| u.any_usable());
                if usable {
                    json(200, r#"{"status":"ready"}"#.into())
                } else {
                    json(503, r#"{"status":"no usable upstream endpoint"}"#.into())
                }
            }
            _ => json(
                404,
                crate::error::error_json("not_found_error", "unknown admin endpoint", ""),
            ),
        }
    }
}
