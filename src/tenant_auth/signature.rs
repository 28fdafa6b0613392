//! HMAC-signed requests.
//!
//! A client holding a tenant's signing secret adds
//!
//! ```text
//! x-sluice-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, string-to-sign)>
//! string-to-sign = t + "\n" + METHOD + "\n" + path + "\n" + hex(SHA-256(body))
//! ```
//!
//! `path` is the request target exactly as sent (path and query, e.g.
//! `/v1/messages?beta=true`), `METHOD` as sent (`POST`), the body hash covers the exact
//! bytes sent (empty body: the hash of nothing). Hex is lower case when signing; either
//! case is accepted. Parts are comma separated, may carry spaces around them, and
//! unknown parts (`v2=…`) are ignored so the scheme can grow.
//!
//! The gateway accepts the request when `|now − t| ≤ window` (default 300 s) and the
//! MAC matches (compared in constant time); the timestamp is checked first, so a stale
//! request costs no body hashing. [`verify`] returns a replay key; remember it until
//! `t + window` ([`NonceMemory`] in-process, or Redis `SET key 1 NX EX window`) and a
//! second request with the same signature is refused as a replay.
//!
//! Python (works with the `anthropic` SDK through an `httpx` event hook):
//!
//! ```python
//! import hashlib, hmac, time
//! import anthropic, httpx
//!
//! def sluice_signature(secret: bytes, method: str, path: str, body: bytes) -> str:
//!     t = str(int(time.time()))
//!     msg = "\n".join([t, method, path, hashlib.sha256(body).hexdigest()]).encode()
//!     return f"t={t},v1={hmac.new(secret, msg, hashlib.sha256).hexdigest()}"
//!
//! def sign(request: httpx.Request) -> None:
//!     request.headers["x-sluice-signature"] = sluice_signature(
//!         SECRET, request.method, request.url.raw_path.decode(), request.read())
//!
//! client = anthropic.Anthropic(base_url="http://gateway:8080", api_key="sk-sluice-…",
//!                              http_client=httpx.Client(event_hooks={"request": [sign]}))
//! ```
//!
//! Node (with the `@anthropic-ai/sdk` `fetch` option; the SDK sends JSON string bodies):
//!
//! ```js
//! const crypto = require("node:crypto");
//!
//! function sluiceSignature(secret, method, path, body) {
//!   const t = Math.floor(Date.now() / 1000);
//!   const bodyHash = crypto.createHash("sha256").update(body ?? "").digest("hex");
//!   const mac = crypto.createHmac("sha256", secret)
//!     .update(`${t}\n${method}\n${path}\n${bodyHash}`).digest("hex");
//!   return `t=${t},v1=${mac}`;
//! }
//!
//! const client = new Anthropic({
//!   baseURL: "http://gateway:8080", apiKey: "sk-sluice-…",
//!   fetch: (url, init = {}) => {
//!     const u = new URL(url);
//!     const headers = new Headers(init.headers);
//!     headers.set("x-sluice-signature",
//!       sluiceSignature(SECRET, init.method ?? "GET", u.pathname + u.search, init.body));
//!     return fetch(url, { ...init, headers });
//!   },
//! });
//! ```

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The request header.
pub const HEADER: &str = "x-sluice-signature";
/// Default freshness window (seconds).
pub const DEFAULT_WINDOW_SECS: u64 = 300;
/// Longest header value accepted.
pub const MAX_HEADER_LEN: usize = 1024;

/// Why a signed request was refused. Every variant is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFailure {
    /// No (or an empty) `x-sluice-signature` header.
    Missing,
    /// Not `t=<digits>,v1=<64 hex>` (or too long, not UTF-8, `t`/`v1` repeated).
    Malformed,
    /// `|now − t| > window`.
    Stale,
    /// The MAC does not match this request.
    Mismatch,
    /// The same signature was seen before within the window.
    Replay,
}

impl SigFailure {
    /// The `x-sluice-reason` value.
    pub fn reason(&self) -> &'static str {
        match self {
            SigFailure::Missing => "auth.signature.missing",
            SigFailure::Malformed => "auth.signature.malformed",
            SigFailure::Stale => "auth.signature.stale",
            SigFailure::Mismatch => "auth.signature.mismatch",
            SigFailure::Replay => "auth.signature.replay",
        }
    }
}

impl fmt::Display for SigFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SigFailure {}

