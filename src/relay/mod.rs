//! Drives one upstream exchange for a request whose body sluice already holds: pick the
//! endpoint and key, connect (Pingora's connector; HTTP/1.1 exchanges and their idle pool
//! are sluice's own, `h1client`), send the request,
//! enforce the timeouts, and stream the response to the client chunk by chunk while the
//! SSE parser observes it (usage, completion). Owning the exchange (rather than
//! Pingora's proxy loop) is what lets sluice keep the body for replay and decide about
//! retries itself; see docs/architecture.md.

mod dns;
mod h1client;
pub mod h1wire;
pub mod headers;

use crate::downstream::Downstream;
use crate::error::{stream_error_event, GatewayError};
use crate::observe::metrics::METRICS;
use crate::proxy::Ctx;
use crate::sse::SseParser;
use crate::upstream::{policy, Endpoint, Upstream};
use crate::usage::{usage_from_json, StreamUsage};
use bytes::Bytes;
use dns::DnsCache;
use pingora::connectors::http::Connector;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::ALPN;
use pingora::tls::x509::X509;
use pingora::upstreams::peer::HttpPeer;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
// Pingora's timer wheel (10 ms resolution, its own clock thread) instead of tokio's:
// arming a tokio timer earlier than any other wakes the runtime's driver through its
// eventfd, which at light load happened on every request (a write and an extra
// epoll_wait round per request).
use pingora::time::fast_timeout::fast_timeout as timeout;

/// How an exchange ended badly.
pub enum Failure {
    /// Nothing reached the client yet: answer with this error.
    Gateway(GatewayError),
    /// The response already started (or the client is gone): the connection must close.
    Abort(Box<Error>),
}

/// Counts an open SSE response in `sluice_active_streams` for as long as it lives.
struct StreamGauge;

impl StreamGauge {
    fn open() -> Self {
        METRICS.active_streams.inc();
        StreamGauge
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        METRICS.active_streams.dec();
    }
}

/// One read of the upstream body.
enum Read {
    Chunk(Bytes),
    Done,
    TimedOut(&'static str),
    Broken,
    ClientGone(Box<Error>),
}

/// Count and log filter actions (never the matched text).
fn record_hits(ctx: &mut Ctx, hits: &[crate::filter::Hit]) {
    for h in hits {
        METRICS
            .filter_hits
            .with_label_values(&[&h.name, h.action.as_str()])
            .inc();
        ctx.filter_actions
            .push(crate::observe::audit::FilterAction {
                filter: h.name.to_string(),
                action: h.action.as_str(),
            });
    }
    if !hits.is_empty() {
        log::info!(
            "{}: response filter: {} action(s)",
            ctx.request_id,
            hits.len()
        );
    }
}

/// Largest JSON response read whole for response filtering.
const JSON_FILTER_LIMIT: usize = 8 << 20;

/// Why a try failed before any response header.
enum SendError {
    /// Connect/TLS failure or a connection that broke before answering.
    Connect(GatewayError),
    Timeout(GatewayError),
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Largest non-streaming response body kept (by reference) for reading `usage`.
const USAGE_SCAN_LIMIT: usize = 8 << 20;

/// The upstream side: pooled connections, DNS cache, CA bundles.
pub struct Relay {
    /// Pingora's pooled HTTP client: HTTP/2 upstreams, `HEAD`, health checks.
    connector: Connector,
    /// Connections for sluice's own HTTP/1.1 exchanges (`h1client`).
    transport: TransportConnector,
    /// Idle HTTP/1.1 connections kept per upstream address and worker thread.
    max_idle: usize,
    dns: DnsCache,
    cas: Mutex<HashMap<String, Arc<Box<[X509]>>>>,
}

impl Relay {
    /// `pool_size`: idle upstream connections kept per process (Pingora's pool) and per
    /// endpoint address (sluice's HTTP/1.1 pool, split evenly over the `threads` worker
    /// threads, each of which keeps its own).
    pub fn new(pool_size: usize, threads: usize) -> Self {
        let mut opts = pingora::connectors::ConnectorOptions::new(pool_size);
        opts.keepalive_pool_size = pool_size.max(1);
        Relay {
            transport: TransportConnector::new(Some(opts.clone())),
            connector: Connector::new(Some(opts)),
            max_idle: pool_size.div_ceil(threads.max(1)).max(1),
            dns: DnsCache::default(),
            cas: Mutex::new(HashMap::new()),
        }
    }

