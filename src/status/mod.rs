//! The status page: `GET admin.addr/` serves a self-contained page (HTML, CSS and JS
//! embedded in the binary, no external asset) that signs in with the admin token
//! (`POST /admin/login` → a session cookie) and polls `GET /admin/status` (JSON, with the
//! token or the cookie) every 2 s.
//!
//! [`StatusBook`] holds what the rest of sluice does not keep: a 15-minute history in
//! fixed rings (see [`book`]) and the admin sessions (see [`session`]). Everything else
//! on the page is read at request time from the live state: the usage book, the
//! limiter's concurrency slots, breakers, key cooldowns, upstream try counters and the
//! reload history.

pub mod book;
pub mod session;

pub use book::{RequestSummary, SLOTS, SLOT_SECS};
pub use session::Sessions;

use crate::config::Config;
use crate::limit::Limiter;
use crate::observe::access_log::rfc3339;
use crate::observe::metrics::METRICS;
use crate::observe::usage_book::UsageBook;
use crate::reload::ReloadOutcome;
use crate::upstream::CircuitState;
use book::History;
use http::Response;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_CSS: &str = include_str!("page.css");
const PAGE_JS: &str = include_str!("page.js");

/// Largest login request body read.
const MAX_LOGIN_BODY: usize = 4096;
/// Pause before answering a wrong token (slows guessing; the token is the real defence).
const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(200);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// History and sessions for the status page; one per process.
pub struct StatusBook {
    history: Mutex<History>,
    pub sessions: Sessions,
    started: SystemTime,
}

impl Default for StatusBook {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusBook {
    pub fn new() -> Self {
        StatusBook {
            history: Mutex::new(History::default()),
            sessions: Sessions::default(),
            started: SystemTime::now(),
        }
    }

    /// One finished request: O(1) counter updates under one short lock (plus, for a
    /// rejection or upstream error, one small entry built before taking it).
    pub fn record(&self, s: &RequestSummary<'_>) {
        let now = unix_now();
        let (rejection, upstream_error) = book::classify(s);
        let recent =
            (rejection || upstream_error).then(|| (rejection, upstream_error, book::event(s, now)));
        let streams = METRICS.active_streams.get().max(0) as u32;
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(s, now, streams, recent);
    }

    /// The `/admin/status` document.
    pub fn status(
        &self,
        cfg: &Config,
        limiter: &Limiter,
        usage: &UsageBook,
        reloads: &[ReloadOutcome],
    ) -> Value {
        let now = unix_now();
        let streams = METRICS.active_streams.get().max(0);
        let (minute, quarter, series, recent, total, tenant_minutes) = {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.sample_streams(now, streams as u32);
            let mut names: Vec<String> = cfg
                .tenants
                .tenants()
                .iter()
                .map(|t| t.name.clone())
                .collect();
            names.extend(h.tenants());
            let minutes: HashMap<String, (u64, u64)> = names
                .into_iter()
                .map(|n| {
                    let m = h.tenant_minute(&n, now);
                    (n, m)
                })
                .collect();
            (
                h.summary(now, 60 / SLOT_SECS as usize),
                h.summary(now, SLOTS),
                h.series(now),
                h.recent(),
                h.total_requests,
                minutes,
            )
        };
        json!({
            "generated_at": now,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            "history": { "slot_secs": SLOT_SECS, "slots": SLOTS, "recent": book::RECENT },
            "overview": {
                "active_streams": streams,
                "requests_since_start": total,
                "last_minute": minute,
                "last_15m": quarter,
            },
            "series": series,
            "tenants": tenants(cfg, limiter, usage, &tenant_minutes),
            "upstreams": upstreams(cfg),
            "config": {
                "file": cfg.source.display().to_string(),
                "loaded_at": rfc3339(cfg.loaded_at),
                "reloads": reloads,
            },
            "recent": { "rejections": recent.0, "upstream_errors": recent.1 },
        })
    }

    /// Is there a live session cookie among these `Cookie` headers for `token`?
    pub fn session_ok<'a, I>(&self, cookie_headers: I, token: &str) -> Option<bool>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let id = session::session_id(cookie_headers)?;
        Some(self.sessions.check(&id, token))
    }