/// `t + "\n" + method + "\n" + path + "\n" + hex(sha256(body))`.
pub fn string_to_sign(t: u64, method: &str, path: &str, body: &[u8]) -> String {
    format!(
        "{t}\n{method}\n{path}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

fn mac(secret: &[u8], t: u64, method: &str, path: &str, body: &[u8]) -> Option<[u8; 32]> {
    // HMAC takes keys of any length; the error case cannot happen.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    m.update(string_to_sign(t, method, path, body).as_bytes());
    Some(m.finalize().into_bytes().into())
}

/// The header value for a request (for clients, tests and docs).
pub fn sign(secret: &[u8], t: u64, method: &str, path: &str, body: &[u8]) -> String {
    let v1 = mac(secret, t, method, path, body)
        .map(hex::encode)
        .unwrap_or_default();
    format!("t={t},v1={v1}")
}

struct Parsed {
    t: u64,
    v1: [u8; 32],
}

fn parse(header: &[u8]) -> Result<Parsed, SigFailure> {
    if header.len() > MAX_HEADER_LEN {
        return Err(SigFailure::Malformed);
    }
    let s = std::str::from_utf8(header).map_err(|_| SigFailure::Malformed)?;
    let (mut t, mut v1) = (None, None);
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or(SigFailure::Malformed)?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "t" => {
                if t.is_some()
                    || v.is_empty()
                    || v.len() > 20
                    || !v.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(SigFailure::Malformed);
                }
                t = Some(v.parse::<u64>().map_err(|_| SigFailure::Malformed)?);
            }
            "v1" => {
                let mut mac = [0u8; 32];
                if v1.is_some() || v.len() != 64 || hex::decode_to_slice(v, &mut mac).is_err() {
                    return Err(SigFailure::Malformed);
                }
                v1 = Some(mac);
            }
            _ => {}
        }
    }
    match (t, v1) {
        (Some(t), Some(v1)) => Ok(Parsed { t, v1 }),
        _ => Err(SigFailure::Malformed),
    }
}

/// Check a request's signature: header shape, timestamp within `window_secs` of
/// `now_unix` (inclusive), then the MAC (constant-time). On success returns the replay
/// key (lower-case hex of the MAC), to be remembered until `t + window_secs`; use
/// [`timestamp`] to get `t`. An empty `secret` never verifies.
pub fn verify(
    header: Option<&[u8]>,
    secret: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
    now_unix: u64,
    window_secs: u64,
) -> Result<String, SigFailure> {
    let header = match header {
        Some(h) if !h.trim_ascii().is_empty() => h,
        _ => return Err(SigFailure::Missing),
    };
    let p = parse(header)?;
    if now_unix.abs_diff(p.t) > window_secs {
        return Err(SigFailure::Stale);
    }
    if secret.is_empty() {
        return Err(SigFailure::Mismatch);
    }
    let expected = mac(secret, p.t, method, path, body).ok_or(SigFailure::Mismatch)?;
    if bool::from(expected.ct_eq(&p.v1)) {
        Ok(hex::encode(p.v1))
    } else {
        Err(SigFailure::Mismatch)
    }
}

/// Like [`verify`] for a tenant with several secrets (rotation): the first secret that
/// matches wins; the failure otherwise is that of the last secret tried.
pub fn verify_any(
    header: Option<&[u8]>,
    secrets: &[&[u8]],
    method: &str,
    path: &str,
    body: &[u8],
    now_unix: u64,
    window_secs: u64,
) -> Result<String, SigFailure> {
    let mut last = Err(SigFailure::Mismatch);
    for s in secrets {
        last = verify(header, s, method, path, body, now_unix, window_secs);
        match last {
            Ok(_) | Err(SigFailure::Missing | SigFailure::Malformed | SigFailure::Stale) => {
                return last
            }
            Err(_) => {}
        }
    }
    if secrets.is_empty() {
        // Still report a missing/malformed/stale header as such.
        verify(header, b"", method, path, body, now_unix, window_secs)
    } else {
        last
    }
}

/// The `t` of a well-formed header (to compute `t + window` for the replay memory).
pub fn timestamp(header: &[u8]) -> Option<u64> {
    parse(header).ok().map(|p| p.t)
}

const SHARDS: usize = 16;