    fn ca(&self, path: &str) -> Result<Arc<Box<[X509]>>, String> {
        let mut map = self.cas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = map.get(path) {
            return Ok(ca.clone());
        }
        let pem = std::fs::read(path).map_err(|e| format!("cannot read CA file {path}: {e}"))?;
        let certs = X509::stack_from_pem(&pem).map_err(|e| format!("bad CA file {path}: {e}"))?;
        let ca = Arc::new(certs.into_boxed_slice());
        map.insert(path.to_string(), ca.clone());
        Ok(ca)
    }

    async fn peer(&self, up: &Upstream, ep: &Endpoint) -> Result<HttpPeer, GatewayError> {
        let addr = self.dns.resolve(&ep.host, ep.port).await.map_err(|e| {
            log::warn!("upstream {}: cannot resolve {}: {e}", up.name, ep.host);
            GatewayError::UpstreamUnavailable
        })?;
        // Always set SNI: an empty SNI would disable certificate checks.
        let mut peer = HttpPeer::new(addr, ep.tls, ep.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(up.timeouts.connect);
        o.total_connection_timeout = Some(up.timeouts.connect + up.timeouts.tls);
        o.idle_timeout = Some(up.pool_idle);
        o.verify_cert = up.verify_tls;
        o.verify_hostname = up.verify_tls;
        o.alpn = if up.http2 { ALPN::H2H1 } else { ALPN::H1 };
        if let Some(ca) = &up.ca_file {
            o.ca = Some(self.ca(ca).map_err(|e| {
                log::error!("upstream {}: {e}", up.name);
                GatewayError::UpstreamUnavailable
            })?);
        }
        Ok(peer)
    }

    /// Pick endpoint and key, send the request and read the response head — retrying
    /// on another key and/or endpoint, with backoff, as the upstream's policy allows.
    async fn open<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        up: &Upstream,
        body: &Bytes,
        affinity: Option<u64>,
        deadline: Instant,
    ) -> Result<(UpConn, Instant), Failure> {
        let t = up.timeouts;
        // HTTP/1.1 upstreams get the request head serialized by sluice, so head and body
        // leave in one write; HTTP/2 (and HEAD, whose answer Pingora must know has no
        // body) go through Pingora's request writer.
        let own_wire = !up.http2 && session.req_header().method != http::Method::HEAD;
        let client_req = if own_wire {
            None
        } else {
            Some(session.req_header().clone())
        };
        let client_head = own_wire.then(|| headers::client_head(session.req_header(), up));
        let mut tried_eps: Vec<usize> = Vec::new();
        let mut tried_keys: Vec<usize> = Vec::new();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            ctx.attempts = attempt;
            let last_try = attempt >= up.retry.attempts;
            let key_i = if up.keys.is_empty() {
                None
            } else {
                match up.keys.pick(affinity, &tried_keys) {
                    Some(k) => Some(k),
                    None => {
                        return Err(Failure::Gateway(GatewayError::NoUpstreamKey {
                            retry_after: up.keys.soonest_back_ms().div_ceil(1000).max(1),
                        }))
                    }
                }
            };
            let Some(ep_i) = up.pick_endpoint(&tried_eps) else {
                return Err(Failure::Gateway(GatewayError::UpstreamUnavailable));
            };
            let ep = &up.endpoints[ep_i];
            let key = key_i.and_then(|k| up.keys.get(k));
            ctx.endpoint = Some(ep.url.clone());
            ctx.key_id = key.map(|k| k.id.clone());
            tried_eps.push(ep_i);
            tried_keys.extend(key_i);

            let unforwardable = || {
                Failure::Gateway(GatewayError::InvalidBody(
                    "request headers could not be forwarded".into(),
                ))
            };
            let req = match (&client_head, &client_req) {
                (Some(head), _) => {
                    let inline = body.len() <= INLINE_BODY_MAX;
                    let mut wire =
                        Vec::with_capacity(512 + head.len() + if inline { body.len() } else { 0 });
                    headers::upstream_head_h1(
                        session.req_header(),
                        head,
                        up,
                        ep,
                        key,
                        &ctx.request_id,
                        body.len(),
                        &mut wire,
                    )
                    .map_err(|_| unforwardable())?;
                    if inline {
                        wire.extend_from_slice(body);
                    }
                    Outgoing::Wire { wire, inline }
                }
                (None, Some(client_req)) => Outgoing::Head(Box::new(
                    headers::upstream_request(client_req, up, ep, key, &ctx.request_id, body.len())
                        .map_err(|_| unforwardable())?,
                )),
                (None, None) => return Err(Failure::Gateway(GatewayError::Internal)),
            };
            let sent_at = Instant::now();
            ctx.upstream_started.get_or_insert(sent_at);
            let outcome = match self.peer(up, ep).await {
                Ok(peer) => {
                    let r = tokio::select! {
                        r = self.send(&peer, &req, body, t.first_byte, deadline) => r,
                        _ = session.client_gone() => {
                            ctx.error = Some("client went away before the response".into());
                            return Err(Failure::Abort(Error::explain(
                                ErrorType::ConnectionClosed,
                                "client closed the connection while waiting for the upstream",
                            )));
                        }
                    };
                    r
                }
                Err(e) => Err(SendError::Connect(e)),
            };
            ctx.upstream_wait += sent_at.elapsed();
            let code_label = match &outcome {
                Ok(s) => s.status().to_string(),
                Err(SendError::Connect(_)) => "connect_error".to_string(),
                Err(SendError::Timeout(_)) => "timeout".to_string(),
            };
            METRICS
                .upstream_requests
                .with_label_values(&[&up.name, &ep.url, &code_label])
                .inc();
            if attempt > 1 {
                METRICS
                    .upstream_retries
                    .with_label_values(&[&up.name])
                    .inc();
            }
            let out_of_time =
                deadline.saturating_duration_since(Instant::now()) < Duration::from_millis(50);
            match outcome {
                Ok(s) => {
                    let status = s.status();
                    up.record(ep_i, !(status >= 500 || status == 529));
                    if let Some(k) = key.filter(|_| up.cooldown.applies_to(status)) {
                        let resets: Vec<&str> = [
                            "anthropic-ratelimit-requests-reset",
                            "anthropic-ratelimit-tokens-reset",
                            "anthropic-ratelimit-input-tokens-reset",
                            "anthropic-ratelimit-output-tokens-reset",
                        ]
                        .iter()
                        .filter_map(|n| s.header(n))
                        .collect();
                        let hint = policy::retry_hint(s.header("retry-after"), &resets, unix_now());
                        if let Some(cd) = up.cooldown.for_status(status, hint) {
                            k.cool_down(cd.as_millis() as u64, !matches!(status, 401 | 403));
                            log::warn!(
                                "{}: upstream {} key {} answered {status}: resting it for {:?}",
                                ctx.request_id,
                                up.name,
                                k.id,
                                cd
                            );
                        }
                    }
                    if up.retry.retries_status(status) && !last_try && !out_of_time {
                        log::info!(
                            "{}: retrying after upstream status {status} (try {attempt})",
                            ctx.request_id
                        );
                        let mut s = s;
                        s.shutdown().await;
                        self.backoff(up, attempt, deadline).await;
                        continue;
                    }
                    return Ok((s, sent_at));
                }
                Err(e) => {
                    up.record(ep_i, false);
                    let (retry, failure) = match e {
                        SendError::Connect(g) => (up.retry.on_connect, g),
                        SendError::Timeout(g) => (up.retry.on_timeout, g),
                    };
                    if retry && !last_try && !out_of_time {
                        log::info!(
                            "{}: retrying after {failure} (try {attempt})",
                            ctx.request_id
                        );
                        self.backoff(up, attempt, deadline).await;
                        continue;
                    }
                    return Err(Failure::Gateway(failure));
                }
            }
        }
    }