    /// `POST /admin/login` (form field or JSON `token`): a session cookie, or 401.
    pub async fn login(&self, cfg: &Config, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return error(405, "invalid_request_error", "use POST /admin/login");
        }
        let Some(token) = cfg.admin.as_ref().and_then(|a| a.token.as_ref()) else {
            return error(
                403,
                "permission_error",
                "admin endpoints are disabled: set admin.token in the config",
            );
        };
        let html = wants_html(session);
        let is_json = session
            .req_header()
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_LOGIN_BODY {
                        return error(413, "request_too_large", "login request too large");
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return error(400, "invalid_request_error", "could not read the body"),
            }
        }
        let presented = if is_json {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
        } else {
            form_field(&body, "token")
        };
        let ok = presented
            .as_deref()
            .is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose().as_bytes())));
        if !ok {
            METRICS.admin_auth_failures.inc();
            log::warn!(
                "admin login refused: {} token",
                if presented.as_deref().is_some_and(|p| !p.is_empty()) {
                    "wrong"
                } else {
                    "missing"
                }
            );
            tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
            if html {
                return page_response(
                    401,
                    "text/html; charset=utf-8",
                    LOGIN_FAILED_HTML.as_bytes().to_vec(),
                    None,
                );
            }
            return error(401, "authentication_error", "wrong token");
        }
        let id = self.sessions.create(token.expose());
        log::info!(
            "admin login: status page session started ({} open)",
            self.sessions.len()
        );
        let cookie = session::set_cookie(&id);
        if html {
            let mut r = page_response(303, "text/plain", b"signed in".to_vec(), Some(&cookie));
            r.headers_mut()
                .insert("location", http::HeaderValue::from_static("/"));
            return r;
        }
        let body = json!({ "ok": true, "expires_in_secs": session::SESSION_TTL.as_secs() });
        page_response(
            200,
            "application/json",
            body.to_string().into_bytes(),
            Some(&cookie),
        )
    }

    /// `POST /admin/logout`: ends the cookie's session (if any) and clears the cookie.
    pub fn logout(&self, session: &ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return error(405, "invalid_request_error", "use POST /admin/logout");
        }
        let id = session::session_id(
            session
                .req_header()
                .headers
                .get_all("cookie")
                .iter()
                .map(|v| v.as_bytes()),
        );
        if let Some(id) = id {
            if self.sessions.remove(&id) {
                log::info!("admin logout: status page session ended");
            }
        }
        page_response(
            200,
            "application/json",
            br#"{"ok":true}"#.to_vec(),
            Some(&session::clear_cookie()),
        )
    }
}

/// The per-tenant rows: configured tenants in config order, then any other name seen
/// (`""` = unauthenticated requests).
fn tenants(
    cfg: &Config,
    limiter: &Limiter,
    usage: &UsageBook,
    minutes: &HashMap<String, (u64, u64)>,
) -> Vec<Value> {
    let mut by_name: BTreeMap<String, crate::observe::usage_book::TenantUsage> = usage
        .snapshot()
        .into_iter()
        .map(|t| (t.tenant.clone(), t))
        .collect();
    let configured = |n: &str| cfg.tenants.tenants().iter().any(|t| t.name == n);
    let mut rest: Vec<String> = by_name
        .keys()
        .chain(minutes.keys())
        .filter(|n| !configured(n))
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    let mut out = Vec::new();
    let mut row = |name: &str, limits: Option<&crate::limit::TenantLimits>| {
        let u = by_name.remove(name);
        let today = u.as_ref().map(|u| &u.today);
        let requests = today.map_or(0, |t| t.requests);
        let tokens = today.map_or(0, |t| {
            t.input_tokens + t.cache_write_tokens + t.output_tokens
        });
        let ratio = |k: &str| u.as_ref().and_then(|u| u.quota_used.get(k).copied());
        let quota = limits.and_then(|l| l.quota.as_ref());
        let (tok_min, req_min) = minutes.get(name).copied().unwrap_or((0, 0));
        let rejections: BTreeMap<String, u64> =
            today.map(|t| t.rejections.clone()).unwrap_or_default();
        out.push(json!({
            "name": name,
            "configured": limits.is_some(),
            "requests_today": requests,
            "tokens_today": tokens,
            "today": {
                "input_tokens": today.map_or(0, |t| t.input_tokens),
                "output_tokens": today.map_or(0, |t| t.output_tokens),
                "cache_read_tokens": today.map_or(0, |t| t.cache_read_tokens),
                "cache_write_tokens": today.map_or(0, |t| t.cache_write_tokens),
            },
            "quota": {
                "daily_requests": quota.and_then(|q| q.daily_requests),
                "daily_tokens": quota.and_then(|q| q.daily_tokens),
                "requests_used": ratio("requests"),
                "tokens_used": ratio("tokens"),
                "daily_cost": quota.and_then(|q| q.daily_cost).map(|c| c as f64 / 1e6),
                "monthly_cost": quota.and_then(|q| q.monthly_cost).map(|c| c as f64 / 1e6),
                "daily_cost_used": ratio("daily_cost"),
                "monthly_cost_used": ratio("monthly_cost"),
            },
            "tokens_per_min": tok_min,
            "requests_per_min": req_min,
            "rejections": rejections,
            "concurrency": {
                "active": if limits.is_some() { limiter.memory().active(name) } else { 0 },
                "limit": limits.and_then(|l| l.concurrency),
            },
        }));
    };
    for t in cfg.tenants.tenants() {
        row(&t.name, Some(&t.limits));
    }
    for n in rest {
        row(&n, None);
    }
    out
}

