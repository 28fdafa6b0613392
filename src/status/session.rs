//! Admin sessions for the status page: signing in with the admin token gives a random
//! session id in an `HttpOnly; SameSite=Strict` cookie; the server maps it to an expiry.
//! The token itself is never stored in the cookie or in memory beyond a SHA-256 used to
//! notice a changed token (a reload that changes `admin.token` ends every session).
//!
//! Bounded: at most [`MAX_SESSIONS`] (the oldest is evicted), expired ones are purged on
//! every sign-in. Ids are 256 random bits; only their SHA-256 is kept, so a lookup
//! leaks nothing about stored ids through timing.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "sluice_admin";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 100;

#[derive(Debug, Clone, Copy)]
struct Session {
    created: Instant,
    expires: Instant,
    token_digest: [u8; 32],
}

/// The session store.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl Sessions {
    /// A new session for someone who presented `token` (already checked); returns the id
    /// to put in the cookie.
    pub fn create(&self, token: &str) -> String {
        self.create_at(token, Instant::now())
    }

    pub fn create_at(&self, token: &str, now: Instant) -> String {
        let id: [u8; 32] = rand::random();
        let id = hex::encode(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            digest(id.as_bytes()),
            Session {
                created: now,
                expires: now + SESSION_TTL,
                token_digest: digest(token.as_bytes()),
            },
        );
        id
    }

    /// Is `id` a live session opened with the current `token`?
    pub fn check(&self, id: &str, token: &str) -> bool {
        self.check_at(id, token, Instant::now())
    }

    pub fn check_at(&self, id: &str, token: &str, now: Instant) -> bool {
        let key = digest(id.as_bytes());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = map.get(&key).copied() else {
            return false;
        };
        if s.expires <= now {
            map.remove(&key);
            return false;
        }
        bool::from(s.token_digest.ct_eq(&digest(token.as_bytes())))
    }

    /// End a session (sign out). `true` if it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id.as_bytes()))
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in `Cookie` header values, if any (the first well-formed one).
pub fn session_id<'a, I>(cookie_headers: I) -> Option<String>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    for h in cookie_headers {
        let Ok(s) = std::str::from_utf8(h) else {
            continue;
        };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                let v = v.trim().trim_matches('"');
                if k.trim() == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// `Set-Cookie` value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_are_bounded_and_follow_the_token() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.create_at("tok", t0);
        assert_eq!(id.len(), 64);
        assert!(s.check_at(&id, "tok", t0));
        assert!(!s.check_at(&id, "other-token", t0), "token changed");
        assert!(!s.check_at("nope", "tok", t0));
        assert!(!s.check_at(&id, "tok", t0 + SESSION_TTL), "expired");
        assert!(s.is_empty(), "expired session purged");

        let first = s.create_at("tok", t0);
        for i in 1..(MAX_SESSIONS + 5) {
            s.create_at("tok", t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.check_at(&first, "tok", t0), "oldest evicted");

        let id = s.create_at("tok", t0);
        assert!(s.remove(&id));
        assert!(!s.check_at(&id, "tok", t0));
    }

    #[test]
    fn cookie_parsing() {
        let id = "ab".repeat(32);
        let h = format!("theme=dark; {COOKIE}={id}; x=y");
        assert_eq!(session_id([h.as_bytes()]), Some(id.clone()));
        assert_eq!(session_id([b"sluice_admin=short".as_slice()]), None);
        assert_eq!(
            session_id([b"a=b".as_slice(), h.as_bytes()]),
            Some(id.clone())
        );
        let c = set_cookie(&id);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