    /// Send the request to `up` — retrying on another key and/or endpoint, with backoff,
    /// while nothing has reached the client — and stream the answer to the client.
    pub async fn forward<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        up: &Upstream,
        body: Bytes,
        affinity: Option<u64>,
    ) -> Result<(), Failure> {
        let t = up.timeouts;
        let deadline = Instant::now() + t.total;
        // The connect/retry part runs boxed: its state is large and short-lived, and
        // inline it would size the future that lives as long as the stream.
        let (mut upstream, sent_at) =
            Box::pin(self.open(session, ctx, up, &body, affinity, deadline)).await?;
        // Sent for good: do not hold the request body (and the buffer it may share) for
        // the rest of a long stream.
        drop(body);
        let header_at = Instant::now();
        ctx.upstream_status = Some(upstream.status());
        let is_sse = upstream.has_content_type(b"text/event-stream");
        let is_json = upstream.has_content_type(b"application/json");
        let mut resp = upstream
            .client_response(ctx, header_at - sent_at)
            .map_err(|_| Failure::Gateway(GatewayError::UpstreamProtocol))?;
        // The client's copy is built: the upstream head's own storage can go.
        upstream.drop_head();
        ctx.status = resp.status.as_u16();
        ctx.stream = is_sse;
        let filters = ctx.cfg.as_ref().map(|c| c.filters.clone_response());
        let filtering = filters.as_ref().is_some_and(|f| f.enabled());

        // A filtered JSON answer is read whole first (Messages answers are small), so its
        // Content-Length can be set after filtering; nothing reaches the client before.
        let mut prefix: Vec<Bytes> = Vec::new();
        if filtering && is_json && !is_sse {
            let mut body = Vec::new();
            let mut complete = false;
            while body.len() <= JSON_FILTER_LIMIT {
                match self
                    .read_chunk(session, &mut upstream, t.idle, deadline, ctx)
                    .await
                {
                    Read::Chunk(c) => body.extend_from_slice(&c),
                    Read::Done => {
                        complete = true;
                        break;
                    }
                    Read::TimedOut(what) => {
                        return Err(Failure::Gateway(GatewayError::UpstreamTimeout(what)))
                    }
                    Read::Broken => {
                        return Err(Failure::Gateway(GatewayError::UpstreamUnavailable))
                    }
                    Read::ClientGone(e) => return Err(Failure::Abort(e)),
                }
            }
            if let Some((u, model)) = usage_from_json(&body) {
                ctx.usage = u;
                ctx.response_model = model;
                if ctx.model.is_none() {
                    ctx.model = ctx.response_model.clone();
                }
            }
            if complete {
                let f = filters.as_ref();
                let out = f.and_then(|f| {
                    crate::filter::filter_message_json(
                        &body,
                        f.redactor.as_deref(),
                        f.masker.as_ref().map(|(w, r)| (&**w, r.as_str())),
                    )
                });
                if let Some((filtered, hits)) = out {
                    record_hits(ctx, &hits);
                    body = filtered;
                }
                resp.remove_header("transfer-encoding");
                let _ = resp.insert_header("content-length", body.len().to_string());
                if ctx.want_cache_body {
                    ctx.cache_body = Some(Bytes::from(body.clone()));
                }
                ctx.bytes_out += body.len() as u64;
                if let Some(cap) = ctx.audit_response.as_mut() {
                    cap.extend_from_slice(
                        &body[..body.len().min(crate::observe::audit::BODY_CAP + 1)],
                    );
                }
                if let Err(e) = session.write_response_header(Box::new(resp), false).await {
                    ctx.error = Some("client went away".into());
                    return Err(Failure::Abort(e));
                }
                ctx.first_byte_at = Some(Instant::now());
                if let Err(e) = session
                    .write_response_body(Some(Bytes::from(body)), true)
                    .await
                {
                    ctx.error = Some("client went away".into());
                    return Err(Failure::Abort(e));
                }
                self.finish_upstream(upstream, up).await;
                return Ok(());
            }
            // Too large to filter: pass it on unfiltered, as it arrives.
            log::warn!(
                "{}: JSON response over {} bytes passed through without response filtering",
                ctx.request_id,
                JSON_FILTER_LIMIT
            );
            prefix.push(Bytes::from(body));
        }

        let mut stream_filter = (filtering && is_sse).then(|| {
            let f = filters.as_ref();
            crate::filter::StreamFilter::new(
                f.and_then(|f| f.redactor.clone()),
                f.and_then(|f| f.masker.clone()),
            )
        });
        if stream_filter.is_some() {
            // The filter may change lengths: the body is re-framed as chunked.
            resp.remove_header("content-length");
        }

        if let Err(e) = session.write_response_header(Box::new(resp), false).await {
            ctx.error = Some("client went away".into());
            return Err(Failure::Abort(e));
        }
        ctx.first_byte_at = Some(Instant::now());
        let _streaming = is_sse.then(StreamGauge::open);

        let mut sse = is_sse.then(SseParser::new);
        let mut stream_usage = StreamUsage::default();
        let mut json_parts: Vec<Bytes> = Vec::new();
        let mut json_len = 0usize;
        let collect_json = !is_sse && is_json;
        let mut filtered = Vec::new();
        let mut prefix = prefix.into_iter();

        loop {
            let chunk = match prefix.next() {
                Some(c) => c,
                None => match self
                    .read_chunk(session, &mut upstream, t.idle, deadline, ctx)
                    .await
                {
                    Read::Chunk(c) => c,
                    Read::Done => break,
                    Read::TimedOut(what) => {
                        ctx.usage = stream_usage.usage();
                        self.flush_filter(session, ctx, stream_filter.as_mut(), &mut filtered)
                            .await;
                        return self.break_stream(session, ctx, sse.is_some(), what).await;
                    }
                    Read::Broken => {
                        ctx.usage = stream_usage.usage();
                        self.flush_filter(session, ctx, stream_filter.as_mut(), &mut filtered)
                            .await;
                        return self
                            .break_stream(session, ctx, sse.is_some(), "upstream disconnected")
                            .await;
                    }
                    Read::ClientGone(e) => {
                        ctx.usage = stream_usage.usage();
                        upstream.shutdown().await;
                        return Err(Failure::Abort(e));
                    }
                },
            };
            if let Some(p) = sse.as_mut() {
                p.feed(&chunk, |ev| stream_usage.observe(ev));
            } else if collect_json && json_len + chunk.len() <= USAGE_SCAN_LIMIT {
                json_len += chunk.len();
                json_parts.push(chunk.clone());
            }
            let out = match stream_filter.as_mut() {
                Some(f) => {
                    filtered.clear();
                    f.push(&chunk, &mut filtered);
                    let hits = f.take_hits();
                    record_hits(ctx, &hits);
                    if filtered.is_empty() {
                        continue;
                    }
                    Bytes::copy_from_slice(&filtered)
                }
                None => chunk,
            };
            if let Err(e) = self.send_body(session, ctx, out).await {
                ctx.usage = stream_usage.usage();
                upstream.shutdown().await;
                return Err(Failure::Abort(e));
            }
        }

        if sse.is_some() {
            ctx.usage = stream_usage.usage();
            ctx.response_model = stream_usage.model().map(str::to_string);
            if ctx.model.is_none() {
                ctx.model = ctx.response_model.clone();
            }
            self.flush_filter(session, ctx, stream_filter.as_mut(), &mut filtered)
                .await;
            // An Anthropic stream ends with message_stop or an error event; anything else
            // (including a cut in the middle of an event) was broken upstream: say so
            // instead of passing it off as complete.
            let cut_mid_event = sse.as_mut().is_some_and(|p| p.finish());
            if cut_mid_event || (!stream_usage.completed() && !stream_usage.saw_error()) {
                return self
                    .break_stream(session, ctx, true, "upstream ended early")
                    .await;
            }
            if let Some(et) = stream_usage.error_type() {
                ctx.error = Some(format!("upstream stream error: {et}"));
            }
        } else if collect_json && !json_parts.is_empty() {
            let body = concat(json_parts, json_len);
            if ctx.want_cache_body && upstream.response_done() {
                ctx.cache_body = Some(body.clone());
            }
            if let Some((u, model)) = usage_from_json(&body) {
                ctx.usage = u;
                ctx.response_model = model;
                if ctx.model.is_none() {
                    ctx.model = ctx.response_model.clone();
                }
            }
        }

        if let Err(e) = session.write_response_body(None, true).await {
            ctx.error = Some("client went away".into());
            return Err(Failure::Abort(e));
        }
        self.finish_upstream(upstream, up).await;
        Ok(())
    }

