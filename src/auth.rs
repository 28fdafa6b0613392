//! Tenant authentication and per-tenant policy (client address, models). Gateway keys
//! are stored as SHA-256 digests; a presented key is hashed and looked up, then the
//! digest is compared in constant time.

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A tenant as the request path sees it.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    /// Label for logs and metrics.
    pub biz: Option<String>,
    /// Client networks allowed to use this tenant's keys; empty = any.
    pub ip_allow: Vec<IpNet>,
    /// Model name patterns (`*` wildcards) allowed; empty = any.
    pub models: Vec<String>,
    /// Request/token/concurrency limits and quotas.
    pub limits: crate::limit::TenantLimits,
    /// Override of `cache.enabled` for this tenant.
    pub cache: Option<bool>,
    /// Request signing secret and window (seconds), when signatures are required.
    pub signing: Option<(crate::upstream::Secret, u64)>,
    /// Spend-rate alert: (amount, window minutes).
    pub spend_alert: Option<(f64, u32)>,
}

impl Tenant {
    /// Is a request from `ip` allowed?
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.ip_allow.is_empty() {
            return true;
        }
        match ip {
            Some(ip) => self.ip_allow.iter().any(|n| n.contains(&ip)),
            None => false,
        }
    }

    /// Is `model` allowed? (`None` = the request named no model.)
    pub fn model_allowed(&self, model: Option<&str>) -> bool {
        if self.models.is_empty() {
            return true;
        }
        match model {
            Some(m) => self.models.iter().any(|p| glob_match(p, m)),
            None => false,
        }
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// SHA-256 of a gateway key.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Gateway key digest → tenant.
#[derive(Debug, Default)]
pub struct TenantTable {
    by_hash: HashMap<[u8; 32], usize>,
    tenants: Vec<Arc<Tenant>>,
    subjects: HashMap<String, usize>,
}

/// Why a request could not be authenticated.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum AuthFailure {
    Missing,
    Invalid,
}

impl TenantTable {
    /// Add a tenant with its key digests. Returns the name of a tenant that already owns
    /// one of the digests, if any (a config error).
    pub fn add(&mut self, tenant: Tenant, digests: &[[u8; 32]]) -> Result<(), String> {
        for d in digests {
            if let Some(&i) = self.by_hash.get(d) {
                return Err(self.tenants[i].name.clone());
            }
        }
        let idx = self.tenants.len();
        self.tenants.push(Arc::new(tenant));
        for d in digests {
            self.by_hash.insert(*d, idx);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    pub fn tenants(&self) -> &[Arc<Tenant>] {
        &self.tenants
    }

    /// Map a JWT claim value to a tenant: a tenant listing it in `jwt_subjects`, else
    /// the tenant of that name.
    pub fn by_subject(&self, subject: &str) -> Option<&Arc<Tenant>> {
        if let Some(&i) = self.subjects.get(subject) {
            return self.tenants.get(i);
        }
        self.tenants.iter().find(|t| t.name == subject)
    }

    /// Let `subject` (a JWT claim value) name tenant `name`.
    pub fn add_subject(&mut self, subject: &str, name: &str) -> Result<(), String> {
        let Some(i) = self.tenants.iter().position(|t| t.name == name) else {
            return Err(format!("no tenant `{name}`"));
        };
        if let Some(&j) = self.subjects.get(subject) {
            if j != i {
                return Err(format!(
                    "`{subject}` already maps to tenant `{}`",
                    self.tenants[j].name
                ));
            }
        }
        self.subjects.insert(subject.to_string(), i);
        Ok(())
    }

    /// Look up the tenant owning `key`.
    pub fn authenticate(&self, key: Option<&[u8]>) -> Result<&Arc<Tenant>, AuthFailure> {
        let key = match key {
            Some(k) if !k.is_empty() => k,
            _ => return Err(AuthFailure::Missing),
        };
        let digest = hash_key(key);
        match self.by_hash.get_key_value(&digest) {
            Some((stored, &idx)) if bool::from(stored.ct_eq(&digest)) => Ok(&self.tenants[idx]),
            _ => Err(AuthFailure::Invalid),
        }
    }
}

/// The credential a client presented: `x-api-key`, else `Authorization: Bearer …`.
pub fn presented_key<'a>(
    x_api_key: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if let Some(k) = x_api_key {
        return Some(k.trim_ascii());
    }
    let a = authorization?;
    let a = a.trim_ascii();
    if a.len() > 7 && a[..7].eq_ignore_ascii_case(b"bearer ") {
        Some(a[7..].trim_ascii())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Tenant {
        Tenant {
            name: name.into(),
            biz: None,
            ip_allow: vec![],
            models: vec![],
            limits: Default::default(),
            cache: None,
            signing: None,
            spend_alert: None,
        }
    }

    #[test]
    fn lookup() {
        let mut t = TenantTable::default();
        t.add(tenant("a"), &[hash_key(b"sk-sluice-a")]).unwrap();
        t.add(
            tenant("b"),
            &[hash_key(b"sk-sluice-b"), hash_key(b"sk-sluice-b2")],
        )
        .unwrap();
        assert_eq!(t.authenticate(Some(b"sk-sluice-a")).unwrap().name, "a");
        assert_eq!(t.authenticate(Some(b"sk-sluice-b2")).unwrap().name, "b");
        assert_eq!(
            t.authenticate(Some(b"nope")).unwrap_err(),
            AuthFailure::Invalid
        );
        assert_eq!(t.authenticate(None).unwrap_err(), AuthFailure::Missing);
        assert_eq!(t.authenticate(Some(b"")).unwrap_err(), AuthFailure::Missing);
        assert_eq!(
            t.add(tenant("c"), &[hash_key(b"sk-sluice-a")]).unwrap_err(),
            "a"
        );
    }

    #[test]
    fn presented() {
        assert_eq!(
            presented_key(Some(b"k1"), Some(b"Bearer k2")),
            Some(&b"k1"[..])
        );
        assert_eq!(presented_key(None, Some(b"Bearer k2")), Some(&b"k2"[..]));
        assert_eq!(presented_key(None, Some(b"bearer  k2 ")), Some(&b"k2"[..]));
        assert_eq!(presented_key(None, Some(b"Basic abc")), None);
        assert_eq!(presented_key(None, None), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("claude-sonnet-*", "claude-sonnet-4-5"));
        assert!(!glob_match("claude-sonnet-*", "claude-opus-4"));
        assert!(glob_match("*haiku*", "claude-3-5-haiku-latest"));
        assert!(glob_match("claude-*-4-*", "claude-opus-4-1"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", "anything"));
    }

    #[test]
    fn policy() {
        let mut t = tenant("a");
        t.ip_allow = vec!["10.0.0.0/8".parse().unwrap()];
        t.models = vec!["claude-haiku-*".into()];
        assert!(t.ip_allowed(Some("10.1.2.3".parse().unwrap())));
        assert!(!t.ip_allowed(Some("11.1.2.3".parse().unwrap())));
        assert!(!t.ip_allowed(None));
        assert!(t.model_allowed(Some("claude-haiku-4-5")));
        assert!(!t.model_allowed(Some("claude-opus-4")));
        assert!(!t.model_allowed(None));
    }
}
