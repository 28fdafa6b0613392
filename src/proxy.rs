//! The Pingora `ProxyHttp` glue: a per-request [`Ctx`], and thin hooks that delegate to
//! `route`, `auth`, `relay` and `observe`. sluice answers every request from
//! `request_filter` (it drives the upstream exchange itself, see `relay`), so Pingora's
//! own upstream hooks are never reached.

use crate::auth::{presented_key, AuthFailure, Tenant};
use crate::cache::{follow, Join, ResponseCache};
use crate::config::Config;
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::limit::clientip::client_ip;
use crate::limit::limiter::retry_after_secs;
use crate::limit::{
    estimate_input_tokens, Admission, AdmitRequest, LimitGuard, LimitReason, Limiter,
};
use crate::observe::access_log::{now_rfc3339, AccessLog, AccessRecord};
use crate::observe::audit::{AuditLog, FilterAction};
use crate::observe::metrics::METRICS;
use crate::observe::usage_book::UsageBook;
use crate::observe::{client_request_id, new_request_id};
use crate::relay::{Failure, Relay};
use crate::route::RouteMatch;
use crate::upstream::{affinity_hash, Upstream};
use crate::usage::Usage;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything known about one request, from arrival to the access log line.
pub struct Ctx {
    pub cfg: Option<Arc<Config>>,
    pub request_id: String,
    pub start: Instant,
    pub client_ip: Option<IpAddr>,
    pub route: Option<String>,
    pub tenant: Option<Arc<Tenant>>,
    pub model: Option<String>,
    pub stream: bool,
    /// Status sent to the client (0 = none yet).
    pub status: u16,
    /// `x-sluice-reason` of a gateway-made answer.
    pub reason: Option<&'static str>,
    pub upstream: Option<String>,
    pub endpoint: Option<String>,
    pub key_id: Option<String>,
    pub upstream_status: Option<u16>,
    pub upstream_started: Option<Instant>,
    /// Time spent waiting on the upstream (connect, first byte, body reads).
    pub upstream_wait: Duration,
    pub first_byte_at: Option<Instant>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub usage: Usage,
    pub error: Option<String>,
    /// Limits taken at admission; settled in `logging`.
    pub limit_guard: Option<LimitGuard>,
    /// The tenant's buckets after admission, for `anthropic-ratelimit-*` headers.
    pub ratelimit: Option<Admission>,
    /// A Messages request (its tokens count against token limits and quotas).
    pub billable: bool,
    /// Upstream tries made (1 = no retry).
    pub attempts: u32,
    /// The model the upstream reported (for the bounded `model` metric label).
    pub response_model: Option<String>,
    /// Filter actions taken on this request (for the audit log).
    pub filter_actions: Vec<FilterAction>,
    /// With audit bodies on: the request body as forwarded.
    pub audit_request: Option<Bytes>,
    /// With audit bodies on: the response body as sent (capped).
    pub audit_response: Option<Vec<u8>>,
    /// `x-sluice-cache`: hit, miss or bypass.
    pub cache_status: Option<&'static str>,
    /// The relay should keep the JSON answer for the cache.
    pub want_cache_body: bool,
    /// The JSON answer as sent, for the cache.
    pub cache_body: Option<Bytes>,
    /// Tokens a cache hit saved.
    pub cache_saved_tokens: u64,
    /// Cost of this request's usage (with a `pricing` table).
    pub cost: Option<f64>,
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            cfg: None,
            request_id: String::new(),
            start: Instant::now(),
            client_ip: None,
            route: None,
            tenant: None,
            model: None,
            stream: false,
            status: 0,
            reason: None,
            upstream: None,
            endpoint: None,
            key_id: None,
            upstream_status: None,
            upstream_started: None,
            upstream_wait: Duration::ZERO,
            first_byte_at: None,
            bytes_in: 0,
            bytes_out: 0,
            usage: Usage::default(),
            error: None,
            limit_guard: None,
            ratelimit: None,
            billable: false,
            attempts: 0,
            response_model: None,
            filter_actions: Vec::new(),
            audit_request: None,
            audit_response: None,
            cache_status: None,
            want_cache_body: false,
            cache_body: None,
            cache_saved_tokens: 0,
            cost: None,
        }
    }
}

/// A request ready to go upstream, as `Gateway::prepare` hands it to the forward.
struct Forward<'c> {
    up: &'c Upstream,
    body: Bytes,
    affinity: Option<u64>,
    /// This request fetches for identical ones waiting on it: cache and publish its answer.
    /// Boxed: it is held for the whole exchange, and is rare (non-streaming cache misses).
    leader: Option<Box<(crate::cache::Key, crate::cache::LeaderGuard)>>,
}

