//! Drives one upstream exchange for a request whose body sluice already holds: pick the
//! endpoint and key, connect through Pingora's pooled connector, send the request,
//! enforce the timeouts, and stream the response to the client chunk by chunk while the
//! SSE parser observes it (usage, completion). Owning the exchange (rather than
//! Pingora's proxy loop) is what lets sluice keep the body for replay and decide about
//! retries itself; see docs/architecture.md.

mod dns;
pub mod headers;

use crate::error::{stream_error_event, GatewayError};
use crate::proxy::Ctx;
use crate::sse::SseParser;
use crate::upstream::{Endpoint, Upstream};
use crate::usage::{usage_from_json, StreamUsage};
use bytes::Bytes;
use dns::DnsCache;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::tls::x509::X509;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// How an exchange ended badly.
pub enum Failure {
    /// Nothing reached the client yet: answer with this error.
    Gateway(GatewayError),
    /// The response already started (or the client is gone): the connection must close.
    Abort(Box<Error>),
}

/// Largest non-streaming response body kept (by reference) for reading `usage`.
const USAGE_SCAN_LIMIT: usize = 8 << 20;

/// The upstream side: pooled connections, DNS cache, CA bundles.
pub struct Relay {
    connector: Connector,
    dns: DnsCache,
    cas: Mutex<HashMap<String, Arc<Box<[X509]>>>>,
}

