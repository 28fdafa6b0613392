//! Header rewriting between client and upstream (SPEC §4 "Passing through").
//!
//! Upstream request: the client's headers minus its credential, hop-by-hop headers and
//! `accept-encoding` (sluice reads usage from responses, so it asks for identity
//! encoding), plus the pooled key, `anthropic-version` when missing, `set_headers`,
//! `Host` and `x-request-id`.
//!
//! Client response: the upstream's headers minus those that leak the pooled account
//! (`anthropic-organization-id`, the upstream's `anthropic-ratelimit-*`) and hop-by-hop
//! headers, plus `x-request-id`, `request-id` (the upstream's, else ours) and
//! `Server-Timing`.

use crate::config::schema::AuthStyle;
use crate::observe::server_timing;
use crate::proxy::Ctx;
use crate::upstream::{Endpoint, Upstream, UpstreamKey};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

/// Headers never copied from the client to the upstream.
fn skip_request_header(name: &str) -> bool {
    matches!(
        name,
        "x-api-key"
            | "authorization"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "accept-encoding"
            | "x-request-id"
            | "expect"
    )
}

/// Headers never copied from the upstream to the client.
fn skip_response_header(name: &str) -> bool {
    name.starts_with("anthropic-ratelimit-")
        || matches!(
            name,
            "anthropic-organization-id"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "x-request-id"
        )
}

/// Build the upstream request from the client's.
pub fn upstream_request(
    client: &RequestHeader,
    up: &Upstream,
    ep: &Endpoint,
    key: Option<&UpstreamKey>,
    request_id: &str,
    body_len: usize,
) -> pingora::Result<RequestHeader> {
    let pq = client
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = if ep.base_path.is_empty() {
        pq.to_string()
    } else {
        format!("{}{}", ep.base_path, pq)
    };
    let mut req = RequestHeader::build(
        client.method.clone(),
        path.as_bytes(),
        Some(client.headers.len() + 6),
    )?;
    let mut has_version = false;
    for (name, value) in client.headers.iter() {
        let n = name.as_str();
        if skip_request_header(n) {
            continue;
        }
        if n == "anthropic-version" {
            has_version = true;
        }
        req.append_header(name.clone(), value.clone())?;
    }
    req.insert_header("host", ep.host_header())?;
    if let Some(k) = key {
        match up.auth {
            AuthStyle::XApiKey => req.insert_header("x-api-key", k.secret.expose())?,
            AuthStyle::Bearer => {
                req.insert_header("authorization", format!("Bearer {}", k.secret.expose()))?
            }
        }
    }
    if !has_version {
        req.insert_header("anthropic-version", up.anthropic_version.as_str())?;
    }
    for (k, v) in &up.set_headers {
        req.insert_header(k.clone(), v.as_str())?;
    }
    req.insert_header("x-request-id", request_id)?;
    if body_len > 0
        || client.method == http::Method::POST
        || client.method == http::Method::PUT
        || client.method == http::Method::PATCH
    {
        req.insert_header("content-length", body_len.to_string())?;
    }
    Ok(req)
}

/// Is this an SSE response?
pub fn is_event_stream(h: &ResponseHeader) -> bool {
    h.headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// Is this a JSON response?
pub fn is_json(h: Option<&ResponseHeader>) -> bool {
    h.and_then(|h| h.headers.get("content-type"))
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Build the client's response header from the upstream's.
pub fn client_response(
    upstream: &ResponseHeader,
    ctx: &Ctx,
    upstream_ttfb: Duration,
) -> pingora::Result<ResponseHeader> {
    let mut resp =
        ResponseHeader::build_no_case(upstream.status, Some(upstream.headers.len() + 4))?;
    let mut has_request_id = false;
    let mut has_framing = false;
    for (name, value) in upstream.headers.iter() {
        let n = name.as_str();
        if skip_response_header(n) {
            continue;
        }
        match n {
            "request-id" => has_request_id = true,
            "content-length" | "transfer-encoding" => has_framing = true,
            _ => {}
        }
        let _ = resp.append_header(name.clone(), value.clone());
    }
    let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
    if !has_request_id {
        let _ = resp.insert_header("request-id", ctx.request_id.as_str());
    }
    if !has_framing && !no_body_status(upstream.status.as_u16()) {
        // An upstream that delimits its body by closing the connection: re-frame it as
        // chunked so the client connection can be kept.
        let _ = resp.insert_header("transfer-encoding", "chunked");
    }
    add_ratelimit_headers(&mut resp, ctx);
    if let Some(c) = ctx.cache_status {
        let _ = resp.insert_header("x-sluice-cache", c);
    }
    let sluice = ctx.start.elapsed().saturating_sub(upstream_ttfb);
    let _ = resp.insert_header("server-timing", server_timing(sluice, upstream_ttfb));
    Ok(resp)
}

fn no_body_status(s: u16) -> bool {
    s == 204 || s == 304 || (100..200).contains(&s)
}

/// The tenant's own budget in Anthropic's header names: `-limit` is the bucket's size,
/// `-remaining` what could be sent right now, `-reset` when the bucket is full again.
pub fn add_ratelimit_headers(resp: &mut ResponseHeader, ctx: &Ctx) {
    let Some(a) = &ctx.ratelimit else { return };
    let now = std::time::SystemTime::now();
    for (kind, state) in [("requests", &a.requests), ("tokens", &a.tokens)] {
        let Some(st) = state else { continue };
        let reset = now + Duration::from_nanos(st.reset_ns);
        let _ = resp.insert_header(
            format!("anthropic-ratelimit-{kind}-limit"),
            st.limit.to_string(),
        );
        let _ = resp.insert_header(
            format!("anthropic-ratelimit-{kind}-remaining"),
            st.remaining.to_string(),
        );
        let _ = resp.insert_header(
            format!("anthropic-ratelimit-{kind}-reset"),
            crate::observe::access_log::rfc3339(reset),
        );
    }
}
