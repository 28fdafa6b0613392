//! The pool of upstream credentials. Keys are chosen by smooth weighted round robin
//! (nginx's algorithm) among the keys not cooling down; a key that failed (401/403:
//! probably revoked; 429: rate limited upstream; 529/5xx: overloaded) is parked for the
//! configured time and comes back on its own. Requests with the same affinity value
//! (`metadata.user_id`) stick to one healthy key by rendezvous hashing, so upstream
//! prompt caches keep hitting.

use super::clock::now_ms;
use super::Secret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One upstream credential.
#[derive(Debug)]
pub struct UpstreamKey {
    /// A name for logs and metrics; never the key itself.
    pub id: String,
    pub secret: Secret,
    pub weight: u32,
    /// Cooling down until this `now_ms()` (0 = available).
    cooldown_until: AtomicU64,
    /// The last cooldown was for a transient reason (429, 529, 5xx), not a refused key.
    transient: std::sync::atomic::AtomicBool,
}

impl UpstreamKey {
    pub fn new(id: String, secret: Secret, weight: u32) -> Self {
        UpstreamKey {
            id,
            secret,
            weight,
            cooldown_until: AtomicU64::new(0),
            transient: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Milliseconds of cooldown left (0 = available).
    pub fn cooldown_left_ms(&self) -> u64 {
        self.cooldown_until
            .load(Ordering::Relaxed)
            .saturating_sub(now_ms())
    }

    pub fn available(&self) -> bool {
        self.cooldown_left_ms() == 0
    }

    /// Park the key for `ms` (extends, never shortens, a running cooldown). `transient`:
    /// the key itself is fine (429, 529, 5xx), as opposed to refused (401, 403).
    pub fn cool_down(&self, ms: u64, transient: bool) {
        let until = now_ms() + ms;
        let prev = self.cooldown_until.fetch_max(until, Ordering::Relaxed);
        if until >= prev {
            self.transient.store(transient, Ordering::Relaxed);
        }
    }

    /// Take over the cooldown of the same key in a previous config (a reload must not
    /// hand a revoked or rate-limited key straight back to traffic).
    pub fn inherit(&self, old: &UpstreamKey) {
        self.cooldown_until.store(
            old.cooldown_until.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.transient
            .store(old.transient.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Cooling down because the upstream refused the key (401/403)?
    pub fn refused(&self) -> bool {
        !self.available() && !self.transient.load(Ordering::Relaxed)
    }
}

/// The keys of one upstream.
#[derive(Debug, Default)]
pub struct KeyPool {
    keys: Vec<UpstreamKey>,
    current: Mutex<Vec<i64>>,
}

impl KeyPool {
    pub fn new(keys: Vec<UpstreamKey>) -> Self {
        let n = keys.len();
        KeyPool {
            keys,
            current: Mutex::new(vec![0; n]),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[UpstreamKey] {
        &self.keys
    }

    pub fn get(&self, i: usize) -> Option<&UpstreamKey> {
        self.keys.get(i)
    }

    /// The next key (index): available and not in `avoid` if possible; with `affinity`,
    /// the rendezvous-hash winner among those. `None` when the pool is empty or every
    /// key is cooling down.
    pub fn pick(&self, affinity: Option<u64>, avoid: &[usize]) -> Option<usize> {
        let usable = |i: usize, k: &UpstreamKey| k.available() && !avoid.contains(&i);
        let mut candidates: Vec<usize> = (0..self.keys.len())
            .filter(|&i| usable(i, &self.keys[i]))
            .collect();
        if candidates.is_empty() {
            // Everything fresh is tried or cooling: allow a tried-but-available key.
            candidates = (0..self.keys.len())
                .filter(|&i| self.keys[i].available())
                .collect();
        }
        if candidates.is_empty() {
            // Every key rests. If some rest only for a transient reason (429/529/5xx),
            // use the one back soonest rather than refuse: the upstream will answer for
            // itself. Keys the upstream refused (401/403) are never used while resting.
            return (0..self.keys.len())
                .filter(|&i| !self.keys[i].refused())
                .min_by_key(|&i| self.keys[i].cooldown_left_ms());
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            _ => Some(match affinity {
                Some(h) => rendezvous(h, &candidates, &self.keys),
                None => self.round_robin(&candidates),
            }),
        }
    }

    fn round_robin(&self, candidates: &[usize]) -> usize {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = candidates.iter().map(|&i| self.keys[i].weight as i64).sum();
        let mut best = candidates[0];
        for &i in candidates {
            cur[i] += self.keys[i].weight as i64;
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        best
    }

    /// The soonest any key comes back, in ms (for `retry-after` when all are refused).
    pub fn soonest_back_ms(&self) -> u64 {
        self.keys
            .iter()
            .map(UpstreamKey::cooldown_left_ms)
            .min()
            .unwrap_or(0)
    }
}

/// Weighted rendezvous (highest random weight) hashing.
fn rendezvous(h: u64, candidates: &[usize], keys: &[UpstreamKey]) -> usize {
    let mut best = candidates[0];
    let mut best_score = f64::MIN;
    for &i in candidates {
        let x = mix(h ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // uniform in (0,1]; score = -w / ln(u) (weighted HRW)
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let score = -(keys[i].weight as f64) / u.ln();
        if score > best_score {
            best_score = score;
            best = i;
        }
    }
    best
}

/// splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of an affinity value (FNV-1a).
pub fn affinity_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, weight: u32) -> UpstreamKey {
        UpstreamKey::new(id.into(), Secret::new(format!("secret-{id}")), weight)
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_exact() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 2)]);
        let picks: Vec<usize> = (0..6).map(|_| pool.pick(None, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 4);
        assert_eq!(picks.iter().filter(|p| **p == 0).count(), 2);
        assert!(!picks.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]));
    }

    #[test]
    fn empty_and_single() {
        assert!(KeyPool::new(vec![]).pick(None, &[]).is_none());
        let pool = KeyPool::new(vec![key("only", 5)]);
        assert_eq!(pool.pick(None, &[]), Some(0));
    }

    #[test]
    fn cooling_keys_are_skipped_and_come_back() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 1)]);
        pool.keys()[0].cool_down(60_000, false);
        for _ in 0..10 {
            assert_eq!(pool.pick(None, &[]), Some(1));
        }
        pool.keys()[1].cool_down(50, false);
        assert_eq!(
            pool.pick(None, &[]),
            None,
            "every key refused by the upstream"
        );
        assert!(pool.soonest_back_ms() <= 50);
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(pool.pick(None, &[]), Some(1));
        // a shorter cooldown never cuts a longer one short
        pool.keys()[0].cool_down(10, false);
        assert!(pool.keys()[0].cooldown_left_ms() > 50_000);
    }

    #[test]
    fn transient_rest_still_serves_when_nothing_else_is_left() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 1)]);
        pool.keys()[0].cool_down(60_000, false); // revoked
        pool.keys()[1].cool_down(60_000, true); // overloaded
        assert_eq!(pool.pick(None, &[]), Some(1));
        let single = KeyPool::new(vec![key("only", 1)]);
        single.keys()[0].cool_down(30_000, true);
        assert_eq!(single.pick(None, &[]), Some(0));
    }

    #[test]
    fn avoid_prefers_untried_keys() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 1), key("c", 1)]);
        for _ in 0..10 {
            let k = pool.pick(None, &[0, 1]).unwrap();
            assert_eq!(k, 2);
        }
        // all tried: falls back to any available key
        assert!(pool.pick(None, &[0, 1, 2]).is_some());
    }

    #[test]
    fn affinity_is_sticky_and_spreads() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 1), key("c", 1)]);
        let h = affinity_hash("user-42");
        let first = pool.pick(Some(h), &[]).unwrap();
        for _ in 0..20 {
            assert_eq!(pool.pick(Some(h), &[]), Some(first));
        }
        let mut seen = [0; 3];
        for u in 0..300 {
            seen[pool
                .pick(Some(affinity_hash(&format!("user-{u}"))), &[])
                .unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
        // the sticky key cools down: its users move, the others stay put
        pool.keys()[first].cool_down(60_000, true);
        let moved = pool.pick(Some(h), &[]).unwrap();
        assert_ne!(moved, first);
    }
}
