//! Exact-match response cache with request coalescing (SPEC §3 `cache`).
//!
//! Only successful (200) JSON answers of `/v1/messages` and `/v1/messages/count_tokens`
//! are stored, keyed by tenant (unless `shared: true`) + route + a SHA-256 of the
//! canonical request: the JSON body re-serialized with sorted keys, without `stream` and
//! `metadata`, plus the `anthropic-version` and `anthropic-beta` headers. Entries live in
//! an in-process LRU with a TTL, or in Redis (`state: redis://…`) with the TTL set
//! server-side. Identical requests arriving while one is in flight wait for it instead of
//! going upstream (non-streaming). A cached answer can be replayed as an SSE stream for a
//! `stream: true` request (`streams: true`).

pub mod replay;

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A cache key.
pub type Key = [u8; 32];

/// Runtime cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_entries: usize,
    /// Answers larger than this are not stored.
    pub max_body: usize,
    /// Share entries across tenants (on purpose only).
    pub shared: bool,
    /// Replay cached answers as SSE for `stream: true` requests.
    pub streams: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: false,
            ttl: Duration::from_secs(300),
            max_entries: 10_000,
            max_body: 1 << 20,
            shared: false,
            streams: false,
        }
    }
}

/// The key of a request, or `None` when the body is not a JSON object.
pub fn key(
    tenant: Option<&str>,
    route: &str,
    body: &[u8],
    anthropic_version: Option<&[u8]>,
    anthropic_beta: Option<&[u8]>,
) -> Option<Key> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    obj.remove("stream");
    obj.remove("metadata");
    // serde_json's map is ordered by key: this is a canonical form.
    let canonical = serde_json::to_vec(&v).ok()?;
    let mut h = Sha256::new();
    h.update(b"sluice-cache-v1\0");
    match tenant {
        Some(t) => {
            h.update(b"tenant\0");
            h.update(t.as_bytes());
        }
        None => h.update(b"shared"),
    }
    h.update(b"\0");
    h.update(route.as_bytes());
    h.update(b"\0");
    h.update(anthropic_version.unwrap_or(b""));
    h.update(b"\0");
    h.update(anthropic_beta.unwrap_or(b""));
    h.update(b"\0");
    h.update(&canonical);
    Some(h.finalize().into())
}

struct Entry {
    expires: Instant,
    body: Bytes,
}

/// Followers of an in-flight request get the leader's answer (or `None`: go yourself).
type Flight = watch::Receiver<Option<Option<Bytes>>>;

/// The cache of one process.
pub struct ResponseCache {
    mem: Mutex<LruCache<Key, Entry>>,
    redis_url: Option<String>,
    redis: tokio::sync::OnceCell<Option<redis::aio::ConnectionManager>>,
    inflight: Mutex<HashMap<Key, Flight>>,
}

/// Joining an in-flight request.
pub enum Join {
    /// Nobody is fetching this: you do, and publish through the guard.
    Leader(LeaderGuard),
    /// Someone is: wait for their answer.
    Follower(Flight),
}

/// Held by the request that fetches for everyone; dropping it unpublished tells the
/// followers to go upstream themselves.
pub struct LeaderGuard {
    cache: Arc<ResponseCache>,
    key: Key,
    tx: Option<watch::Sender<Option<Option<Bytes>>>>,
}

impl LeaderGuard {
    /// Hand the answer (or `None`: not cacheable) to the followers.
    pub fn publish(mut self, body: Option<Bytes>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(body));
        }
        self.cache.end_flight(&self.key);
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(None));
            self.cache.end_flight(&self.key);
        }
    }
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