/// Upstream tries by class, from the `sluice_upstream_requests_total` counters.
#[derive(Default, Clone, Copy)]
struct Tries {
    ok: u64,
    c4xx: u64,
    c5xx: u64,
    connect: u64,
    timeout: u64,
}

impl Tries {
    fn add(&mut self, code: &str, n: u64) {
        match code {
            "connect_error" => self.connect += n,
            "timeout" => self.timeout += n,
            c if c.starts_with('4') => self.c4xx += n,
            c if c.starts_with('5') => self.c5xx += n,
            _ => self.ok += n,
        }
    }
    fn json(&self) -> Value {
        json!({
            "ok": self.ok, "4xx": self.c4xx, "5xx": self.c5xx,
            "connect": self.connect, "timeout": self.timeout,
            "total": self.ok + self.c4xx + self.c5xx + self.connect + self.timeout,
        })
    }
    fn plus(mut self, o: &Tries) -> Tries {
        self.ok += o.ok;
        self.c4xx += o.c4xx;
        self.c5xx += o.c5xx;
        self.connect += o.connect;
        self.timeout += o.timeout;
        self
    }
}

fn counter_by_labels(c: &prometheus::IntCounterVec) -> Vec<(HashMap<String, String>, u64)> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for fam in c.collect() {
        for m in fam.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            out.push((labels, m.get_counter().get_value() as u64));
        }
    }
    out
}

fn upstreams(cfg: &Config) -> Vec<Value> {
    let mut tries: HashMap<(String, String), Tries> = HashMap::new();
    for (l, n) in counter_by_labels(&METRICS.upstream_requests) {
        let key = (
            l.get("upstream").cloned().unwrap_or_default(),
            l.get("endpoint").cloned().unwrap_or_default(),
        );
        tries
            .entry(key)
            .or_default()
            .add(l.get("code").map_or("", String::as_str), n);
    }
    let retries: HashMap<String, u64> = counter_by_labels(&METRICS.upstream_retries)
        .into_iter()
        .map(|(l, n)| (l.get("upstream").cloned().unwrap_or_default(), n))
        .collect();
    cfg.upstreams
        .iter()
        .map(|up| {
            let mut total = Tries::default();
            let endpoints: Vec<Value> = up
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, ep)| {
                    let t = tries
                        .get(&(up.name.clone(), ep.url.clone()))
                        .copied()
                        .unwrap_or_default();
                    total = total.plus(&t);
                    let breaker = up.breakers.get(i).and_then(|b| b.as_ref());
                    let circuit = match breaker.map(|b| b.state()) {
                        None | Some(CircuitState::Closed) => "closed",
                        Some(CircuitState::Open) => "open",
                        Some(CircuitState::HalfOpen) => "half-open",
                    };
                    json!({
                        "url": ep.url,
                        "backup": ep.backup,
                        "breaker": breaker.is_some(),
                        "circuit": circuit,
                        "healthy": up.healthy.get(i).is_some_and(|h| h.load(std::sync::atomic::Ordering::Relaxed)),
                        "health_check": up.health_check.is_some(),
                        "usable": up.endpoint_usable(i),
                        "tries": t.json(),
                    })
                })
                .collect();
            let keys: Vec<Value> = up
                .keys
                .keys()
                .iter()
                .map(|k| {
                    let state = if k.available() {
                        "available"
                    } else if k.refused() {
                        "refused"
                    } else {
                        "cooling"
                    };
                    json!({
                        "id": k.id,
                        "weight": k.weight,
                        "state": state,
                        "cooldown_left_ms": k.cooldown_left_ms(),
                    })
                })
                .collect();
            let all = total.json();
            json!({
                "name": up.name,
                "endpoints": endpoints,
                "keys": keys,
                "errors": { "4xx": all["4xx"], "5xx": all["5xx"], "connect": all["connect"], "timeout": all["timeout"] },
                "tries": all["total"],
                "retries": retries.get(&up.name).copied().unwrap_or(0),
            })
        })
        .collect()
}