impl Relay {
    /// `pool_size`: idle upstream connections kept per process.
    pub fn new(pool_size: usize) -> Self {
        let mut opts = pingora::connectors::ConnectorOptions::new(pool_size);
        opts.keepalive_pool_size = pool_size.max(1);
        Relay {
            connector: Connector::new(Some(opts)),
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

    /// Send `req` (+ `body`) to `up` and stream the answer to the client.
    pub async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        up: &Upstream,
        req: RequestHeader,
        body: Bytes,
    ) -> Result<(), Failure> {
        let t = up.timeouts;
        let deadline = Instant::now() + t.total;
        let Some(ep) = up.endpoints.first() else {
            return Err(Failure::Gateway(GatewayError::UpstreamUnavailable));
        };
        ctx.endpoint = Some(ep.url.clone());
        let peer = self.peer(up, ep).await.map_err(Failure::Gateway)?;

        let sent_at = Instant::now();
        ctx.upstream_started = Some(sent_at);
        let mut upstream = tokio::select! {
            r = self.send(&peer, req, &body, t.first_byte, deadline) => r?,
            _ = client_gone(session) => {
                ctx.error = Some("client went away before the response".into());
                return Err(Failure::Abort(Error::explain(
                    ErrorType::ConnectionClosed,
                    "client closed the connection while waiting for the upstream",
                )));
            }
        };
        let header_at = Instant::now();
        ctx.upstream_wait += header_at - sent_at;
        let Some(uresp) = upstream.response_header() else {
            return Err(Failure::Gateway(GatewayError::UpstreamProtocol));
        };
        ctx.upstream_status = Some(uresp.status.as_u16());
        let is_sse = headers::is_event_stream(uresp);
        let resp = headers::client_response(uresp, ctx, header_at - sent_at)
            .map_err(|_| Failure::Gateway(GatewayError::UpstreamProtocol))?;
        ctx.status = resp.status.as_u16();
        ctx.stream = is_sse;

        if let Err(e) = session.write_response_header(Box::new(resp), false).await {
            ctx.error = Some("client went away".into());
            return Err(Failure::Abort(e));
        }
        ctx.first_byte_at = Some(Instant::now());

        let mut sse = is_sse.then(SseParser::new);
        let mut stream_usage = StreamUsage::default();
        let mut json_parts: Vec<Bytes> = Vec::new();
        let mut json_len = 0usize;
        let collect_json = !is_sse && headers::is_json(upstream.response_header());

        loop {
            let now = Instant::now();
            if now >= deadline {
                return self
                    .break_stream(session, ctx, sse.is_some(), "total timeout")
                    .await;
            }
            let wait = t.idle.min(deadline - now);
            let read = tokio::select! {
                r = timeout(wait, upstream.read_response_body()) => r,
                _ = client_gone(session) => {
                    // Dropping the upstream session cancels the upstream request.
                    ctx.error = Some("client went away".into());
                    ctx.usage = stream_usage.usage();
                    upstream.shutdown().await;
                    return Err(Failure::Abort(Error::explain(
                        ErrorType::ConnectionClosed,
                        "client closed the connection mid-response",
                    )));
                }
            };
            ctx.upstream_wait += now.elapsed();
            let chunk = match read {
                Err(_) => {
                    let what = if wait < t.idle {
                        "total timeout"
                    } else {
                        "idle timeout"
                    };
                    return self.break_stream(session, ctx, sse.is_some(), what).await;
                }
                Ok(Err(e)) => {
                    log::warn!("{}: upstream body read failed: {e}", ctx.request_id);
                    ctx.usage = stream_usage.usage();
                    return self
                        .break_stream(session, ctx, sse.is_some(), "upstream disconnected")
                        .await;
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            if let Some(p) = sse.as_mut() {
                p.feed(&chunk, |ev| stream_usage.observe(ev));
            } else if collect_json && json_len + chunk.len() <= USAGE_SCAN_LIMIT {
                json_len += chunk.len();
                json_parts.push(chunk.clone());
            }
            ctx.bytes_out += chunk.len() as u64;
            if let Err(e) = session.write_response_body(Some(chunk), false).await {
                ctx.error = Some("client went away".into());
                ctx.usage = stream_usage.usage();
                upstream.shutdown().await;
                return Err(Failure::Abort(e));
            }
        }

        if sse.is_some() {
            ctx.usage = stream_usage.usage();
            if ctx.model.is_none() {
                ctx.model = stream_usage.model().map(str::to_string);
            }
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
            if let Some((u, model)) = usage_from_json(&body) {
                ctx.usage = u;
                if ctx.model.is_none() {
                    ctx.model = model;
                }
            }
        }

        if let Err(e) = session.write_response_body(None, true).await {
            ctx.error = Some("client went away".into());
            return Err(Failure::Abort(e));
        }
        if upstream.response_done() {
            self.connector
                .release_http_session(upstream, &peer, Some(up.pool_idle))
                .await;
        } else {
            upstream.shutdown().await;
        }
        Ok(())
    }

    /// Connect (fresh or pooled), write the request, read the response header. A pooled
    /// connection that turns out dead before answering is retried on another connection:
    /// the upstream never saw that request.
    async fn send(
        &self,
        peer: &HttpPeer,
        req: RequestHeader,
        body: &Bytes,
        first_byte: Duration,
        deadline: Instant,
    ) -> Result<HttpSession, Failure> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut s, reused) = self.connector.get_http_session(peer).await.map_err(|e| {
                log::warn!("upstream connect to {peer} failed: {e}");
                Failure::Gateway(connect_error(&e))
            })?;
            let left = deadline.saturating_duration_since(Instant::now());
            let res = timeout(
                first_byte.min(left),
                exchange_head(&mut s, req.clone(), body),
            )
            .await;
            match res {
                Ok(Ok(())) => return Ok(s),
                Ok(Err(e)) => {
                    if reused && attempts < 3 {
                        log::debug!("pooled upstream connection was dead ({e}); reconnecting");
                        continue;
                    }
                    log::warn!("upstream {peer} failed before responding: {e}");
                    return Err(Failure::Gateway(GatewayError::UpstreamUnavailable));
                }
                Err(_) => {
                    s.shutdown().await;
                    return Err(Failure::Gateway(GatewayError::UpstreamTimeout(
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
    async fn break_stream(
        &self,
        session: &mut Session,
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

/// Resolves when the client closes its connection (or resets its h2 stream); never
/// otherwise. Stray bytes from the client (a pipelined request) are ignored here.
async fn client_gone(session: &mut Session) {
    loop {
        match session.as_downstream_mut().read_body_or_idle(true).await {
            Err(_) => return,
            Ok(Some(_)) => continue,
            Ok(None) => std::future::pending::<()>().await,
        }
    }
}

async fn exchange_head(
    s: &mut HttpSession,
    req: RequestHeader,
    body: &Bytes,
) -> pingora::Result<()> {
    s.write_request_header(Box::new(req)).await?;
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
    Ok(())
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

pub use headers::upstream_request;