impl ResponseCache {
    pub fn new(max_entries: usize, redis_url: Option<String>) -> Self {
        ResponseCache {
            mem: Mutex::new(LruCache::new(
                NonZeroUsize::new(max_entries.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            redis_url,
            redis: tokio::sync::OnceCell::new(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    async fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        let url = self.redis_url.as_deref()?;
        self.redis
            .get_or_init(|| async {
                let client = redis::Client::open(url).ok()?;
                match tokio::time::timeout(
                    Duration::from_secs(1),
                    redis::aio::ConnectionManager::new(client),
                )
                .await
                {
                    Ok(Ok(c)) => Some(c),
                    _ => {
                        log::warn!("response cache: Redis not reachable; caching in memory only");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    fn redis_key(key: &Key) -> String {
        format!("sluice:cache:{}", hex::encode(key))
    }

    /// A fresh entry, from memory first, then Redis.
    pub async fn get(&self, key: &Key, settings: &CacheSettings) -> Option<Bytes> {
        {
            let mut m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            if m.cap().get() != settings.max_entries.max(1) {
                if let Some(n) = NonZeroUsize::new(settings.max_entries.max(1)) {
                    m.resize(n);
                }
            }
            match m.get(key) {
                Some(e) if e.expires > Instant::now() => return Some(e.body.clone()),
                Some(_) => {
                    m.pop(key);
                }
                None => {}
            }
        }
        let mut r = self.redis().await?;
        let got: Option<Vec<u8>> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GET")
                .arg(Self::redis_key(key))
                .query_async(&mut r),
        )
        .await
        .ok()?
        .ok()?;
        got.map(Bytes::from)
    }

    /// Store an answer for `ttl` (memory and, when shared, Redis).
    pub async fn put(&self, key: &Key, body: Bytes, settings: &CacheSettings) {
        if body.len() > settings.max_body {
            return;
        }
        {
            let mut m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
            m.put(
                *key,
                Entry {
                    expires: Instant::now() + settings.ttl,
                    body: body.clone(),
                },
            );
        }
        if let Some(mut r) = self.redis().await {
            let ms = settings.ttl.as_millis().max(1) as u64;
            let res: Result<Result<(), redis::RedisError>, _> = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("SET")
                    .arg(Self::redis_key(key))
                    .arg(body.as_ref())
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut r),
            )
            .await;
            if !matches!(res, Ok(Ok(()))) {
                log::debug!("response cache: Redis SET failed; entry kept in memory only");
            }
        }
    }

    /// Lead or follow the in-flight fetch for `key`.
    pub fn join(self: &Arc<Self>, key: &Key) -> Join {
        let mut f = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = f.get(key) {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        f.insert(*key, rx);
        Join::Leader(LeaderGuard {
            cache: self.clone(),
            key: *key,
            tx: Some(tx),
        })
    }

    fn end_flight(&self, key: &Key) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Entries in memory (tests, status).
    pub fn len(&self) -> usize {
        self.mem.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wait for a leader's answer: `Some(body)` to serve, `None` to go upstream yourself.
pub async fn follow(mut rx: Flight, wait: Duration) -> Option<Bytes> {
    let done = tokio::time::timeout(wait, async {
        loop {
            if let Some(v) = rx.borrow().clone() {
                return v;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    done.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical_and_isolated() {
        let a = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"stream":false}"#;
        let b = br#"{"messages":[{"content":"hi","role":"user"}],"model":"m","max_tokens":5,"stream":true,"metadata":{"user_id":"x"}}"#;
        let ka = key(Some("t1"), "/v1/messages", a, Some(b"2023-06-01"), None).unwrap();
        let kb = key(Some("t1"), "/v1/messages", b, Some(b"2023-06-01"), None).unwrap();
        assert_eq!(ka, kb, "key order, stream and metadata do not matter");
        assert_ne!(
            ka,
            key(Some("t2"), "/v1/messages", a, Some(b"2023-06-01"), None).unwrap(),
            "tenants are isolated"
        );
        assert_ne!(
            ka,
            key(None, "/v1/messages", a, Some(b"2023-06-01"), None).unwrap()
        );
        assert_ne!(
            ka,
            key(
                Some("t1"),
                "/v1/messages",
                a,
                Some(b"2023-06-01"),
                Some(b"beta-x")
            )
            .unwrap()
        );
        assert_ne!(
            ka,
            key(
                Some("t1"),
                "/v1/messages/count_tokens",
                a,
                Some(b"2023-06-01"),
                None
            )
            .unwrap()
        );
        let c = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi!"}]}"#;
        assert_ne!(
            ka,
            key(Some("t1"), "/v1/messages", c, Some(b"2023-06-01"), None).unwrap()
        );
        assert!(key(Some("t1"), "/v1/messages", b"not json", None, None).is_none());
        assert!(key(Some("t1"), "/v1/messages", b"[1,2]", None, None).is_none());
    }

    #[tokio::test]
    async fn ttl_lru_and_size_limit() {
        let c = ResponseCache::new(2, None);
        let s = CacheSettings {
            enabled: true,
            ttl: Duration::from_millis(100),
            max_entries: 2,
            max_body: 10,
            ..Default::default()
        };
        let k = |i: u8| [i; 32];
        c.put(&k(1), Bytes::from_static(b"one"), &s).await;
        c.put(&k(2), Bytes::from_static(b"two"), &s).await;
        c.put(&k(3), Bytes::from_static(b"three"), &s).await;
        assert!(
            c.get(&k(1), &s).await.is_none(),
            "least recently used evicted"
        );
        assert_eq!(c.get(&k(3), &s).await.unwrap(), "three");
        c.put(&k(4), Bytes::from_static(b"way too large body"), &s)
            .await;
        assert!(
            c.get(&k(4), &s).await.is_none(),
            "not stored above max_body"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(c.get(&k(3), &s).await.is_none(), "expired");
    }

    #[tokio::test]
    async fn coalescing() {
        let c = Arc::new(ResponseCache::new(10, None));
        let k = [7u8; 32];
        let Join::Leader(lead) = c.join(&k) else {
            panic!("first is the leader")
        };
        let Join::Follower(f1) = c.join(&k) else {
            panic!("second follows")
        };
        let Join::Follower(f2) = c.join(&k) else {
            panic!("third follows")
        };
        let w1 = tokio::spawn(follow(f1, Duration::from_secs(1)));
        lead.publish(Some(Bytes::from_static(b"answer")));
        assert_eq!(w1.await.unwrap().unwrap(), "answer");
        assert_eq!(follow(f2, Duration::from_secs(1)).await.unwrap(), "answer");
        // the flight is over: the next one leads again; a leader that fails releases
        let Join::Leader(lead) = c.join(&k) else {
            panic!("leader again")
        };
        let Join::Follower(f) = c.join(&k) else {
            panic!("follower")
        };
        drop(lead);
        assert!(
            follow(f, Duration::from_secs(1)).await.is_none(),
            "go upstream yourself"
        );
    }
}
