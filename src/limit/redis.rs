//! Shared limiter state in Redis (in progress).
use super::{Admission, AdmitRequest, Backend, BackendError, Gcra, SettleRequest};

/// The Redis backend.
pub struct RedisBackend;

impl RedisBackend {
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Err(BackendError(format!("not yet: {url}")))
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn admit(&self, _req: &AdmitRequest<'_>) -> Result<Admission, BackendError> {
        Err(BackendError("not yet".into()))
    }
    async fn settle(&self, _req: &SettleRequest<'_>) -> Result<(), BackendError> {
        Err(BackendError("not yet".into()))
    }
    async fn client_ip(&self, _key: &str, _bucket: &Gcra) -> Result<(bool, u64), BackendError> {
        Err(BackendError("not yet".into()))
    }
    fn name(&self) -> &'static str {
        "redis"
    }
}
