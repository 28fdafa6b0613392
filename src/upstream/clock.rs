//! A process-wide monotonic millisecond clock for cooldowns and circuit breakers
//! (cheap to read, storable in an atomic).

use once_cell::sync::Lazy;
use std::time::Instant;

static START: Lazy<Instant> = Lazy::new(Instant::now);

/// Milliseconds since the process started (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64 + 1
}
