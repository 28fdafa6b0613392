//! The leaky bucket as GCRA (generic cell rate algorithm): one number per key, the
//! theoretical arrival time `tat`. A request of `cost` units arriving at `now` would move
//! it to `max(tat, now) + cost·T`; it is admitted when that is at most `τ` ahead of `now`.
//!
//! With `T = 1/rate` and `τ = (burst + 1)·T` this admits exactly what nginx's
//! `limit_req rate=… burst=…` admits: nginx keeps `excess = max(0, excess − rate·Δt + 1)`
//! and refuses when `excess > burst`; writing `excess = (tat − now)·rate − 1` turns one
//! rule into the other. Unlike nginx (integer milli-requests per second, millisecond
//! clock) the arithmetic here is exact in nanoseconds. Refused requests change nothing.
//!
//! All times are nanoseconds on one clock chosen by the backend.

/// A bucket's parameters: `count` units per `per_ns`, holding at most `capacity` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub per_ns: u64,
    pub count: u64,
    pub capacity: u64,
}

/// The outcome of one admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub allowed: bool,
    /// The state to store if the request is admitted (unchanged `tat` when refused).
    pub new_tat: u64,
    /// When refused: how long until the same request would be admitted.
    pub retry_after_ns: u64,
    /// When admitted in delay mode: how long the request should wait (nginx's delay).
    pub delay_ns: u64,
    /// Whole units still available right after this decision.
    pub remaining: u64,
    /// How long until the bucket is completely empty again.
    pub reset_ns: u64,
}

impl Gcra {
    /// A request bucket with nginx `limit_req` semantics: `rate` = `count` per `per_ns`,
    /// `burst` extra requests.
    pub fn requests(count: u64, per_ns: u64, burst: u64) -> Self {
        Gcra {
            per_ns,
            count: count.max(1),
            capacity: burst.saturating_add(1),
        }
    }

    /// A token bucket refilling `count` tokens per `per_ns`, holding at most `capacity`.
    pub fn tokens(count: u64, per_ns: u64, capacity: u64) -> Self {
        Gcra {
            per_ns,
            count: count.max(1),
            capacity: capacity.max(1),
        }
    }

    /// Nanoseconds that `units` take to drain (rounded up).
    pub fn interval(&self, units: u64) -> u64 {
        let n = units as u128 * self.per_ns as u128;
        let d = self.count as u128;
        n.div_ceil(d).min(u64::MAX as u128) as u64
    }

    /// Whole units that drain in `ns` (rounded down).
    fn units_in(&self, ns: u64) -> u64 {
        if self.per_ns == 0 {
            return self.capacity;
        }
        (ns as u128 * self.count as u128 / self.per_ns as u128).min(u64::MAX as u128) as u64
    }

    /// The tolerance τ: how far `tat` may run ahead of now.
    pub fn tau(&self) -> u64 {
        self.interval(self.capacity)
    }

