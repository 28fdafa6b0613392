//! Gateway-made errors and their one rendering: the Anthropic error shape, so the
//! official SDKs raise their usual typed exceptions, plus an `x-sluice-reason` header
//! naming the rule.

use std::fmt::Write as _;

/// Everything the gateway itself can refuse or fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },
    #[error("missing API key: send it in the x-api-key header or as Authorization: Bearer")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    /// A JWT or a request signature was refused; the reason names why.
    #[error("authentication failed ({0})")]
    Unauthorized(&'static str),
    #[error("this key may not be used from this address")]
    IpNotAllowed,
    #[error("model `{0}` is not allowed for this key")]
    ModelNotAllowed(String),
    #[error("request body is larger than the gateway limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request contains content that is not allowed")]
    FilterBlocked,
    #[error("request body is not valid JSON: {0}")]
    InvalidBody(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("{}", .reason.message())]
    RateLimited {
        reason: crate::limit::LimitReason,
        /// Seconds, rounded up.
        retry_after: u64,
    },
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("every upstream key is resting after upstream errors; retry later")]
    NoUpstreamKey { retry_after: u64 },
    #[error("upstream timed out ({0})")]
    UpstreamTimeout(&'static str),
    #[error("upstream returned an invalid response")]
    UpstreamProtocol,
    #[error("internal gateway error")]
    Internal,
    /// An HTTP/1 request head that cannot be parsed or framed.
    #[error("{0}")]
    MalformedRequest(String),
    #[error("request head is too large")]
    HeadTooLarge,
}

impl GatewayError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            RouteNotFound { .. } => 404,
            MethodNotAllowed { .. } => 405,
            MissingKey | InvalidKey | Unauthorized(_) => 401,
            IpNotAllowed | ModelNotAllowed(_) => 403,
            BodyTooLarge { .. } => 413,
            RateLimited { .. } => 429,
            InvalidBody(_) | BodyRead(_) | FilterBlocked | MalformedRequest(_) => 400,
            HeadTooLarge => 431,
            UpstreamUnavailable | UpstreamProtocol => 502,
            NoUpstreamKey { .. } => 503,
            UpstreamTimeout(_) => 504,
            Internal => 500,
        }
    }

    /// Anthropic `error.type`.
    pub fn error_type(&self) -> &'static str {
        use GatewayError::*;
        match self {
            RouteNotFound { .. } => "not_found_error",
            MethodNotAllowed { .. }
            | InvalidBody(_)
            | BodyRead(_)
            | FilterBlocked
            | MalformedRequest(_)
            | HeadTooLarge => "invalid_request_error",
            MissingKey | InvalidKey | Unauthorized(_) => "authentication_error",
            IpNotAllowed | ModelNotAllowed(_) => "permission_error",
            BodyTooLarge { .. } => "request_too_large",
            RateLimited { .. } => "rate_limit_error",
            UpstreamUnavailable
            | UpstreamTimeout(_)
            | UpstreamProtocol
            | NoUpstreamKey { .. }
            | Internal => "api_error",
        }
    }

    /// The `x-sluice-reason` value: which rule produced this answer.
    pub fn reason(&self) -> &'static str {
        use GatewayError::*;
        match self {
            RouteNotFound { .. } => "route.not_found",
            MethodNotAllowed { .. } => "route.method_not_allowed",
            MissingKey => "auth.missing_key",
            InvalidKey => "auth.invalid_key",
            Unauthorized(reason) => reason,
            IpNotAllowed => "policy.ip",
            ModelNotAllowed(_) => "policy.model",
            BodyTooLarge { .. } => "limit.max_body",
            RateLimited { reason, .. } => reason.as_str(),
            InvalidBody(_) => "request.invalid_json",
            FilterBlocked => "filter.block",
            BodyRead(_) => "request.body_read",
            UpstreamUnavailable => "upstream.unavailable",
            NoUpstreamKey { .. } => "upstream.no_key",
            UpstreamTimeout(_) => "upstream.timeout",
            UpstreamProtocol => "upstream.protocol",
            Internal => "internal",
            MalformedRequest(_) => "request.malformed",
            HeadTooLarge => "request.head_too_large",
        }
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> String {
        error_json(self.error_type(), &self.to_string(), request_id)
    }
}

/// `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
pub fn error_json(error_type: &str, message: &str, request_id: &str) -> String {
    let mut s = String::with_capacity(96 + message.len());
    s.push_str(r#"{"type":"error","error":{"type":"#);
    push_json_str(&mut s, error_type);
    s.push_str(r#","message":"#);
    push_json_str(&mut s, message);
    s.push_str(r#"},"request_id":"#);
    push_json_str(&mut s, request_id);
    s.push('}');
    s
}

/// The SSE event sent when a stream breaks after it started.
pub fn stream_error_event(error_type: &str, message: &str) -> String {
    let mut s = String::from("event: error\ndata: ");
    s.push_str(r#"{"type":"error","error":{"type":"#);
    push_json_str(&mut s, error_type);
    s.push_str(r#","message":"#);
    push_json_str(&mut s, message);
    s.push_str("}}\n\n");
    s
}

/// Append `v` as a JSON string literal.
pub fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_anthropic() {
        let e = GatewayError::InvalidKey;
        let v: serde_json::Value = serde_json::from_str(&e.body("req_1")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "invalid API key");
        assert_eq!(v["request_id"], "req_1");
        assert_eq!(e.status(), 401);
        assert_eq!(e.reason(), "auth.invalid_key");
    }

    #[test]
    fn escaping() {
        let e = GatewayError::RouteNotFound {
            method: "GET".into(),
            path: "/\"quoted\"\n\u{1}".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&e.body("r")).unwrap();
        assert_eq!(v["error"]["message"], "no route for GET /\"quoted\"\n\u{1}");
    }

    #[test]
    fn stream_event_is_valid() {
        let ev = stream_error_event("api_error", "upstream stream interrupted");
        assert!(ev.starts_with("event: error\ndata: {"));
        assert!(ev.ends_with("}\n\n"));
        let data = ev.trim_end().strip_prefix("event: error\ndata: ").unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
    }

    #[test]
    fn every_status_has_matching_type() {
        use GatewayError::*;
        let all = [
            RouteNotFound {
                method: "G".into(),
                path: "/".into(),
            },
            MethodNotAllowed {
                method: "G".into(),
                path: "/".into(),
                allow: "POST".into(),
            },
            MissingKey,
            InvalidKey,
            Unauthorized("auth.jwt.expired"),
            IpNotAllowed,
            ModelNotAllowed("m".into()),
            BodyTooLarge { limit: 1 },
            RateLimited {
                reason: crate::limit::LimitReason::Requests,
                retry_after: 1,
            },
            InvalidBody("x".into()),
            FilterBlocked,
            BodyRead("x".into()),
            UpstreamUnavailable,
            UpstreamTimeout("first byte"),
            UpstreamProtocol,
            NoUpstreamKey { retry_after: 1 },
            Internal,
        ];
        for e in all {
            let ok = matches!(
                (e.status(), e.error_type()),
                (400 | 405, "invalid_request_error")
                    | (401, "authentication_error")
                    | (403, "permission_error")
                    | (404, "not_found_error")
                    | (413, "request_too_large")
                    | (429, "rate_limit_error")
                    | (500 | 502 | 503 | 504, "api_error")
            );
            assert!(ok, "{e:?}");
        }
    }
}
