//! Tenant credentials beyond static gateway keys (pure: no Pingora types, no I/O).
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

#[cfg(test)]
mod tests {
    #[test]
    fn classify() {
        assert!(super::is_jwt(b"eyJh.eyJi.c2ln"));
        assert!(!super::is_jwt(b"sk-sluice-3f0c9a0b"));
        assert!(!super::is_jwt(b"eyJh.eyJi.\xff"));
    }
}
