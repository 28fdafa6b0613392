//! A cheap look at a request body: the `model` and `stream` fields, for policy and logs.
//! The body itself is forwarded untouched.

use serde::Deserialize;
use std::borrow::Cow;

/// What sluice needs to know about a request body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestPeek {
    pub model: Option<String>,
    pub stream: bool,
    /// `metadata.user_id` (key affinity for prompt caching).
    pub user_id: Option<String>,
    /// `max_tokens`, present on Messages requests (not on count_tokens).
    pub max_tokens: Option<u64>,
    /// The body parsed as a JSON object.
    pub valid_json: bool,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

/// Read `model` and `stream` from a JSON body; anything unparsable yields defaults.
pub fn peek_request(body: &[u8]) -> RequestPeek {
    match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(f) => RequestPeek {
            model: f.model.map(Cow::into_owned),
            stream: f.stream.unwrap_or(false),
            max_tokens: f.max_tokens,
            user_id: f.metadata.and_then(|m| m.user_id).map(Cow::into_owned),
            valid_json: true,
        },
        Err(_) => RequestPeek::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks() {
        let p = peek_request(br#"{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi \"x\""}]}"#);
        assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(p.stream);
        assert!(p.valid_json);
        assert_eq!(p.max_tokens, Some(10));
        let p = peek_request(br#"{"model":"m","metadata":{"user_id":"u-1"},"messages":[]}"#);
        assert_eq!(p.user_id.as_deref(), Some("u-1"));
        let p = peek_request(br#"{"messages":[],"model":"m\u00e9"}"#);
        assert_eq!(p.model.as_deref(), Some("mé"));
        assert!(!p.stream);
        assert_eq!(peek_request(b"not json"), RequestPeek::default());
        assert_eq!(peek_request(br#"{"model": 5}"#), RequestPeek::default());
    }
}