    /// Back to the pool if the response was read to the end, else closed.
    async fn finish_upstream(&self, upstream: UpConn, up: &Upstream) {
        match upstream {
            UpConn::H1(conn, _) => conn.release(up.pool_idle, self.max_idle),
            // Boxed: Pingora's release is a large future, and inline it would size the
            // one that lives as long as the stream.
            UpConn::Pingora(mut s, peer) => {
                if s.response_done() {
                    Box::pin(
                        self.connector
                            .release_http_session(*s, &*peer, Some(up.pool_idle)),
                    )
                    .await;
                } else {
                    Box::pin(s.shutdown()).await;
                }
            }
        }
    }

    /// Write one body chunk to the client (and the audit copy).
    async fn send_body<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        chunk: Bytes,
    ) -> pingora::Result<()> {
        ctx.bytes_out += chunk.len() as u64;
        if let Some(cap) = ctx.audit_response.as_mut() {
            let room = crate::observe::audit::BODY_CAP + 1
                - cap.len().min(crate::observe::audit::BODY_CAP + 1);
            cap.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let r = session.write_response_body(Some(chunk), false).await;
        if r.is_err() {
            ctx.error = Some("client went away".into());
        }
        r
    }

    /// Emit whatever the stream filter still holds (end of stream or a break).
    async fn flush_filter<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        filter: Option<&mut crate::filter::StreamFilter>,
        buf: &mut Vec<u8>,
    ) {
        let Some(f) = filter else { return };
        buf.clear();
        f.finish(buf);
        let hits = f.take_hits();
        record_hits(ctx, &hits);
        if !buf.is_empty() {
            let _ = self
                .send_body(session, ctx, Bytes::copy_from_slice(buf))
                .await;
        }
    }

    /// Read the next upstream body chunk within the idle/total timeouts, watching for the
    /// client leaving meanwhile.
    async fn read_chunk<D: Downstream>(
        &self,
        session: &mut D,
        upstream: &mut UpConn,
        idle: Duration,
        deadline: Instant,
        ctx: &mut Ctx,
    ) -> Read {
        let now = Instant::now();
        if now >= deadline {
            return Read::TimedOut("total timeout");
        }
        if upstream.response_done() {
            // Everything was read: the client may already be sending its next request on
            // this connection, so stop watching it for "gone".
            return Read::Done;
        }
        let wait = idle.min(deadline - now);
        let read = tokio::select! {
            biased;
            r = timeout(wait, upstream.read_body()) => r,
            _ = session.client_gone() => {
                // Dropping the upstream session cancels the upstream request.
                ctx.error = Some("client went away".into());
                return Read::ClientGone(Error::explain(
                    ErrorType::ConnectionClosed,
                    "client closed the connection mid-response",
                ));
            }
        };
        ctx.upstream_wait += now.elapsed();
        match read {
            Err(_) => Read::TimedOut(if wait < idle {
                "total timeout"
            } else {
                "idle timeout"
            }),
            Ok(Err(e)) => {
                log::warn!("{}: upstream body read failed: {e}", ctx.request_id);
                Read::Broken
            }
            Ok(Ok(None)) => Read::Done,
            Ok(Ok(Some(c))) => Read::Chunk(c),
        }
    }

    /// An active health check: `GET path` on the endpoint (with a key, if the upstream
    /// has any). Healthy = any answer below 500 within the connect + first-byte timeouts.
    pub async fn probe(&self, up: &Upstream, ep: &Endpoint, path: &str) -> bool {
        let Ok(peer) = self.peer(up, ep).await else {
            return false;
        };
        let Ok(mut req) =
            RequestHeader::build("GET", format!("{}{path}", ep.base_path).as_bytes(), None)
        else {
            return false;
        };
        let _ = req.insert_header("host", ep.host_header());
        let _ = req.insert_header("anthropic-version", up.anthropic_version.as_str());
        let _ = req.insert_header("user-agent", "sluice-health-check");
        if let Some(k) = up.keys.pick(None, &[]).and_then(|i| up.keys.get(i)) {
            let _ = match up.auth {
                crate::config::schema::AuthStyle::XApiKey => {
                    req.insert_header("x-api-key", k.secret.expose())
                }
                crate::config::schema::AuthStyle::Bearer => {
                    req.insert_header("authorization", format!("Bearer {}", k.secret.expose()))
                }
            };
        }
        let deadline = Instant::now() + up.timeouts.connect + up.timeouts.first_byte;
        match self
            .send(
                &peer,
                &Outgoing::Head(Box::new(req)),
                &Bytes::new(),
                up.timeouts.first_byte,
                deadline,
            )
            .await
        {
            Ok(mut s) => {
                let ok = s.status() < 500;
                s.shutdown().await;
                ok
            }
            Err(_) => false,
        }
    }

    /// Wait before try `attempt + 1`: exponential backoff with full jitter, never past
    /// the deadline.
    async fn backoff(&self, up: &Upstream, attempt: u32, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(up.retry.backoff(attempt).min(left)).await;
    }

    /// Connect (fresh or pooled), write the request, read the response header. A pooled
    /// connection that turns out dead before answering is retried on another connection:
    /// the upstream never saw that request.
    async fn send(
        &self,
        peer: &HttpPeer,
        req: &Outgoing,
        body: &Bytes,
        first_byte: Duration,
        deadline: Instant,
    ) -> Result<UpConn, SendError> {
        let connect_failed = |e: Box<Error>| {
            log::warn!("upstream connect to {peer} failed: {e}");
            SendError::Connect(connect_error(&e))
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            // The exchange owns the connection: a timed-out or failed one is dropped
            // (closed).
            let (res, reused) = match req {
                Outgoing::Wire { wire, inline } => {
                    let (stream, reused) = match h1client::take(peer.reuse_hash()) {
                        Some(s) => (s, true),
                        None => (
                            self.transport
                                .new_stream(peer)
                                .await
                                .map_err(connect_failed)?,
                            false,
                        ),
                    };
                    let body: &[u8] = if *inline { &[] } else { body };
                    let ex = h1client::H1Conn::exchange(peer.reuse_hash(), stream, wire, body);
                    let res = timeout(first_byte.min(left), ex).await;
                    (res.map(|r| r.map(|(c, h)| UpConn::H1(c, h))), reused)
                }
                Outgoing::Head(h) => {
                    let (s, reused) = self
                        .connector
                        .get_http_session(peer)
                        .await
                        .map_err(connect_failed)?;
                    let res = timeout(first_byte.min(left), exchange(s, h, body)).await;
                    let keep = || Box::new(peer.clone());
                    (
                        res.map(|r| r.map(|s| UpConn::Pingora(Box::new(s), keep()))),
                        reused,
                    )
                }
            };
            match res {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => {
                    if reused && attempts < 3 {
                        log::debug!("pooled upstream connection was dead ({e}); reconnecting");
                        continue;
                    }
                    log::warn!("upstream {peer} failed before responding: {e}");
                    return Err(SendError::Connect(GatewayError::UpstreamUnavailable));
                }
                Err(_) => {
                    return Err(SendError::Timeout(GatewayError::UpstreamTimeout(
                        if first_byte <= left {
                            "first byte"
                        } else {
                            "total"
                        },
                    )));
                }
            }
        }
    }

    /// The response already started and the upstream side broke: for SSE, end the stream
    /// with an `error` event so clients know it is incomplete; otherwise cut the
    /// connection (a truncated body must not look complete).
    async fn break_stream<D: Downstream>(
        &self,
        session: &mut D,
        ctx: &mut Ctx,
        is_sse: bool,
        what: &str,
    ) -> Result<(), Failure> {
        ctx.error = Some(format!("upstream stream interrupted: {what}"));
        if is_sse {
            let ev = stream_error_event("api_error", "upstream stream interrupted");
            ctx.bytes_out += ev.len() as u64;
            let r = session
                .write_response_body(Some(Bytes::from(ev)), false)
                .await;
            if r.is_ok() && session.write_response_body(None, true).await.is_ok() {
                // The stream is closed cleanly at the framing level; the connection is not
                // reused because the exchange failed.
                session.set_keepalive(None);
                return Ok(());
            }
        }
        Err(Failure::Abort(Error::explain(
            ErrorType::ReadError,
            format!("upstream stream interrupted: {what}"),
        )))
    }
}

