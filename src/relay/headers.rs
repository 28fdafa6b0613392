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
use http::{HeaderName, HeaderValue};
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

/// The client's part of an HTTP/1.1 upstream request head, serialized once per request
/// (retries reuse it): its headers minus those [`upstream_request`] drops or replaces,
/// as `name: value\r\n` lines.
pub struct ClientHead {
    lines: Vec<u8>,
    has_version: bool,
}

impl ClientHead {
    /// Bytes of the serialized client headers.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Serialize the client's forwarded headers (see [`upstream_request`] for the rules).
pub fn client_head(client: &RequestHeader, up: &Upstream) -> ClientHead {
    let mut lines = Vec::with_capacity(64 * client.headers.len());
    let mut has_version = false;
    for (name, value) in client.headers.iter() {
        let n = name.as_str();
        if skip_request_header(n) || up.set_headers.iter().any(|(k, _)| k == n) {
            continue;
        }
        if n == "anthropic-version" {
            has_version = true;
        }
        push_header(&mut lines, n.as_bytes(), value.as_bytes());
    }
    ClientHead { lines, has_version }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A header value sluice may put on the wire (what `http::HeaderValue` accepts).
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// A request head that cannot be put on the wire.
#[derive(Debug)]
pub struct InvalidHead;

/// Write the whole HTTP/1.1 upstream request head into `out` — the same request
/// [`upstream_request`] builds, without building a header map — so that head and body can
/// leave in one write (Pingora's `write_request_header` flushes the head on its own).
/// `Err` when a value could not be sent (a control character in a key or the path).
#[allow(clippy::too_many_arguments)]
pub fn upstream_head_h1(
    client: &RequestHeader,
    head: &ClientHead,
    up: &Upstream,
    ep: &Endpoint,
    key: Option<&UpstreamKey>,
    request_id: &str,
    body_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), InvalidHead> {
    let pq = client
        .uri
        .path_and_query()
        .map(|p| p.as_str().as_bytes())
        .unwrap_or(b"/");
    let base = ep.base_path.as_bytes();
    if [base, pq]
        .iter()
        .any(|p| p.iter().any(|b| matches!(b, b' ' | b'\r' | b'\n' | 0)))
    {
        return Err(InvalidHead);
    }
    out.extend_from_slice(client.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(base);
    out.extend_from_slice(pq);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(&head.lines);
    let host = ep.host_header();
    let checked = |v: &[u8]| {
        if valid_value(v) {
            Ok(())
        } else {
            Err(InvalidHead)
        }
    };
    checked(host.as_bytes())?;
    push_header(out, b"host", host.as_bytes());
    if let Some(k) = key {
        let secret = k.secret.expose().as_bytes();
        checked(secret)?;
        match up.auth {
            AuthStyle::XApiKey => push_header(out, b"x-api-key", secret),
            AuthStyle::Bearer => {
                out.extend_from_slice(b"authorization: Bearer ");
                out.extend_from_slice(secret);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if !head.has_version {
        checked(up.anthropic_version.as_bytes())?;
        push_header(out, b"anthropic-version", up.anthropic_version.as_bytes());
    }
    for (k, v) in &up.set_headers {
        checked(v.as_bytes())?;
        push_header(out, k.as_bytes(), v.as_bytes());
    }
    checked(request_id.as_bytes())?;
    push_header(out, b"x-request-id", request_id.as_bytes());
    if body_len > 0
        || client.method == http::Method::POST
        || client.method == http::Method::PUT
        || client.method == http::Method::PATCH
    {
        out.extend_from_slice(b"content-length: ");
        // straight into the head: no String per request
        let _ = std::io::Write::write_fmt(out, format_args!("{body_len}\r\n"));
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Build the client's response header from the upstream's.
pub fn client_response(
    upstream: &ResponseHeader,
    ctx: &Ctx,
    upstream_ttfb: Duration,
) -> pingora::Result<ResponseHeader> {
    build_client_response(
        upstream.status.as_u16(),
        upstream.headers.len(),
        upstream
            .headers
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.clone()))),
        ctx,
        upstream_ttfb,
    )
}

/// Build the client's response header from an upstream HTTP/1.1 head parsed by sluice
/// (`h1wire`); header values share the head's buffer instead of being copied.
pub fn client_response_h1(
    upstream: &super::h1wire::Head,
    ctx: &Ctx,
    upstream_ttfb: Duration,
) -> pingora::Result<ResponseHeader> {
    let invalid = || {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "upstream header not valid for HTTP",
        )
    };
    build_client_response(
        upstream.status,
        upstream.headers.len(),
        upstream.headers.iter().map(|(n, v)| {
            let name = HeaderName::from_bytes(n).map_err(|_| invalid())?;
            let value = HeaderValue::from_maybe_shared(v.clone()).map_err(|_| invalid())?;
            Ok((name, value))
        }),
        ctx,
        upstream_ttfb,
    )
}

fn build_client_response(
    status: u16,
    count: usize,
    headers: impl Iterator<Item = pingora::Result<(HeaderName, HeaderValue)>>,
    ctx: &Ctx,
    upstream_ttfb: Duration,
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build_no_case(status, Some(count + 4))?;
    let mut has_request_id = false;
    let mut has_framing = false;
    for h in headers {
        let (name, value) = h?;
        let n = name.as_str();
        if skip_response_header(n) {
            continue;
        }
        match n {
            "request-id" => has_request_id = true,
            "content-length" | "transfer-encoding" => has_framing = true,
            _ => {}
        }
        let _ = resp.append_header(name, value);
    }
    let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
    if !has_request_id {
        let _ = resp.insert_header("request-id", ctx.request_id.as_str());
    }
    if !has_framing && !no_body_status(status) {
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
    const NAMES: [[&str; 3]; 2] = [
        [
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ],
        [
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ],
    ];
    let Some(a) = &ctx.ratelimit else { return };
    let now = std::time::SystemTime::now();
    for ([limit, remaining, reset], state) in NAMES.into_iter().zip([&a.requests, &a.tokens]) {
        let Some(st) = state else { continue };
        let at = now + Duration::from_nanos(st.reset_ns);
        let _ = resp.insert_header(HeaderName::from_static(limit), HeaderValue::from(st.limit));
        let _ = resp.insert_header(
            HeaderName::from_static(remaining),
            HeaderValue::from(st.remaining),
        );
        let _ = resp.insert_header(
            HeaderName::from_static(reset),
            crate::observe::access_log::rfc3339(at),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Secret;

    fn upstream(auth: &str, set_headers: &str) -> Arc<Upstream> {
        let cfg = crate::config::Config::from_str(
            &format!(
                "listeners: [{{addr: 127.0.0.1:1}}]\nupstreams: {{u: {{endpoints: [{{url: http://127.0.0.1:2/base}}], auth: {auth}, set_headers: {set_headers}}}}}\nroutes: [{{path: /v1/messages, upstream: u}}]\n"
            ),
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        cfg.upstreams[0].clone()
    }

    use std::sync::Arc;

    fn client(method: &str, path: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    /// (request line, sorted header lines) of a serialized head.
    fn parse(wire: &[u8]) -> (String, String, Vec<(String, String)>) {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hs);
        let n = req.parse(wire).unwrap();
        assert!(n.is_complete(), "incomplete head");
        let mut v: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        v.sort();
        (
            req.method.unwrap().to_string(),
            req.path.unwrap().to_string(),
            v,
        )
    }

    fn from_header(r: &RequestHeader) -> (String, String, Vec<(String, String)>) {
        let mut v: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8(v.as_bytes().to_vec()).unwrap(),
                )
            })
            .collect();
        v.sort();
        (
            r.method.to_string(),
            r.uri.path_and_query().unwrap().as_str().to_string(),
            v,
        )
    }

    #[test]
    fn h1_wire_head_matches_the_header_builder() {
        let cases = [
            ("x-api-key", "{}"),
            ("bearer", "{X-Claude-Timezone: Asia/Shanghai, x-extra: one}"),
        ];
        for (auth, set) in cases {
            let up = upstream(auth, set);
            let ep = &up.endpoints[0];
            let key = UpstreamKey::new("k".into(), Secret::new("sk-up-123".into()), 1);
            for (method, path, headers) in [
                (
                    "POST",
                    &b"/v1/messages?beta=true"[..],
                    vec![
                        ("x-api-key", "sk-client"),
                        ("authorization", "Bearer client"),
                        ("host", "gateway"),
                        ("content-type", "application/json"),
                        ("anthropic-beta", "a,b"),
                        ("X-Claude-Timezone", "UTC"),
                        ("accept-encoding", "gzip"),
                        ("x-dup", "1"),
                        ("x-dup", "2"),
                        ("connection", "keep-alive"),
                        ("content-length", "12"),
                        ("x-request-id", "client-id"),
                    ],
                ),
                (
                    "GET",
                    &b"/v1/models"[..],
                    vec![("anthropic-version", "2023-01-01"), ("user-agent", "t")],
                ),
            ] {
                let c = client(method, path, &headers);
                for body_len in [0usize, 12] {
                    let built =
                        upstream_request(&c, &up, ep, Some(&key), "req_1", body_len).unwrap();
                    let head = client_head(&c, &up);
                    let mut wire = Vec::new();
                    upstream_head_h1(&c, &head, &up, ep, Some(&key), "req_1", body_len, &mut wire)
                        .unwrap();
                    assert!(wire.ends_with(b"\r\n\r\n"));
                    assert!(wire.starts_with(format!("{method} /base").as_bytes()));
                    let (m, p, h) = parse(&wire);
                    let (bm, bp, bh) = from_header(&built);
                    assert_eq!((&m, &bh), (&bm, &h), "{auth} {method} {body_len}");
                    assert_eq!(p, bp);
                }
            }
        }
    }

    #[test]
    fn h1_wire_head_refuses_control_characters() {
        let up = upstream("x-api-key", "{}");
        let ep = &up.endpoints[0];
        let c = client("POST", b"/v1/messages", &[]);
        let head = client_head(&c, &up);
        let bad = UpstreamKey::new("k".into(), Secret::new("sk\r\nx: y".into()), 1);
        let mut wire = Vec::new();
        assert!(upstream_head_h1(&c, &head, &up, ep, Some(&bad), "req_1", 0, &mut wire).is_err());
    }
}
