//! The pool of upstream credentials. Keys are chosen by smooth weighted round robin
//! (nginx's algorithm), so weights spread load evenly rather than in bursts.

use super::Secret;
use std::sync::Mutex;

/// One upstream credential.
#[derive(Debug)]
pub struct UpstreamKey {
    /// A name for logs and metrics; never the key itself.
    pub id: String,
    pub secret: Secret,
    pub weight: u32,
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

    /// The next key to use, or `None` when the pool is empty (upstream needs no key).
    pub fn pick(&self) -> Option<&UpstreamKey> {
        match self.keys.len() {
            0 => None,
            1 => self.keys.first(),
            _ => {
                let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
                let total: i64 = self.keys.iter().map(|k| k.weight as i64).sum();
                let mut best = 0;
                for (i, k) in self.keys.iter().enumerate() {
                    cur[i] += k.weight as i64;
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                self.keys.get(best)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, weight: u32) -> UpstreamKey {
        UpstreamKey {
            id: id.into(),
            secret: Secret::new(format!("secret-{id}")),
            weight,
        }
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_exact() {
        let pool = KeyPool::new(vec![key("a", 1), key("b", 2)]);
        let picks: Vec<&str> = (0..6).map(|_| pool.pick().unwrap().id.as_str()).collect();
        assert_eq!(picks.iter().filter(|p| **p == "b").count(), 4);
        assert_eq!(picks.iter().filter(|p| **p == "a").count(), 2);
        // smooth: never three of the same in a row
        assert!(!picks.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]));
    }

    #[test]
    fn empty_and_single() {
        assert!(KeyPool::new(vec![]).pick().is_none());
        let pool = KeyPool::new(vec![key("only", 5)]);
        assert_eq!(pool.pick().unwrap().id, "only");
    }
}