/// Largest request body sent in the same write as the head (copied behind it); larger
/// bodies follow in their own write.
const INLINE_BODY_MAX: usize = 64 << 10;

/// The upstream request, ready to send.
enum Outgoing {
    /// A header for Pingora's request writer (HTTP/2, HEAD, health checks).
    Head(Box<RequestHeader>),
    /// The serialized HTTP/1.1 head, followed by the body when `inline`.
    Wire { wire: Vec<u8>, inline: bool },
}

/// An upstream response under way: sluice's own HTTP/1.1 exchange (with the parsed
/// head, until the client's copy is built) or a Pingora client session.
enum UpConn {
    H1(h1client::H1Conn, h1wire::Head),
    /// The peer is kept for the release to Pingora's pool.
    Pingora(Box<HttpSession>, Box<HttpPeer>),
}

impl UpConn {
    fn status(&self) -> u16 {
        match self {
            UpConn::H1(_, h) => h.status,
            UpConn::Pingora(s, _) => s.response_header().map_or(502, |h| h.status.as_u16()),
        }
    }

    /// A response header's value, if present and visible ASCII.
    fn header(&self, name: &str) -> Option<&str> {
        let v = match self {
            UpConn::H1(_, h) => h.get(name)?,
            UpConn::Pingora(s, _) => s.response_header()?.headers.get(name)?.as_bytes(),
        };
        std::str::from_utf8(v).ok()
    }