/// The gateway: current config, upstream relay, limiter, access log.
pub struct Gateway {
    pub config: Arc<ArcSwap<Config>>,
    relay: Arc<Relay>,
    limiter: Arc<Limiter>,
    access_log: AccessLog,
    audit: AuditLog,
    usage: Arc<UsageBook>,
    cache: Arc<ResponseCache>,
    status: Arc<crate::status::StatusBook>,
    nonces: crate::tenant_auth::Nonces,
    spend: std::sync::Mutex<std::collections::HashMap<String, crate::pricing::SpendWindow>>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        relay: Arc<Relay>,
        limiter: Arc<Limiter>,
        access_log: AccessLog,
        audit: AuditLog,
        usage: Arc<UsageBook>,
        cache: Arc<ResponseCache>,
        status: Arc<crate::status::StatusBook>,
    ) -> Self {
        Gateway {
            nonces: crate::tenant_auth::Nonces::new(config.load().redis.clone()),
            spend: std::sync::Mutex::new(std::collections::HashMap::new()),
            config,
            relay,
            limiter,
            access_log,
            audit,
            usage,
            cache,
            status,
        }
    }

    /// Route, authenticate, read the body, forward.
    ///
    /// Split in two so that the future living for a whole (streaming) exchange is only
    /// the forward's: an async fn's state is as large as its largest await point plus
    /// every local held across more than one await, so the admission steps' locals
    /// (tenant, route, body, token counts...) would otherwise sit beside the relay's
    /// state for the stream's life. `prepare`'s state overlaps the forward's instead.
    async fn handle<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        cfg: &Config,
    ) -> Result<(), Failure> {
        // Destructured (not kept whole) so no part of it stays in this future's state.
        let Some(Forward {
            up,
            body,
            affinity,
            leader,
        }) = self.prepare(session, ctx, cfg).await?
        else {
            return Ok(());
        };
        if let Some(leader) = leader {
            // Rare, short-lived, and it awaits the cache write after the exchange (holding
            // the exchange's result meanwhile): boxed, to keep that out of the future
            // every (streaming) request holds.
            let fwd = Forward {
                up,
                body,
                affinity,
                leader: Some(leader),
            };
            return Box::pin(self.forward_and_fill(session, ctx, cfg, fwd)).await;
        }
        self.relay.forward(session, ctx, up, body, affinity).await
    }

    /// Forward a request that leads a cache fill, then cache and publish its answer.
    async fn forward_and_fill<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        cfg: &Config,
        fwd: Forward<'_>,
    ) -> Result<(), Failure> {
        let result = self
            .relay
            .forward(session, ctx, fwd.up, fwd.body, fwd.affinity)
            .await;
        if let Some(leader) = fwd.leader {
            let (key, guard) = *leader;
            let body = if result.is_ok() && ctx.upstream_status == Some(200) {
                ctx.cache_body.take()
            } else {
                None
            };
            if let Some(b) = &body {
                self.cache.put(&key, b.clone(), &cfg.cache).await;
            }
            guard.publish(body);
        }
        result
    }

    /// Everything before the upstream exchange: client-IP guard, route, tenant, body,
    /// signature, model check, limits, request filters, cache. `None`: already answered
    /// (from the cache).
    async fn prepare<'c, D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        cfg: &'c Config,
    ) -> Result<Option<Forward<'c>>, Failure> {
        // The client's address (trusted proxies' X-Forwarded-For) and the pre-auth guard,
        // before any hashing work.
        if !cfg.trusted_proxies.is_empty() {
            let xff = session
                .req_header()
                .headers
                .get("x-forwarded-for")
                .map(|v| v.as_bytes());
            ctx.client_ip = client_ip(ctx.client_ip, xff, &cfg.trusted_proxies);
        }
        if let (Some(bucket), Some(ip)) = (&cfg.client_ip_limit, ctx.client_ip) {
            let (ok, retry_ns) = self.limiter.client_ip(&ip.to_string(), bucket).await;
            if !ok {
                return Err(Failure::Gateway(GatewayError::RateLimited {
                    reason: LimitReason::ClientIp,
                    retry_after: retry_after_secs(retry_ns),
                }));
            }
        }

        let req = session.req_header();
        let method = req.method.as_str();
        let path = req.uri.path();

        let route = match cfg.routes.find(method, path) {
            RouteMatch::Found(r) => r,
            RouteMatch::NotFound => {
                return Err(Failure::Gateway(GatewayError::RouteNotFound {
                    method: method.to_string(),
                    path: path.to_string(),
                }))
            }
            RouteMatch::MethodNotAllowed(allow) => {
                return Err(Failure::Gateway(GatewayError::MethodNotAllowed {
                    method: method.to_string(),
                    path: path.to_string(),
                    allow: allow.join(", "),
                }))
            }
        };
        ctx.route = Some(route.path.clone());

        let key = presented_key(
            req.headers.get("x-api-key").map(|v| v.as_bytes()),
            req.headers.get("authorization").map(|v| v.as_bytes()),
        );
        let tenant = if !cfg.jwt.is_empty() && key.is_some_and(crate::tenant_auth::is_jwt) {
            // A bearer JWT from a trusted issuer: its tenant claim names the tenant.
            let token = key.and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
            match crate::tenant_auth::jwt::verify(&cfg.jwt, token, Limiter::now_unix()) {
                Ok((_issuer, subject)) => match cfg.tenants.by_subject(&subject) {
                    Some(t) => t.clone(),
                    None => {
                        return Err(Failure::Gateway(GatewayError::Unauthorized(
                            "auth.jwt.tenant",
                        )))
                    }
                },
                Err(f) => return Err(Failure::Gateway(GatewayError::Unauthorized(f.reason()))),
            }
        } else {
            match cfg.tenants.authenticate(key) {
                Ok(t) => t.clone(),
                Err(AuthFailure::Missing) => {
                    return Err(Failure::Gateway(GatewayError::MissingKey))
                }
                Err(AuthFailure::Invalid) => {
                    return Err(Failure::Gateway(GatewayError::InvalidKey))
                }
            }
        };
        ctx.tenant = Some(tenant.clone());
        if !tenant.ip_allowed(ctx.client_ip) {
            return Err(Failure::Gateway(GatewayError::IpNotAllowed));
        }

        let body = read_body(session, cfg.max_body).await?;
        ctx.bytes_in = body.len() as u64;
        if let Some((secret, window)) = &tenant.signing {
            self.check_signature(session, secret, *window, &body, cfg)
                .await?;
        }
        let mut max_tokens = None;
        let mut user_id = None;
        if !body.is_empty() {
            let peek = crate::peek::peek_request(&body);
            ctx.model = peek.model;
            ctx.stream = peek.stream;
            max_tokens = peek.max_tokens;
            user_id = peek.user_id;
            if !tenant.models.is_empty() && !tenant.model_allowed(ctx.model.as_deref()) {
                return Err(Failure::Gateway(GatewayError::ModelNotAllowed(
                    ctx.model.clone().unwrap_or_else(|| "(none)".into()),
                )));
            }
        }
        ctx.billable = max_tokens.is_some();
        if !tenant.limits.is_empty() {
            self.admit(ctx, &tenant, body.len(), max_tokens, cfg, route.upstream)
                .await?;
        }

        let Some(up) = cfg.upstreams.get(route.upstream) else {
            return Err(Failure::Gateway(GatewayError::Internal));
        };
        ctx.upstream = Some(up.name.clone());
        // Content filters on the request: a banned word refuses it (nothing is sent
        // upstream); redaction rewrites only the affected JSON strings.
        let mut body = body;
        if let Some(f) = &cfg.filters.request {
            // In place when the body is not shared (one read in several pieces never is),
            // so a large body is not held twice while it is redacted.
            let outcome = match body.try_into_mut() {
                Ok(mut owned) => {
                    let r = f.apply_in_place(&mut owned);
                    body = owned.freeze();
                    r
                }
                Err(shared) => {
                    body = shared;
                    f.apply(&body).map(|r| {
                        r.map(|(redacted, hits)| {
                            body = Bytes::from(redacted);
                            hits
                        })
                    })
                }
            };
            match outcome {
                Err(blocked) => {
                    METRICS
                        .filter_hits
                        .with_label_values(&["banned_word", "block"])
                        .inc();
                    ctx.filter_actions.push(FilterAction {
                        filter: "banned_word".into(),
                        action: "block",
                    });
                    log::info!(
                        "{}: request refused by banned word #{}",
                        ctx.request_id,
                        blocked.word
                    );
                    return Err(Failure::Gateway(GatewayError::FilterBlocked));
                }
                Ok(Some(hits)) => {
                    // One counter update per rule, not per hit: a large body can hold
                    // 100,000 numbers (a label lookup each was ~1 ms per MiB).
                    let mut counts: Vec<(&str, &'static str, u64)> = Vec::new();
                    for h in &hits {
                        let (name, action) = (&*h.name, h.action.as_str());
                        match counts.iter_mut().find(|c| c.0 == name && c.1 == action) {
                            Some(c) => c.2 += 1,
                            None => counts.push((name, action, 1)),
                        }
                    }
                    for (name, action, n) in counts {
                        METRICS
                            .filter_hits
                            .with_label_values(&[name, action])
                            .inc_by(n);
                    }
                    ctx.filter_actions.reserve(hits.len());
                    for h in &hits {
                        ctx.filter_actions.push(FilterAction {
                            filter: h.name.to_string(),
                            action: h.action.as_str(),
                        });
                    }
                    log::info!(
                        "{}: request filter: {} redaction(s)",
                        ctx.request_id,
                        hits.len()
                    );
                }
                Ok(None) => {}
            }
        }
        if self.audit.bodies {
            ctx.audit_request = Some(body.clone());
            ctx.audit_response = Some(Vec::new());
        }
        let affinity = user_id.as_deref().map(affinity_hash);

        // Response cache: serve a hit, wait for an identical request in flight, or lead.
        let mut leader = None;
        if let Some((key, stream_req)) = self.cache_key(session, ctx, cfg, route, &tenant, &body) {
            if let Some(hit) = self.cache.get(&key, &cfg.cache).await {
                return self
                    .serve_cached(session, ctx, hit, stream_req)
                    .await
                    .map(|()| None);
            }
            ctx.cache_status = Some("miss");
            if !stream_req {
                match self.cache.join(&key) {
                    Join::Leader(g) => {
                        ctx.want_cache_body = true;
                        leader = Some(Box::new((key, g)));
                    }
                    Join::Follower(rx) => {
                        if let Some(hit) = follow(rx, up.timeouts.total).await {
                            return self
                                .serve_cached(session, ctx, hit, false)
                                .await
                                .map(|()| None);
                        }
                    }
                }
            }
        }
        Ok(Some(Forward {
            up,
            body,
            affinity,
            leader,
        }))
    }

    /// A tenant that must sign its requests: check `x-sluice-signature` over the body
    /// as received, then that the signature was not seen before in its window (in
    /// process, or in Redis when limits are shared).
    async fn check_signature<D: Downstream>(
        &self,
        session: &D,
        secret: &crate::upstream::Secret,
        window: u64,
        body: &[u8],
        cfg: &Config,
    ) -> Result<(), Failure> {
        use crate::tenant_auth::signature;
        let req = session.req_header();
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let header = req.headers.get(signature::HEADER).map(|v| v.as_bytes());
        let now = Limiter::now_unix();
        let replay_key = signature::verify(
            header,
            secret.expose().as_bytes(),
            req.method.as_str(),
            path,
            body,
            now,
            window,
        )
        .map_err(|f| Failure::Gateway(GatewayError::Unauthorized(f.reason())))?;
        let t = header.and_then(signature::timestamp).unwrap_or(now);
        let fresh = match &cfg.redis {
            Some(_) => match self.nonces.redis_check(&replay_key, window).await {
                Some(fresh) => fresh,
                None => self
                    .nonces
                    .memory
                    .check_and_insert(&replay_key, t + window, now),
            },
            None => self
                .nonces
                .memory
                .check_and_insert(&replay_key, t + window, now),
        };
        if !fresh {
            return Err(Failure::Gateway(GatewayError::Unauthorized(
                signature::SigFailure::Replay.reason(),
            )));
        }
        Ok(())
    }

    /// The cache key of a cacheable request (and whether it asked for a stream), or
    /// `None`; sets `x-sluice-cache: bypass` where caching applies but is skipped.
    fn cache_key<D: Downstream>(
        &self,
        session: &D,
        ctx: &mut Ctx,
        cfg: &Config,
        route: &crate::route::Route,
        tenant: &Tenant,
        body: &[u8],
    ) -> Option<(crate::cache::Key, bool)> {
        let on = tenant.cache.or(route.cache).unwrap_or(cfg.cache.enabled);
        let req = session.req_header();
        if !on
            || req.method != http::Method::POST
            || !matches!(req.uri.path(), "/v1/messages" | "/v1/messages/count_tokens")
        {
            return None;
        }
        let no_cache = req.headers.get_all("cache-control").iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.to_ascii_lowercase().contains("no-cache")
                    || s.to_ascii_lowercase().contains("no-store")
            })
        });
        if no_cache || (ctx.stream && !cfg.cache.streams) {
            ctx.cache_status = Some("bypass");
            return None;
        }
        let key = crate::cache::key(
            (!cfg.cache.shared).then_some(tenant.name.as_str()),
            &route.path,
            body,
            req.headers.get("anthropic-version").map(|v| v.as_bytes()),
            req.headers.get("anthropic-beta").map(|v| v.as_bytes()),
        )?;
        Some((key, ctx.stream))
    }

    /// Answer from the cache (as JSON, or replayed as SSE for a streaming request).
    async fn serve_cached<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        body: Bytes,
        stream: bool,
    ) -> Result<(), Failure> {
        let saved = crate::usage::usage_from_json(&body).map(|(u, m)| {
            ctx.response_model = m;
            u.input_tokens + u.output_tokens
        });
        let (body, content_type) = if stream {
            match crate::cache::replay::message_to_sse(&body) {
                Some(sse) => (Bytes::from(sse), "text/event-stream; charset=utf-8"),
                None => return Err(Failure::Gateway(GatewayError::Internal)),
            }
        } else {
            (body, "application/json")
        };
        ctx.cache_status = Some("hit");
        ctx.cache_saved_tokens = saved.unwrap_or(0);
        let mut resp = ResponseHeader::build(200, Some(10)).map_err(Failure::Abort)?;
        let _ = resp.insert_header("content-type", content_type);
        let _ = resp.insert_header("content-length", body.len().to_string());
        let _ = resp.insert_header("x-sluice-cache", "hit");
        let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
        let _ = resp.insert_header("request-id", ctx.request_id.as_str());
        let _ = resp.insert_header(
            "server-timing",
            crate::observe::server_timing(ctx.start.elapsed(), Duration::ZERO),
        );
        crate::relay::headers::add_ratelimit_headers(&mut resp, ctx);
        ctx.status = 200;
        ctx.bytes_out += body.len() as u64;
        session
            .write_response_header(Box::new(resp), false)
            .await
            .map_err(Failure::Abort)?;
        ctx.first_byte_at = Some(Instant::now());
        session
            .write_response_body(Some(body), true)
            .await
            .map_err(Failure::Abort)?;
        Ok(())
    }

    /// Check the tenant's limits; on admission keep a guard (settled in `logging`) and
    /// wait out any `delay`.
    async fn admit(
        &self,
        ctx: &mut Ctx,
        tenant: &Tenant,
        body_len: usize,
        max_tokens: Option<u64>,
        cfg: &Config,
        upstream: usize,
    ) -> Result<(), Failure> {
        let estimate = match (&tenant.limits.tokens, max_tokens) {
            (Some(_), Some(m)) => estimate_input_tokens(body_len).saturating_add(m),
            _ => 0,
        };
        // A lease outlives the longest possible exchange, then frees itself.
        let lease_ttl = cfg
            .upstreams
            .get(upstream)
            .map_or(Duration::from_secs(900), |u| u.timeouts.total)
            + Duration::from_secs(60);
        let lease_id = new_request_id();
        // Spend quotas reserve the worst case: every input token at the dearest input
        // rate plus max_tokens of output (reconciled from usage at the end).
        let cost_estimate = match (&tenant.limits.quota, &cfg.pricing, max_tokens) {
            (Some(q), Some(p), Some(m)) if q.limits_cost() => p
                .estimate_micros(
                    ctx.model.as_deref().unwrap_or(""),
                    estimate_input_tokens(body_len),
                    m,
                )
                .unwrap_or(0),
            _ => 0,
        };
        let req = AdmitRequest {
            tenant: &tenant.name,
            limits: &tenant.limits,
            token_estimate: estimate,
            cost_estimate,
            lease_id: &lease_id,
            lease_ttl_ns: lease_ttl.as_nanos() as u64,
            unix_secs: Limiter::now_unix(),
        };
        let (adm, used) = self.limiter.admit(&req).await;
        let refused = adm.refused;
        let retry = adm.retry_after_ns;
        let delay = adm.delay_ns;
        ctx.ratelimit = Some(adm);
        if let Some(reason) = refused {
            return Err(Failure::Gateway(GatewayError::RateLimited {
                reason,
                retry_after: retry_after_secs(retry),
            }));
        }
        ctx.limit_guard = Some(LimitGuard::new(
            self.limiter.clone(),
            &tenant.name,
            &tenant.limits,
            estimate,
            cost_estimate,
            &lease_id,
            used,
        ));
        if delay > 0 {
            tokio::time::sleep(Duration::from_nanos(delay)).await;
        }
        Ok(())
    }

    /// Write a gateway-made error (Anthropic shape + `x-sluice-reason`).
    async fn respond_error<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        e: &GatewayError,
    ) -> Result<()> {
        if session.response_written() {
            return Ok(());
        }
        let body = e.body(&ctx.request_id);
        let mut resp = ResponseHeader::build(e.status(), Some(8))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("x-sluice-reason", e.reason())?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        resp.insert_header("request-id", ctx.request_id.as_str())?;
        if let GatewayError::MethodNotAllowed { allow, .. } = e {
            resp.insert_header("allow", allow.as_str())?;
        }
        if let GatewayError::RateLimited { retry_after, .. }
        | GatewayError::NoUpstreamKey { retry_after } = e
        {
            resp.insert_header("retry-after", retry_after.to_string())?;
        }
        crate::relay::headers::add_ratelimit_headers(&mut resp, ctx);
        if matches!(
            e,
            GatewayError::BodyTooLarge { .. } | GatewayError::BodyRead(_)
        ) {
            // The rest of the body was not read: the connection cannot be reused.
            session.set_keepalive(None);
            resp.insert_header("connection", "close")?;
        }
        ctx.status = e.status();
        ctx.reason = Some(e.reason());
        if ctx.error.is_none() && e.status() >= 500 {
            ctx.error = Some(e.to_string());
        }
        ctx.bytes_out += body.len() as u64;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(())
    }
}

