//! A circuit breaker per endpoint: the error rate over a sliding window (ten buckets)
//! opens the circuit once at least `min_requests` were seen; an open circuit is skipped
//! for `open_for`, then lets one probe through (half-open): success closes it, failure
//! opens it again.

use super::clock::now_ms;
use std::sync::Mutex;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub error_rate: f64,
    pub window_ms: u64,
    pub min_requests: u32,
    pub open_for_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            error_rate: 0.5,
            window_ms: 30_000,
            min_requests: 20,
            open_for_ms: 30_000,
        }
    }
}

/// Circuit state, for status pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

const BUCKETS: usize = 10;

#[derive(Debug)]
struct Inner {
    /// (bucket start ms, successes, failures)
    buckets: [(u64, u32, u32); BUCKETS],
    state: CircuitState,
    opened_at: u64,
    probe_in_flight: bool,
}

/// One endpoint's breaker.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            inner: Mutex::new(Inner {
                buckets: [(0, 0, 0); BUCKETS],
                state: CircuitState::Closed,
                opened_at: 0,
                probe_in_flight: false,
            }),
        }
    }

    /// Take over the state of the same endpoint's breaker in a previous config: an open
    /// circuit stays open (for the new `open_for`), a half-open one waits for a new
    /// probe (the old probe reports to the old breaker), and the failure history is kept
    /// when the window is the same.
    pub fn inherit(&self, old: &Breaker) {
        let o = old.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.state = o.state;
        g.opened_at = o.opened_at;
        g.probe_in_flight = false;
        if self.cfg.window_ms == old.cfg.window_ms {
            g.buckets = o.buckets;
        }
    }

    fn bucket_ms(&self) -> u64 {
        (self.cfg.window_ms / BUCKETS as u64).max(1)
    }

    /// May a request go to this endpoint now? In half-open state only one probe may.
    pub fn allow(&self) -> bool {
        self.allow_at(now_ms())
    }

    pub fn allow_at(&self, now: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.state {
            CircuitState::Closed => true,
            CircuitState::Open => {
                if now >= g.opened_at + self.cfg.open_for_ms {
                    g.state = CircuitState::HalfOpen;
                    g.probe_in_flight = true;
                    true
                } else {
                    false
                }
            }
            CircuitState::HalfOpen => {
                if g.probe_in_flight {
                    false
                } else {
                    g.probe_in_flight = true;
                    true
                }
            }
        }
    }

    /// Would `allow` say yes (without taking the probe)?
    pub fn usable(&self) -> bool {
        let now = now_ms();
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.state {
            CircuitState::Closed => true,
            CircuitState::Open => now >= g.opened_at + self.cfg.open_for_ms,
            CircuitState::HalfOpen => !g.probe_in_flight,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.inner
            .lock()
            .map(|g| g.state)
            .unwrap_or(CircuitState::Closed)
    }

    pub fn record(&self, success: bool) {
        self.record_at(success, now_ms());
    }

    pub fn record_at(&self, success: bool, now: u64) {
        let bucket_ms = self.bucket_ms();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.state {
            CircuitState::HalfOpen => {
                g.probe_in_flight = false;
                if success {
                    g.state = CircuitState::Closed;
                    g.buckets = [(0, 0, 0); BUCKETS];
                } else {
                    g.state = CircuitState::Open;
                    g.opened_at = now;
                }
                return;
            }
            CircuitState::Open => return,
            CircuitState::Closed => {}
        }
        let start = now - now % bucket_ms;
        let idx = ((now / bucket_ms) % BUCKETS as u64) as usize;
        if g.buckets[idx].0 != start {
            g.buckets[idx] = (start, 0, 0);
        }
        if success {
            g.buckets[idx].1 += 1;
        } else {
            g.buckets[idx].2 += 1;
        }
        let horizon = now.saturating_sub(self.cfg.window_ms);
        let (ok, bad) = g
            .buckets
            .iter()
            .filter(|b| b.0 > horizon || (b.0 == start))
            .fold((0u32, 0u32), |(o, f), b| (o + b.1, f + b.2));
        let total = ok + bad;
        if total >= self.cfg.min_requests && bad as f64 > self.cfg.error_rate * total as f64 {
            g.state = CircuitState::Open;
            g.opened_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            error_rate: 0.5,
            window_ms: 10_000,
            min_requests: 4,
            open_for_ms: 1_000,
        }
    }

    #[test]
    fn inherit_keeps_open_circuits_and_frees_the_probe() {
        let old = Breaker::new(cfg());
        let t = now_ms();
        for _ in 0..4 {
            old.record_at(false, t);
        }
        assert_eq!(old.state(), CircuitState::Open);
        let new = Breaker::new(cfg());
        new.inherit(&old);
        assert_eq!(new.state(), CircuitState::Open);
        assert!(!new.allow_at(t + 10), "still open after the reload");
        // half-open with the probe in flight on the old breaker: the new one may probe
        assert!(old.allow_at(t + 1_000));
        assert_eq!(old.state(), CircuitState::HalfOpen);
        let newer = Breaker::new(cfg());
        newer.inherit(&old);
        assert!(newer.allow_at(t + 1_001), "a new probe is allowed");
        assert!(!newer.allow_at(t + 1_002), "only one");
        // a closed breaker keeps its failure history when the window is the same
        let hist = Breaker::new(cfg());
        for _ in 0..3 {
            hist.record_at(false, t);
        }
        let next = Breaker::new(cfg());
        next.inherit(&hist);
        next.record_at(false, t + 1);
        assert_eq!(next.state(), CircuitState::Open, "3 + 1 failures");
    }

    #[test]
    fn opens_on_error_rate_after_min_requests() {
        let b = Breaker::new(cfg());
        let t = 100_000;
        b.record_at(false, t);
        b.record_at(false, t);
        b.record_at(false, t);
        assert_eq!(b.state(), CircuitState::Closed, "below min_requests");
        b.record_at(true, t);
        assert_eq!(b.state(), CircuitState::Open, "3 of 4 failed: above 50%");
        let b = Breaker::new(cfg());
        for ok in [false, false, true, true, true] {
            b.record_at(ok, t);
        }
        assert_eq!(b.state(), CircuitState::Closed, "2 of 5 failed: below 50%");
    }

    #[test]
    fn open_half_open_close_cycle() {
        let b = Breaker::new(cfg());
        let t = 100_000;
        for _ in 0..4 {
            b.record_at(false, t);
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.allow_at(t + 500));
        // half-open after open_for: exactly one probe
        assert!(b.allow_at(t + 1_000));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(!b.allow_at(t + 1_001));
        b.record_at(false, t + 1_010);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.allow_at(t + 2_010));
        b.record_at(true, t + 2_020);
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.allow_at(t + 2_021));
    }

    #[test]
    fn old_errors_leave_the_window() {
        let b = Breaker::new(cfg());
        let t = 100_000;
        for _ in 0..3 {
            b.record_at(false, t);
        }
        // 11 s later the old failures are outside the 10 s window
        for _ in 0..4 {
            b.record_at(true, t + 11_000);
        }
        b.record_at(false, t + 11_000);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