/// In-process replay memory: remembers replay keys until their expiry (`t + window`),
/// evicting expired keys as it goes. Bounded: when a shard is full, its
/// soonest-expiring key is forgotten early (replay protection degrades for that one
/// key rather than refusing fresh requests). Keys are kept as 128-bit digests; about
/// 70 bytes per remembered key.
pub struct NonceMemory {
    shards: Vec<Mutex<Shard>>,
    cap_per_shard: usize,
}

#[derive(Default)]
struct Shard {
    expiry: HashMap<[u8; 16], u64>,
    queue: BinaryHeap<Reverse<(u64, [u8; 16])>>,
}

impl Shard {
    fn evict_expired(&mut self, now: u64) {
        while let Some(Reverse((exp, _))) = self.queue.peek() {
            if *exp >= now {
                break;
            }
            self.pop_one();
        }
    }

    fn pop_one(&mut self) {
        if let Some(Reverse((exp, id))) = self.queue.pop() {
            if self.expiry.get(&id) == Some(&exp) {
                self.expiry.remove(&id);
            }
        }
    }
}

impl Default for NonceMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NonceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceMemory")
            .field("len", &self.len())
            .field("capacity", &(self.cap_per_shard * self.shards.len()))
            .finish()
    }
}

impl NonceMemory {
    /// Default bound on remembered keys.
    pub const DEFAULT_CAPACITY: usize = 1 << 20;

    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// At most about `capacity` keys (rounded up to a multiple of the shard count).
    pub fn with_capacity(capacity: usize) -> Self {
        let shards = if capacity < SHARDS { 1 } else { SHARDS };
        NonceMemory {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            cap_per_shard: capacity.div_ceil(shards).max(1),
        }
    }