impl Gateway {
    /// Counters, histograms and the usage book for one finished request.
    fn record_metrics<D: Downstream>(&self, session: &D, ctx: &mut Ctx) {
        let m = &*METRICS;
        let tenant = ctx.tenant.as_deref();
        let tenant_l = tenant.map_or("", |t| t.name.as_str());
        let route_l = ctx.route.as_deref().unwrap_or("");
        let code = match ctx.status {
            0 if ctx
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("client went away")) =>
            {
                "499".to_string()
            }
            s => s.to_string(),
        };
        let biz = m.biz_label(
            session
                .req_header()
                .headers
                .get("x-biz-type")
                .map(|v| v.as_bytes()),
            tenant.and_then(|t| t.biz.as_deref()),
        );
        m.requests
            .with_label_values(&[tenant_l, route_l, &code, &biz])
            .inc();
        let total = ctx.start.elapsed();
        m.duration
            .with_label_values(&[tenant_l, route_l])
            .observe(total.as_secs_f64());
        if let Some(fb) = ctx.first_byte_at {
            m.ttfb
                .with_label_values(&[tenant_l, route_l])
                .observe((fb - ctx.start).as_secs_f64());
        }
        m.overhead
            .observe(total.saturating_sub(ctx.upstream_wait).as_secs_f64());
        if let Some(reason) = ctx.reason {
            m.rejections.with_label_values(&[tenant_l, reason]).inc();
        }
        let billed = if ctx.billable {
            ctx.usage
        } else {
            Usage::default()
        };
        if billed != Usage::default() {
            let model = m.model_label(ctx.response_model.as_deref());
            for (kind, n) in [
                ("input", billed.input_tokens),
                ("output", billed.output_tokens),
                ("cache_read", billed.cache_read_input_tokens),
                ("cache_write", billed.cache_creation_input_tokens),
            ] {
                if n > 0 {
                    m.tokens
                        .with_label_values(&[tenant_l, &model, kind])
                        .inc_by(n);
                }
            }
        }
        // Cost (with a `pricing` table): metric, usage book, audit; spend-rate alerts.
        if let (Some(pricing), true) = (
            ctx.cfg.as_ref().and_then(|c| c.pricing.as_ref()),
            billed != Usage::default(),
        ) {
            let model_name = ctx
                .response_model
                .as_deref()
                .or(ctx.model.as_deref())
                .unwrap_or("");
            if let Some(cost) = pricing.cost(model_name, &billed) {
                ctx.cost = Some(cost);
                let model = m.model_label(Some(model_name));
                m.cost.with_label_values(&[tenant_l, &model]).inc_by(cost);
                self.usage.record_cost(tenant_l, cost);
                if let Some((rate, minutes)) = tenant.and_then(|t| t.spend_alert) {
                    let now = Limiter::now_unix();
                    let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
                    let w = spend
                        .entry(tenant_l.to_string())
                        .or_insert_with(|| crate::pricing::SpendWindow::new(minutes));
                    w.add(now, cost);
                    if w.alert(now, rate) {
                        log::warn!(
                            "spend alert: tenant {tenant_l} spent {:.4} {} in the last {minutes} min (threshold {rate})",
                            w.rate_over(now),
                            pricing.currency()
                        );
                    }
                    m.spend_alert
                        .with_label_values(&[tenant_l])
                        .set(w.in_episode() as i64);
                }
            }
        }
        self.usage.record(tenant_l, &billed, ctx.reason);
        if let Some(result) = ctx.cache_status {
            m.cache_requests
                .with_label_values(&[tenant_l, result])
                .inc();
            if result == "hit" {
                m.cache_tokens_saved
                    .with_label_values(&[tenant_l])
                    .inc_by(ctx.cache_saved_tokens);
                self.usage
                    .record_cache_hit(tenant_l, ctx.cache_saved_tokens);
            }
        }
        if let (Some(t), Some(a)) = (tenant, &ctx.ratelimit) {
            if let (Some(q), Some(u)) = (&t.limits.quota, a.quota_used) {
                for (name, used, limit) in [
                    ("requests", u.requests, q.daily_requests),
                    ("tokens", u.tokens, q.daily_tokens),
                    ("daily_cost", u.day_cost, q.daily_cost),
                    ("monthly_cost", u.month_cost, q.monthly_cost),
                ] {
                    if let Some(l) = limit.filter(|l| *l > 0) {
                        let ratio = used as f64 / l as f64;
                        m.quota_used.with_label_values(&[tenant_l, name]).set(ratio);
                        self.usage.set_quota(tenant_l, name, ratio);
                    }
                }
            }
        }
        self.status.record(&crate::status::RequestSummary {
            request_id: &ctx.request_id,
            tenant: tenant_l,
            status: code.parse().unwrap_or(0),
            reason: ctx.reason,
            upstream: ctx.upstream.as_deref(),
            upstream_status: ctx.upstream_status,
            error: ctx.error.as_deref(),
            duration: total,
            ttfb: ctx.first_byte_at.map(|fb| fb - ctx.start),
            overhead: total.saturating_sub(ctx.upstream_wait),
            tokens: billed.input_tokens + billed.cache_creation_input_tokens + billed.output_tokens,
        });
    }
}