    fn has_content_type(&self, prefix: &[u8]) -> bool {
        let v = match self {
            UpConn::H1(_, h) => h.get("content-type"),
            UpConn::Pingora(s, _) => s
                .response_header()
                .and_then(|h| h.headers.get("content-type"))
                .map(|v| v.as_bytes()),
        };
        v.is_some_and(|v| v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix))
    }

    fn client_response(
        &self,
        ctx: &Ctx,
        ttfb: Duration,
    ) -> pingora::Result<pingora::http::ResponseHeader> {
        match self {
            UpConn::H1(_, h) => headers::client_response_h1(h, ctx, ttfb),
            UpConn::Pingora(s, _) => match s.response_header() {
                Some(h) => headers::client_response(h, ctx, ttfb),
                None => Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header"),
            },
        }
    }

    fn drop_head(&mut self) {
        if let UpConn::H1(_, h) = self {
            h.headers = Vec::new();
        }
    }

    async fn read_body(&mut self) -> pingora::Result<Option<Bytes>> {
        match self {
            UpConn::H1(c, _) => c.read_body().await,
            UpConn::Pingora(s, _) => s.read_response_body().await,
        }
    }

    fn response_done(&mut self) -> bool {
        match self {
            UpConn::H1(c, _) => c.response_done(),
            UpConn::Pingora(s, _) => s.response_done(),
        }
    }

    /// Close the connection (dropping it cancels the upstream request).
    async fn shutdown(&mut self) {
        if let UpConn::Pingora(s, _) = self {
            s.shutdown().await;
        }
    }
}

/// Send the request through Pingora's client and read the response header (skipping
/// 1xx heads).
async fn exchange(
    mut s: HttpSession,
    req: &RequestHeader,
    body: &Bytes,
) -> pingora::Result<HttpSession> {
    s.write_request_header(Box::new(req.clone())).await?;
    if !body.is_empty() {
        s.write_request_body(body.clone(), true).await?;
    }
    s.finish_request_body().await?;
    s.read_response_header().await?;
    // HTTP/1 may deliver informational (1xx) heads first.
    while s
        .response_header()
        .is_some_and(|h| h.status.is_informational())
    {
        s.read_response_header().await?;
    }
    Ok(s)
}

fn connect_error(e: &Error) -> GatewayError {
    match e.etype() {
        ErrorType::ConnectTimedout => GatewayError::UpstreamTimeout("connect"),
        ErrorType::TLSHandshakeTimedout => GatewayError::UpstreamTimeout("tls handshake"),
        _ => GatewayError::UpstreamUnavailable,
    }
}

fn concat(parts: Vec<Bytes>, len: usize) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut v = Vec::with_capacity(len);
    for p in parts {
        v.extend_from_slice(&p);
    }
    Bytes::from(v)
}