    /// Record `key` until `expires_unix` (inclusive). Returns `false` when the key is
    /// already remembered and not yet expired: a replay.
    pub fn check_and_insert(&self, key: &str, expires_unix: u64, now_unix: u64) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let shard = &self.shards[usize::from(id[0]) % self.shards.len()];
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        s.evict_expired(now_unix);
        if expires_unix < now_unix {
            // Already outside its window: nothing to remember.
            return !s.expiry.contains_key(&id);
        }
        if s.expiry.contains_key(&id) {
            return false;
        }
        while s.expiry.len() >= self.cap_per_shard {
            s.pop_one();
        }
        if let Entry::Vacant(v) = s.expiry.entry(id) {
            v.insert(expires_unix);
            s.queue.push(Reverse((expires_unix, id)));
        }
        true
    }

    /// Forget every key that expired before `now_unix` (inserts already do this for
    /// their own shard; call this from a periodic task to return memory when idle).
    pub fn purge(&self, now_unix: u64) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .evict_expired(now_unix);
        }
    }

    /// Keys currently remembered (expired ones linger until an insert in their shard or
    /// [`NonceMemory::purge`]).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).expiry.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const T: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"model":"claude-sonnet-4-5","max_tokens":16}"#;
    const PATH: &str = "/v1/messages?beta=true";

    fn v(
        header: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, SigFailure> {
        verify(
            Some(header.as_bytes()),
            SECRET,
            method,
            path,
            body,
            now,
            300,
        )
    }

    #[test]
    fn known_vector_matches_python_and_node() {
        // Computed by the Python and Node snippets in the module docs.
        assert_eq!(
            sign(SECRET, T, "POST", PATH, BODY),
            "t=1700000000,v1=76ee1b7b704f91045c0dc907392a8aa45291bab415d593d0c8bb8a1d0763f259"
        );
    }

    #[test]
    fn valid() {
        let h = sign(SECRET, T, "POST", PATH, BODY);
        let key = v(&h, "POST", PATH, BODY, T + 5).expect("valid");
        assert_eq!(
            key,
            "76ee1b7b704f91045c0dc907392a8aa45291bab415d593d0c8bb8a1d0763f259"
        );
        // Spaces, upper-case hex, reordered parts and unknown parts are fine.
        let upper = format!(" v2=abc , v1={} , t={T} ", key.to_uppercase());
        assert_eq!(v(&upper, "POST", PATH, BODY, T), Ok(key.clone()));
        assert_eq!(timestamp(h.as_bytes()), Some(T));
        // Empty body.
        let h = sign(SECRET, T, "GET", "/v1/models", b"");
        assert!(v(&h, "GET", "/v1/models", b"", T).is_ok());
    }

    #[test]
    fn tampering() {
        let h = sign(SECRET, T, "POST", PATH, BODY);
        let mut body = BODY.to_vec();
        body[5] ^= 1;
        assert_eq!(v(&h, "POST", PATH, &body, T), Err(SigFailure::Mismatch));
        assert_eq!(v(&h, "POST", PATH, b"", T), Err(SigFailure::Mismatch));
        assert_eq!(
            v(&h, "POST", "/v1/messages", BODY, T),
            Err(SigFailure::Mismatch)
        );
        assert_eq!(
            v(&h, "POST", "/v1/messages/count_tokens?beta=true", BODY, T),
            Err(SigFailure::Mismatch)
        );
        assert_eq!(v(&h, "PUT", PATH, BODY, T), Err(SigFailure::Mismatch));
        assert_eq!(v(&h, "post", PATH, BODY, T), Err(SigFailure::Mismatch));
        // Another secret.
        assert_eq!(
            verify(Some(h.as_bytes()), b"other", "POST", PATH, BODY, T, 300),
            Err(SigFailure::Mismatch)
        );
        // Empty secret never verifies, even a signature made with it.
        let h0 = sign(b"", T, "POST", PATH, BODY);
        assert_eq!(
            verify(Some(h0.as_bytes()), b"", "POST", PATH, BODY, T, 300),
            Err(SigFailure::Mismatch)
        );
        // Timestamp changed under the same MAC.
        let moved = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(v(&moved, "POST", PATH, BODY, T), Err(SigFailure::Mismatch));
    }

    #[test]
    fn window_edges() {
        let h = sign(SECRET, T, "POST", PATH, BODY);
        assert!(v(&h, "POST", PATH, BODY, T + 300).is_ok());
        assert!(v(&h, "POST", PATH, BODY, T - 300).is_ok());
        assert_eq!(v(&h, "POST", PATH, BODY, T + 301), Err(SigFailure::Stale));
        assert_eq!(v(&h, "POST", PATH, BODY, T - 301), Err(SigFailure::Stale));
        // Stale wins over a wrong MAC (checked first, before hashing the body).
        assert_eq!(v(&h, "PUT", PATH, BODY, T + 301), Err(SigFailure::Stale));
        // Extreme timestamps do not overflow.
        let h = sign(SECRET, u64::MAX, "POST", PATH, BODY);
        assert_eq!(v(&h, "POST", PATH, BODY, 0), Err(SigFailure::Stale));
        assert!(v(&h, "POST", PATH, BODY, u64::MAX).is_ok());
    }

    #[test]
    fn missing_and_malformed() {
        let none = verify(None, SECRET, "POST", PATH, BODY, T, 300);
        assert_eq!(none, Err(SigFailure::Missing));
        assert_eq!(v("", "POST", PATH, BODY, T), Err(SigFailure::Missing));
        assert_eq!(v("  ", "POST", PATH, BODY, T), Err(SigFailure::Missing));
        let mac = "76ee1b7b704f91045c0dc907392a8aa45291bab415d593d0c8bb8a1d0763f259";
        let bad = [
            format!("v1={mac}"),
            format!("t={T}"),
            format!("t={T},v1={}", &mac[..63]),
            format!("t={T},v1={mac}0"),
            format!("t={T},v1={}zz", &mac[..62]),
            format!("t=-5,v1={mac}"),
            format!("t=+5,v1={mac}"),
            format!("t=1.5,v1={mac}"),
            format!("t=,v1={mac}"),
            format!("t=99999999999999999999999,v1={mac}"),
            format!("t={T},t={T},v1={mac}"),
            format!("t={T},v1={mac},v1={mac}"),
            format!("t={T};v1={mac}"),
            format!("t={T},v1={mac},"),
            format!("t={T} v1={mac}"),
            "garbage".into(),
            format!("t={T},v1={mac},x={}", "a".repeat(MAX_HEADER_LEN)),
        ];
        for h in &bad {
            assert_eq!(
                v(h, "POST", PATH, BODY, T),
                Err(SigFailure::Malformed),
                "{h}"
            );
        }
        assert_eq!(
            verify(Some(b"t=1,v1=\xff"), SECRET, "POST", PATH, BODY, T, 300),
            Err(SigFailure::Malformed)
        );
    }

    #[test]
    fn rotation() {
        let h = sign(b"new", T, "POST", PATH, BODY);
        let secrets: [&[u8]; 2] = [b"old", b"new"];
        assert!(verify_any(Some(h.as_bytes()), &secrets, "POST", PATH, BODY, T, 300).is_ok());
        assert_eq!(
            verify_any(
                Some(h.as_bytes()),
                &secrets[..1],
                "POST",
                PATH,
                BODY,
                T,
                300
            ),
            Err(SigFailure::Mismatch)
        );
        assert_eq!(
            verify_any(None, &secrets, "POST", PATH, BODY, T, 300),
            Err(SigFailure::Missing)
        );
        assert_eq!(
            verify_any(Some(h.as_bytes()), &[], "POST", PATH, BODY, T + 999, 300),
            Err(SigFailure::Stale)
        );
        assert_eq!(
            verify_any(Some(h.as_bytes()), &[], "POST", PATH, BODY, T, 300),
            Err(SigFailure::Mismatch)
        );
    }

    #[test]
    fn replay_memory() {
        let mem = NonceMemory::new();
        let h = sign(SECRET, T, "POST", PATH, BODY);
        let key = v(&h, "POST", PATH, BODY, T).expect("valid");
        let expires = T + 300;
        assert!(mem.check_and_insert(&key, expires, T));
        assert!(!mem.check_and_insert(&key, expires, T + 1), "replay");
        // Still remembered at the last second of the window...
        assert!(!mem.check_and_insert(&key, expires, T + 300));
        // ...where the signature itself is still fresh; one second later it is stale,
        // and the memory has let the key go.
        assert_eq!(v(&h, "POST", PATH, BODY, T + 301), Err(SigFailure::Stale));
        assert_eq!(mem.len(), 1);
        assert!(mem.check_and_insert(&key, expires, T + 301));
        assert!(mem.is_empty(), "expired key evicted, not re-remembered");
        // `purge` evicts across shards without an insert.
        assert!(mem.check_and_insert("other", T + 900, T + 301));
        mem.purge(T + 900);
        assert_eq!(mem.len(), 1);
        mem.purge(T + 901);
        assert!(mem.is_empty());
    }

    #[test]
    fn replay_memory_is_bounded() {
        let mem = NonceMemory::with_capacity(64);
        for i in 0..10_000u64 {
            assert!(mem.check_and_insert(&format!("k{i}"), T + 300 + i, T));
        }
        assert!(mem.len() <= 64, "{}", mem.len());
        // The most recent keys (latest expiry) are still remembered.
        assert!(!mem.check_and_insert("k9999", T + 300 + 9999, T));
        // Tiny capacities work too.
        let one = NonceMemory::with_capacity(1);
        assert!(one.check_and_insert("a", T + 10, T));
        assert!(!one.check_and_insert("a", T + 10, T));
        assert!(one.check_and_insert("b", T + 10, T));
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn reasons() {
        assert_eq!(SigFailure::Missing.reason(), "auth.signature.missing");
        assert_eq!(SigFailure::Malformed.reason(), "auth.signature.malformed");
        assert_eq!(SigFailure::Stale.reason(), "auth.signature.stale");
        assert_eq!(SigFailure::Mismatch.reason(), "auth.signature.mismatch");
        assert_eq!(SigFailure::Replay.reason(), "auth.signature.replay");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_headers_never_panic(
                h in proptest::collection::vec(any::<u8>(), 0..200),
                s in ".{0,120}",
                now in any::<u64>(),
                window in any::<u64>(),
            ) {
                let _ = verify(Some(&h), SECRET, "POST", PATH, BODY, now, window);
                let _ = verify(Some(s.as_bytes()), SECRET, "POST", PATH, BODY, now, window);
                let _ = timestamp(&h);
            }

            #[test]
            fn shaped_headers_never_panic(
                t in ".{0,24}",
                mac in "[0-9a-fA-Fg]{0,70}",
                extra in "[ ,=a-z0-9]{0,20}",
                now in any::<u64>(),
            ) {
                let h = format!("t={t},v1={mac}{extra}");
                let _ = verify(Some(h.as_bytes()), SECRET, "POST", PATH, BODY, now, 300);
            }

            #[test]
            fn sign_then_verify(
                t in any::<u64>(),
                method in "[A-Z]{1,7}",
                path in "/[ -~]{0,60}",
                body in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let h = sign(SECRET, t, &method, &path, &body);
                prop_assert!(verify(Some(h.as_bytes()), SECRET, &method, &path, &body, t, 0).is_ok());
            }
        }
    }
}
