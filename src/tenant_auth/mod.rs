//! Tenant credentials beyond static gateway keys. `jwt` and `signature` are pure (no
//! Pingora types, no I/O); [`Nonces`] adds the optional Redis replay memory.
//!
//! * [`jwt`]: JWT bearer tokens from configured issuers (HS256 / RS256 / ES256, PEM or
//!   JWKS keys); the token's tenant claim names the tenant.
//! * [`signature`]: HMAC-SHA256 signed requests (`x-sluice-signature`) with a freshness
//!   window and replay memory.
//!
//! A presented bearer credential is a JWT when [`jwt::looks_like_jwt`] says so (gateway
//! keys `sk-sluice-…` never contain a dot); everything else goes to the static key table
//! ([`crate::auth::TenantTable`]).

pub mod jwt;
pub mod signature;

/// Is this presented credential (from [`crate::auth::presented_key`]) a JWT?
pub fn is_jwt(credential: &[u8]) -> bool {
    std::str::from_utf8(credential).is_ok_and(jwt::looks_like_jwt)
}

/// Replay memory for signed requests: in process, and in Redis (`SET key 1 NX EX window`)
/// when state is shared, so a signature replayed to another instance is caught too.
pub struct Nonces {
    pub memory: signature::NonceMemory,
    redis_url: Option<String>,
    redis: tokio::sync::OnceCell<Option<redis::aio::ConnectionManager>>,
}

impl Nonces {
    pub fn new(redis_url: Option<String>) -> Self {
        Nonces {
            memory: signature::NonceMemory::new(),
            redis_url,
            redis: tokio::sync::OnceCell::new(),
        }
    }

    /// `Some(true)` = first time seen, `Some(false)` = replay, `None` = Redis unavailable
    /// (the caller falls back to the in-process memory).
    pub async fn redis_check(&self, key: &str, window_secs: u64) -> Option<bool> {
        let url = self.redis_url.as_deref()?;
        let conn = self
            .redis
            .get_or_init(|| async {
                let client = redis::Client::open(url).ok()?;
                tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    redis::aio::ConnectionManager::new(client),
                )
                .await
                .ok()?
                .ok()
            })
            .await
            .clone();
        let mut conn = conn?;
        let set: Option<String> = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            redis::cmd("SET")
                .arg(format!("sluice:nonce:{key}"))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(window_secs.max(1) * 2)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        Some(set.is_some())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn classify() {
        assert!(super::is_jwt(b"eyJh.eyJi.c2ln"));
        assert!(!super::is_jwt(b"sk-sluice-3f0c9a0b"));
        assert!(!super::is_jwt(b"eyJh.eyJi.\xff"));
    }
}