    /// Would a request of `cost` units at `now` be admitted, given stored `tat`?
    pub fn check(&self, tat: u64, now: u64, cost: u64) -> Check {
        let tau = self.tau();
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.interval(cost));
        let ahead = new_tat - now;
        if ahead <= tau {
            let remaining = self.units_in(tau - ahead);
            // Delay: everything beyond the one unit being served now (nginx: excess / rate).
            let delay_ns = ahead.saturating_sub(self.interval(cost.max(1)));
            Check {
                allowed: true,
                new_tat,
                retry_after_ns: 0,
                delay_ns,
                remaining,
                reset_ns: ahead,
            }
        } else {
            let ahead_now = base - now;
            Check {
                allowed: false,
                new_tat: tat,
                retry_after_ns: ahead - tau,
                delay_ns: 0,
                remaining: self.units_in(tau.saturating_sub(ahead_now)),
                reset_ns: ahead_now,
            }
        }
    }

    /// Apply a correction of `delta` units (positive: charge more; negative: refund) to
    /// a stored `tat`. A refund never moves the bucket below empty.
    pub fn adjust(&self, tat: u64, now: u64, delta: i64) -> u64 {
        if delta >= 0 {
            tat.max(now).saturating_add(self.interval(delta as u64))
        } else {
            tat.saturating_sub(self.interval(delta.unsigned_abs()))
                .max(now)
        }
    }

    /// Units in the bucket at `now` for stored `tat`, rounded up.
    pub fn level(&self, tat: u64, now: u64) -> u64 {
        let ns = tat.saturating_sub(now) as u128 * self.count as u128;
        ns.div_ceil(self.per_ns.max(1) as u128)
            .min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    /// Replay `arrivals` (ms) through a request bucket; returns which were admitted.
    fn replay(g: &Gcra, arrivals: &[u64]) -> Vec<bool> {
        let mut tat = 0;
        let start = 1_000 * S; // any clock origin
        arrivals
            .iter()
            .map(|ms| {
                let c = g.check(tat, start + ms * MS, 1);
                if c.allowed {
                    tat = c.new_tat;
                }
                c.allowed
            })
            .collect()
    }

    /// nginx's limit_req arithmetic, transcribed (milli-requests, ms clock), for
    /// cross-checking the GCRA form.
    fn nginx(rate_per_s: u64, burst: u64, arrivals: &[u64]) -> Vec<bool> {
        let rate = rate_per_s as i64 * 1000;
        let burst = burst as i64 * 1000;
        let mut node: Option<(i64, u64)> = None; // (excess, last)
        arrivals
            .iter()
            .map(|&now| match node {
                None => {
                    node = Some((0, now));
                    true
                }
                Some((ex, last)) => {
                    let ms = (now - last) as i64;
                    let excess = (ex - rate * ms / 1000 + 1000).max(0);
                    if excess > burst {
                        false
                    } else {
                        node = Some((excess, if ms != 0 { now } else { last }));
                        true
                    }
                }
            })
            .collect()
    }

    #[test]
    fn burst_then_refill_hand_computed() {
        // 10 r/s (T = 100 ms), burst 3: four at once, then one every 100 ms.
        let g = Gcra::requests(10, S, 3);
        let got = replay(
            &g,
            &[
                0, 0, 0, 0, 0, 50, 100, 150, 200, 1000, 1000, 1000, 1000, 1000,
            ],
        );
        assert_eq!(
            got,
            vec![
                true, true, true, true, false, false, true, false, true, true, true, true, true,
                false
            ]
        );
    }

    #[test]
    fn burst_zero_spaces_requests() {
        let g = Gcra::requests(10, S, 0);
        assert_eq!(
            replay(&g, &[0, 50, 99, 100, 150, 200]),
            vec![true, false, false, true, false, true]
        );
    }

    #[test]
    fn matches_nginx_on_irregular_patterns() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        for (rate, burst) in [(10, 0), (10, 3), (5, 10), (50, 5), (1, 2)] {
            let mut t = 0u64;
            let mut arrivals = Vec::new();
            for _ in 0..300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t += match seed % 4 {
                    0 => 0,
                    1 => seed % 20,
                    2 => seed % 150,
                    _ => seed % 600,
                };
                arrivals.push(t);
            }
            let g = Gcra::requests(rate, S, burst);
            assert_eq!(
                replay(&g, &arrivals),
                nginx(rate, burst, &arrivals),
                "rate {rate} burst {burst}"
            );
        }
    }

    #[test]
    fn retry_after_is_exact() {
        let g = Gcra::requests(10, S, 1); // T=100ms, τ=200ms
        let now = 5 * S;
        let c1 = g.check(0, now, 1);
        let c2 = g.check(c1.new_tat, now, 1);
        assert!(c1.allowed && c2.allowed);
        let c3 = g.check(c2.new_tat, now, 1);
        assert!(!c3.allowed);
        assert_eq!(c3.retry_after_ns, 100 * MS);
        assert_eq!(c3.remaining, 0);
        // exactly at retry-after it is admitted, 1 ns before it is not
        assert!(g.check(c2.new_tat, now + 100 * MS, 1).allowed);
        assert!(!g.check(c2.new_tat, now + 100 * MS - 1, 1).allowed);
    }

    #[test]
    fn remaining_and_reset() {
        let g = Gcra::requests(60, 60 * S, 4); // 1/s, capacity 5
        let now = 10 * S;
        let c = g.check(0, now, 1);
        assert_eq!((c.remaining, c.reset_ns), (4, S));
        let c = g.check(c.new_tat, now, 1);
        assert_eq!((c.remaining, c.reset_ns), (3, 2 * S));
    }

    #[test]
    fn delay_mode_waits_for_the_excess() {
        let g = Gcra::requests(10, S, 3);
        let now = S;
        let mut tat = 0;
        let mut delays = vec![];
        for _ in 0..4 {
            let c = g.check(tat, now, 1);
            assert!(c.allowed);
            tat = c.new_tat;
            delays.push(c.delay_ns / MS);
        }
        assert_eq!(delays, vec![0, 100, 200, 300]);
    }

    #[test]
    fn token_bucket_reserve_and_reconcile() {
        // 1000 tokens per minute, capacity 1000.
        let g = Gcra::tokens(1000, 60 * S, 1000);
        let now = 100 * S;
        let c = g.check(0, now, 930);
        assert!(c.allowed);
        assert_eq!(c.remaining, 70);
        // a second 930-token estimate does not fit...
        let c2 = g.check(c.new_tat, now, 930);
        assert!(!c2.allowed);
        // ...until the first one is reconciled to its real use of 40 tokens
        let tat = g.adjust(c.new_tat, now, 40 - 930);
        assert_eq!(g.level(tat, now), 40);
        assert!(g.check(tat, now, 930).allowed);
        // overuse is charged too
        let tat = g.adjust(tat, now, 500);
        assert_eq!(g.level(tat, now), 540);
        // refunds never go below empty
        assert_eq!(g.adjust(0, now, -5000), now);
    }

    #[test]
    fn cost_larger_than_capacity_never_fits() {
        let g = Gcra::tokens(100, S, 100);
        let c = g.check(0, S, 101);
        assert!(!c.allowed);
        assert!(c.retry_after_ns > 0);
    }

    #[test]
    fn clock_edges() {
        let g = Gcra::requests(1, S, 0);
        // a tat far in the past behaves like a fresh key
        assert!(g.check(1, u64::MAX / 2, 1).allowed);
        // saturating arithmetic near the end of the clock does not panic
        let c = g.check(u64::MAX - 10, u64::MAX - 5, 1);
        assert!(c.new_tat >= c.reset_ns);
        let _ = g.adjust(u64::MAX, 0, i64::MAX);
        let _ = g.adjust(0, 0, i64::MIN);
        // zero-length periods do not divide by zero
        let z = Gcra {
            per_ns: 0,
            count: 1,
            capacity: 1,
        };
        let _ = z.check(0, 0, 1);
        let _ = z.level(10, 0);
    }
}