/// Read the whole request body, refusing (without reading further) anything over `max`.
async fn read_body<D: Downstream>(session: &mut D, max: u64) -> Result<Bytes, Failure> {
    let too_large = || Failure::Gateway(GatewayError::BodyTooLarge { limit: max });
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            Failure::Gateway(GatewayError::BodyRead(e.etype().as_str().to_string()))
        })?;
        let Some(chunk) = chunk else { break };
        let have = first.as_ref().map_or(0, Bytes::len) + rest.len();
        if (have + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        match &first {
            None if rest.is_empty() => first = Some(chunk),
            _ => {
                if let Some(f) = first.take() {
                    rest.reserve(declared.unwrap_or(0) as usize);
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(match first {
        Some(f) => f,
        None => rest.freeze(),
    })
}

impl Gateway {
    /// One request, start to finish, on any [`Downstream`]: sluice's HTTP/1 front end
    /// calls this; the `ProxyHttp` hooks of [`H2Gateway`] run the same four steps for
    /// HTTP/2 connections served by Pingora.
    pub async fn serve<D: Downstream>(&self, session: &mut D) {
        let mut ctx = Ctx::new();
        self.begin(session, &mut ctx);
        if let Err(e) = self.answer(session, &mut ctx).await {
            self.fail(session, &e, &mut ctx).await;
            session.set_keepalive(None);
        }
        self.finish(session, &mut ctx).await;
    }

    /// Request id, client address, config snapshot, keepalive.
    fn begin<D: Downstream>(&self, session: &mut D, ctx: &mut Ctx) {
        ctx.start = Instant::now();
        ctx.request_id = client_request_id(
            session
                .req_header()
                .headers
                .get("x-request-id")
                .map(|v| v.as_bytes()),
        )
        .unwrap_or_else(new_request_id);
        ctx.client_ip = session.client_ip();
        let cfg = self.config.load_full();
        if !session.shutting_down() {
            let idle =
                listener_for(&cfg, session.local_port()).map(|l| l.keepalive_idle.as_secs().max(1));
            session.set_keepalive(idle);
        }
        ctx.cfg = Some(cfg);
    }

    /// Answer the request: forward it, or refuse it with a gateway error.
    async fn answer<D: Downstream>(&self, session: &mut D, ctx: &mut Ctx) -> Result<()> {
        let Some(cfg) = ctx.cfg.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no config snapshot");
        };
        let e = match self.handle(session, ctx, &cfg).await {
            Ok(()) => return Ok(()),
            Err(Failure::Gateway(e)) => e,
            Err(Failure::Abort(e)) => return Err(e),
        };
        self.respond_error(session, ctx, &e).await
    }

    /// The exchange failed: answer with an error if nothing was sent yet. The status
    /// sent (0: none).
    async fn fail<D: Downstream>(&self, session: &mut D, e: &Error, ctx: &mut Ctx) -> u16 {
        let mut code = 0;
        if !session.response_written() {
            let ge = match (e.esource(), e.etype()) {
                (
                    ErrorSource::Downstream,
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ) => None,
                (ErrorSource::Downstream, _) => {
                    Some(GatewayError::BodyRead(e.etype().as_str().to_string()))
                }
                _ => Some(GatewayError::Internal),
            };
            if let Some(ge) = ge {
                code = ge.status();
                if self.respond_error(session, ctx, &ge).await.is_err() {
                    code = 0;
                }
            }
        }
        if ctx.error.is_none() {
            ctx.error = Some(e.etype().as_str().to_string());
        }
        code
    }

    /// Settle limits, record metrics, write the access and audit logs.
    async fn finish<D: Downstream>(&self, session: &mut D, ctx: &mut Ctx) {
        if let Some(guard) = ctx.limit_guard.take() {
            let u = &ctx.usage;
            // Cache reads are not counted against limits (as with Anthropic's own).
            let used = if ctx.billable {
                u.input_tokens + u.cache_creation_input_tokens + u.output_tokens
            } else {
                0
            };
            // Spend is reconciled from the priced usage (cache reads included: they cost).
            let cost_used = match ctx.cfg.as_ref().and_then(|c| c.pricing.as_ref()) {
                Some(p) if ctx.billable && guard.cost_reserved() > 0 => {
                    let model = ctx
                        .response_model
                        .as_deref()
                        .or(ctx.model.as_deref())
                        .unwrap_or("");
                    p.cost_micros(model, u).unwrap_or(0)
                }
                _ => 0,
            };
            guard.finish(used, cost_used).await;
        }
        self.record_metrics(session, ctx);
        if !self.access_log.enabled() && !self.audit.enabled() {
            return;
        }
        let total = ctx.start.elapsed();
        let req = session.req_header();
        let tenant = ctx.tenant.as_deref();
        let rec = AccessRecord {
            ts: now_rfc3339(),
            request_id: &ctx.request_id,
            client_ip: ctx.client_ip.map(|ip| ip.to_string()),
            method: req.method.as_str(),
            path: req.uri.path(),
            route: ctx.route.as_deref(),
            tenant: tenant.map(|t| t.name.as_str()),
            biz: tenant.and_then(|t| t.biz.as_deref()),
            status: ctx.status,
            reason: ctx.reason,
            model: ctx.model.as_deref(),
            stream: ctx.stream,
            upstream: ctx.upstream.as_deref(),
            endpoint: ctx.endpoint.as_deref(),
            key_id: ctx.key_id.as_deref(),
            bytes_in: ctx.bytes_in,
            bytes_out: ctx.bytes_out,
            duration_ms: ms(total),
            ttfb_ms: ctx.first_byte_at.map(|t| ms(t - ctx.start)),
            upstream_ms: ms(ctx.upstream_wait),
            overhead_ms: ms(total.saturating_sub(ctx.upstream_wait)),
            usage: (ctx.usage != Usage::default()).then_some(ctx.usage),
            attempts: ctx.attempts,
            cost: ctx.cost,
            error: ctx.error.as_deref(),
        };
        if self.access_log.enabled() {
            self.access_log.write(&rec);
        }
        self.audit.write(
            &rec,
            &ctx.filter_actions,
            ctx.audit_request.as_deref(),
            ctx.audit_response.as_deref(),
        );
    }
}

impl Gateway {
    /// For a connection on `port`: how long it may idle between requests, and how many
    /// requests it may carry (0: no limit).
    pub fn connection_limits(&self, port: Option<u16>) -> (Duration, u32) {
        let cfg = self.config.load();
        listener_for(&cfg, port).map_or((Duration::from_secs(60), 0), |l| {
            (
                l.keepalive_idle.max(Duration::from_secs(1)),
                l.keepalive_max_requests,
            )
        })
    }
}

/// The listener a connection arrived on (by local port), else the first.
fn listener_for(cfg: &Config, port: Option<u16>) -> Option<&crate::config::Listener> {
    cfg.listeners
        .iter()
        .find(|l| Some(l.addr.port()) == port)
        .or(cfg.listeners.first())
}

/// The gateway as Pingora `ProxyHttp` hooks, for HTTP/2 connections (which Pingora's
/// `HttpProxy` serves): each hook is one step of [`Gateway::serve`].
pub struct H2Gateway(pub Arc<Gateway>);

#[async_trait]
impl ProxyHttp for H2Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        self.0.begin(session, ctx);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.0.answer(session, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Every request is answered in request_filter; reaching here is a bug.
        Error::e_explain(
            ErrorType::InternalError,
            "sluice drives upstream exchanges itself",
        )
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        FailToProxy {
            error_code: self.0.fail(session, e, ctx).await,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _e: &Error) -> bool {
        // Broken streams and client disconnects are recorded in the access log.
        ctx.error.is_some()
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        self.0.finish(session, ctx).await;
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