/// Did a browser navigate here with a plain form post (no JS)?
fn wants_html(session: &ServerSession) -> bool {
    session
        .req_header()
        .headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// `application/x-www-form-urlencoded` field `name`, decoded.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    s.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (url_decode(k)? == name).then(|| url_decode(v)).flatten()
    })
}

fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const LOGIN_FAILED_HTML: &str = "<!doctype html><meta charset=utf-8><title>sluice</title>\
<p>wrong token — <a href=\"/\">try again</a></p>";

fn page_response(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    cookie: Option<&str>,
) -> Response<Vec<u8>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer");
    if let Some(c) = cookie {
        b = b.header("set-cookie", c);
    }
    b.body(body).unwrap_or_default()
}

fn error(status: u16, kind: &str, message: &str) -> Response<Vec<u8>> {
    page_response(
        status,
        "application/json",
        crate::error::error_json(kind, message, "").into_bytes(),
        None,
    )
}

/// The page and its assets (`GET /`, `/status.css`, `/status.js`); `None` for other
/// paths. `signed_in`: the request carries a live session cookie (the page then starts
/// polling at once instead of showing the sign-in form).
pub fn asset(path: &str, signed_in: bool) -> Option<Response<Vec<u8>>> {
    let (ct, body) = match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            PAGE_HTML.replacen(
                "<body>",
                if signed_in {
                    "<body data-signed-in=\"yes\">"
                } else {
                    "<body data-signed-in=\"no\">"
                },
                1,
            ),
        ),
        "/status.css" => ("text/css; charset=utf-8", PAGE_CSS.to_string()),
        "/status.js" => ("text/javascript; charset=utf-8", PAGE_JS.to_string()),
        _ => return None,
    };
    Some(page_response(200, ct, body.into_bytes(), None))
}

impl StatusBook {
    /// `GET /` and the page's assets; `None` for other paths.
    pub fn asset(
        &self,
        cfg: &Config,
        req: &pingora::http::RequestHeader,
        path: &str,
    ) -> Option<Response<Vec<u8>>> {
        let signed_in = path == "/"
            && cfg
                .admin
                .as_ref()
                .and_then(|a| a.token.as_ref())
                .and_then(|t| {
                    self.session_ok(
                        req.headers.get_all("cookie").iter().map(|v| v.as_bytes()),
                        t.expose(),
                    )
                })
                .unwrap_or(false);
        asset(path, signed_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode() {
        assert_eq!(form_field(b"token=abc", "token").as_deref(), Some("abc"));
        assert_eq!(
            form_field(b"x=1&token=a%2Bb+c%3D", "token").as_deref(),
            Some("a+b c=")
        );
        assert_eq!(form_field(b"token=%zz", "token"), None);
        assert_eq!(form_field(b"token=%4", "token"), None);
        assert_eq!(form_field(b"nothing=1", "token"), None);
        assert_eq!(form_field(b"token", "token").as_deref(), Some(""));
    }

    #[test]
    fn assets_are_embedded_and_self_contained() {
        for p in ["/", "/status.css", "/status.js"] {
            let r = asset(p, false).unwrap();
            assert_eq!(r.status(), 200);
            let body = String::from_utf8(r.body().clone()).unwrap();
            // the SVG namespace is a name, not something fetched
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
                "{p}: external reference"
            );
        }
        assert!(asset("/other", false).is_none());
        let page = String::from_utf8(asset("/", true).unwrap().body().clone()).unwrap();
        assert!(page.contains("data-signed-in=\"yes\""));
        assert!(PAGE_HTML.contains("/status.js") && PAGE_HTML.contains("/status.css"));
    }
}
