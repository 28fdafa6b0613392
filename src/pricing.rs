//! What usage costs: per-model prices (per million tokens) and a per-tenant spend
//! window for alerts.
//!
//! Prices are held as integers in millionths of the currency unit per million tokens
//! (so `3.75` is `3_750_000`); a cost is the exact integer sum
//! `input·p_in + output·p_out + cache_creation·p_cw + cache_read·p_cr` rounded once when
//! divided by 10^6 (10^12 in the integer scale). No float error accumulates, whatever
//! the token counts.

use crate::auth::glob_match;
use crate::usage::Usage;

/// Highest price accepted (per million tokens).
pub const MAX_PRICE: f64 = 1_000_000.0;
const SCALE: f64 = 1e6;
/// Integer cost units per currency unit: tokens × micro-price / 10^6 tokens.
const COST_SCALE: f64 = 1e12;

/// Prices of the models matching `model`, per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceSpec {
    /// Model name or pattern with `*` wildcards (`claude-sonnet-*`).
    pub model: String,
    pub input: f64,
    pub output: f64,
    /// Input tokens written to the prompt cache.
    pub cache_write: f64,
    /// Input tokens read from the prompt cache.
    pub cache_read: f64,
}

#[derive(Debug)]
struct Entry {
    spec: PriceSpec,
    /// input, output, cache_write, cache_read in millionths per million tokens.
    micros: [u64; 4],
}

/// Model patterns → prices, first match wins.
#[derive(Debug)]
pub struct PriceTable {
    entries: Vec<Entry>,
    currency: String,
}

impl PriceTable {
    /// Validate and compile. Prices must be finite, in [0, 1e6], and are kept to 6
    /// decimal places. A pattern repeated, or listed after a catch-all `*`, is an error
    /// (it could never match).
    pub fn new(specs: Vec<PriceSpec>, currency: String) -> Result<Self, String> {
        let currency = currency.trim().to_string();
        if currency.is_empty()
            || currency
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "pricing: currency `{currency}` must be a non-empty word (e.g. USD)"
            ));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(specs.len());
        for spec in specs {
            let m = &spec.model;
            if m.trim().is_empty() {
                return Err("pricing: `model` must not be empty".into());
            }
            if entries.iter().any(|e| e.spec.model == *m) {
                return Err(format!("pricing: model `{m}` is listed twice"));
            }
            if let Some(all) = entries
                .iter()
                .find(|e| e.spec.model.chars().all(|c| c == '*'))
            {
                return Err(format!(
                    "pricing: model `{m}` comes after `{}`, which matches every model",
                    all.spec.model
                ));
            }
            let mut micros = [0u64; 4];
            let prices = [
                ("input", spec.input),
                ("output", spec.output),
                ("cache_write", spec.cache_write),
                ("cache_read", spec.cache_read),
            ];
            for (slot, (what, p)) in micros.iter_mut().zip(prices) {
                if !p.is_finite() || !(0.0..=MAX_PRICE).contains(&p) {
                    return Err(format!(
                        "pricing: `{m}` {what} price {p} must be between 0 and {MAX_PRICE}"
                    ));
                }
                // In range by the check above: at most 1e12, exact in u64.
                *slot = (p * SCALE).round() as u64;
            }
            entries.push(Entry { spec, micros });
        }
        Ok(PriceTable { entries, currency })
    }

    /// The prices of the first pattern matching `model`.
    pub fn price(&self, model: &str) -> Option<&PriceSpec> {
        self.entry(model).map(|e| &e.spec)
    }

    fn entry(&self, model: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| glob_match(&e.spec.model, model))
    }

    /// Cost of `usage` on `model`, in the table's currency; `None` for an unpriced model.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.cost_units(model, usage).map(|u| u as f64 / COST_SCALE)
    }

    /// Cost in millionths of the currency unit, rounded up (for integer counters such as
    /// Redis `INCRBY`).
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.cost_units(model, usage)
            .map(|u| u64::try_from(u.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    /// Exact cost in 10^-12 currency units.
    fn cost_units(&self, model: &str, usage: &Usage) -> Option<u128> {
        let e = self.entry(model)?;
        let tokens = [
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens,
        ];
        Some(
            tokens
                .iter()
                .zip(e.micros)
                .map(|(&t, p)| u128::from(t) * u128::from(p))
                .sum(),
        )
    }

    /// Worst-case cost of a request before it runs (for reservations): every input
    /// token at the dearest input rate (plain, cache write or cache read) plus
    /// `max_tokens` of output.
    pub fn estimate(&self, model: &str, input_tokens: u64, max_tokens: u64) -> Option<f64> {
        let e = self.entry(model)?;
        let [p_in, p_out, p_cw, p_cr] = e.micros;
        let dearest = p_in.max(p_cw).max(p_cr);
        let units = u128::from(input_tokens) * u128::from(dearest)
            + u128::from(max_tokens) * u128::from(p_out);
        Some(units as f64 / COST_SCALE)
    }

    /// [`Self::estimate`] in millionths of the currency unit, rounded up (for spend
    /// reservations held in integer counters).
    pub fn estimate_micros(&self, model: &str, input_tokens: u64, max_tokens: u64) -> Option<u64> {
        let e = self.entry(model)?;
        let [p_in, p_out, p_cw, p_cr] = e.micros;
        let dearest = p_in.max(p_cw).max(p_cr);
        let units = u128::from(input_tokens) * u128::from(dearest)
            + u128::from(max_tokens) * u128::from(p_out);
        Some(u64::try_from(units.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Spend of one tenant over the last `minutes` minutes, in one-minute buckets (fixed
/// memory), with an alert that fires once per episode: the first check over the
/// threshold fires; later checks stay quiet until spend falls back to the threshold or
/// below, which re-arms it.
///
/// Plain data with `&mut self` methods: keep one per tenant behind a `Mutex`.
#[derive(Debug, Clone)]
pub struct SpendWindow {
    /// (minute number since the epoch, spend in that minute); `EMPTY` = unused.
    buckets: Box<[(u64, f64)]>,
    alerting: bool,
}

const EMPTY: u64 = u64::MAX;

impl SpendWindow {
    /// A window of `minutes` (clamped to 1..=1440) one-minute buckets.
    pub fn new(minutes: u32) -> Self {
        let n = minutes.clamp(1, 1440) as usize;
        SpendWindow {
            buckets: vec![(EMPTY, 0.0); n].into_boxed_slice(),
            alerting: false,
        }
    }

    /// Window length in minutes.
    pub fn minutes(&self) -> u32 {
        self.buckets.len() as u32
    }

    /// Record `cost` spent at `now_unix`. Non-finite or negative costs are ignored, as
    /// is a cost older than the window.
    pub fn add(&mut self, now_unix: u64, cost: f64) {
        if !cost.is_finite() || cost <= 0.0 {
            return;
        }
        let minute = now_unix / 60;
        let n = self.buckets.len() as u64;
        let slot = &mut self.buckets[(minute % n) as usize];
        if slot.0 != minute {
            if slot.0 != EMPTY && slot.0 > minute {
                // The slot holds a newer minute: `minute` is out of the window.
                return;
            }
            *slot = (minute, 0.0);
        }
        slot.1 += cost;
    }

    /// Spend over the window ending at `now_unix`: the current minute and the
    /// `minutes − 1` before it.
    pub fn rate_over(&self, now_unix: u64) -> f64 {
        let minute = now_unix / 60;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|(m, _)| *m != EMPTY && *m <= minute && minute - *m < n)
            .map(|(_, c)| c)
            .sum()
    }

    /// `true` exactly once per episode of spend above `threshold` (see the type docs).
    pub fn alert(&mut self, now_unix: u64, threshold: f64) -> bool {
        let over = self.rate_over(now_unix) > threshold;
        let fire = over && !self.alerting;
        self.alerting = over;
        fire
    }

    /// Inside an episode (fired, not yet re-armed)?
    pub fn in_episode(&self) -> bool {
        self.alerting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str, input: f64, output: f64, cw: f64, cr: f64) -> PriceSpec {
        PriceSpec {
            model: model.into(),
            input,
            output,
            cache_write: cw,
            cache_read: cr,
        }
    }

    fn table() -> PriceTable {
        PriceTable::new(
            vec![
                spec("claude-opus-4-1*", 15.0, 75.0, 18.75, 1.5),
                spec("claude-opus-*", 5.0, 25.0, 6.25, 0.5),
                spec("claude-sonnet-*", 3.0, 15.0, 3.75, 0.3),
                spec("claude-*haiku*", 1.0, 5.0, 1.25, 0.1),
            ],
            "USD".into(),
        )
        .expect("table")
    }

    fn usage(i: u64, o: u64, cw: u64, cr: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            cache_creation_input_tokens: cw,
            cache_read_input_tokens: cr,
        }
    }

    #[test]
    fn exact_costs() {
        let t = table();
        assert_eq!(t.currency(), "USD");
        // 1M of each kind on Sonnet: 3 + 15 + 3.75 + 0.3.
        let m = 1_000_000;
        assert_eq!(t.cost("claude-sonnet-4-5", &usage(m, m, m, m)), Some(22.05));
        // (1234·3 + 567·15 + 2000·3.75 + 10000·0.3) / 1e6 = 0.022707
        assert_eq!(
            t.cost("claude-sonnet-4-5", &usage(1234, 567, 2000, 10_000)),
            Some(0.022707)
        );
        // 0.3 · 3 tokens: float math would give 9.000000000000001e-7.
        assert_eq!(
            t.cost("claude-sonnet-4", &usage(0, 0, 0, 3)),
            Some(0.0000009)
        );
        assert_eq!(t.cost("claude-sonnet-4", &usage(0, 0, 0, 0)), Some(0.0));
        assert_eq!(
            t.cost_micros("claude-sonnet-4-5", &usage(1234, 567, 2000, 10_000)),
            Some(22_707)
        );
        // Rounded up to a whole millionth.
        assert_eq!(
            t.cost_micros("claude-sonnet-4", &usage(0, 0, 0, 3)),
            Some(1)
        );
        // Huge counts do not overflow.
        let big = usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        let c = t.cost("claude-opus-4-1", &big).expect("priced");
        assert!(c.is_finite() && c > 1e15);
        assert!(t.cost_micros("claude-opus-4-1", &big).is_some());
    }

    #[test]
    fn pattern_order() {
        let t = table();
        assert_eq!(
            t.price("claude-opus-4-1-20250805").map(|p| p.input),
            Some(15.0)
        );
        assert_eq!(t.price("claude-opus-4-5").map(|p| p.input), Some(5.0));
        assert_eq!(
            t.price("claude-3-5-haiku-latest").map(|p| p.input),
            Some(1.0)
        );
        assert_eq!(t.price("claude-haiku-4-5").map(|p| p.output), Some(5.0));
        // Same patterns, other order: the broad one shadows the specific one.
        let swapped = PriceTable::new(
            vec![
                spec("claude-opus-*", 5.0, 25.0, 6.25, 0.5),
                spec("claude-opus-4-1*", 15.0, 75.0, 18.75, 1.5),
            ],
            "USD".into(),
        )
        .expect("table");
        assert_eq!(
            swapped.price("claude-opus-4-1-20250805").map(|p| p.input),
            Some(5.0)
        );
    }

    #[test]
    fn unknown_model() {
        let t = table();
        assert_eq!(t.price("gpt-4o"), None);
        assert_eq!(t.cost("gpt-4o", &usage(1, 1, 1, 1)), None);
        assert_eq!(t.cost_micros("gpt-4o", &usage(1, 1, 1, 1)), None);
        assert_eq!(t.estimate("gpt-4o", 1, 1), None);
        let empty = PriceTable::new(vec![], "USD".into()).expect("table");
        assert!(empty.is_empty());
        assert_eq!(empty.cost("claude-sonnet-4", &Usage::default()), None);
    }

    #[test]
    fn estimate_is_worst_case() {
        let t = table();
        // Input at the cache-write rate (3.75 > 3), plus max_tokens of output.
        assert_eq!(t.estimate("claude-sonnet-4-5", 10_000, 1_000), Some(0.0525));
        let u = usage(0, 1_000, 10_000, 0);
        assert!(t.cost("claude-sonnet-4-5", &u) <= t.estimate("claude-sonnet-4-5", 10_000, 1_000));
        let micros = t.estimate_micros("claude-sonnet-4-5", 10_000, 1_000);
        assert!(t.cost_micros("claude-sonnet-4-5", &u) <= micros);
        assert_eq!(
            micros.map(|m| m as f64 / 1e6),
            t.estimate("claude-sonnet-4-5", 10_000, 1_000)
        );
        assert_eq!(t.estimate_micros("gpt-4o", 1, 1), None);
    }

    #[test]
    fn config_errors() {
        let one = |s: PriceSpec| PriceTable::new(vec![s], "USD".into());
        assert!(one(spec("m", -1.0, 0.0, 0.0, 0.0)).is_err());
        assert!(one(spec("m", f64::NAN, 0.0, 0.0, 0.0)).is_err());
        assert!(one(spec("m", 0.0, f64::INFINITY, 0.0, 0.0)).is_err());
        assert!(one(spec("m", 0.0, 0.0, 2e6, 0.0)).is_err());
        assert!(one(spec(" ", 1.0, 1.0, 1.0, 1.0)).is_err());
        assert!(PriceTable::new(vec![], " ".into()).is_err());
        let dup = PriceTable::new(
            vec![
                spec("a*", 1.0, 1.0, 1.0, 1.0),
                spec("a*", 2.0, 2.0, 2.0, 2.0),
            ],
            "USD".into(),
        );
        assert!(dup.unwrap_err().contains("twice"));
        let shadowed = PriceTable::new(
            vec![
                spec("*", 1.0, 1.0, 1.0, 1.0),
                spec("a*", 2.0, 2.0, 2.0, 2.0),
            ],
            "USD".into(),
        );
        assert!(shadowed.unwrap_err().contains("matches every model"));
    }

    #[test]
    fn spend_window_sums_and_expires() {
        let t0 = 1_700_000_070; // 30 s into a minute
        let mut w = SpendWindow::new(5);
        assert_eq!(w.minutes(), 5);
        w.add(t0, 1.0);
        w.add(t0 + 60, 2.0);
        w.add(t0 + 4 * 60, 4.0);
        assert_eq!(w.rate_over(t0 + 4 * 60), 7.0);
        // Minute t0 leaves the window once 5 minutes have started after it.
        assert_eq!(w.rate_over(t0 + 5 * 60), 6.0);
        assert_eq!(w.rate_over(t0 + 6 * 60), 4.0);
        assert_eq!(w.rate_over(t0 + 60 * 60), 0.0);
        // Ignored inputs.
        w.add(t0 + 4 * 60, -1.0);
        w.add(t0 + 4 * 60, f64::NAN);
        assert_eq!(w.rate_over(t0 + 4 * 60), 7.0);
        // A bucket is reused for a later minute, and a late cost for an expired minute
        // does not clobber it.
        w.add(t0 + 5 * 60, 8.0);
        w.add(t0, 100.0);
        assert_eq!(w.rate_over(t0 + 5 * 60), 14.0);
        // Time before the recorded minutes: nothing counted from the future.
        assert_eq!(w.rate_over(t0 - 3600), 0.0);
    }

    #[test]
    fn spend_window_episodes() {
        let t0 = 1_700_000_000;
        let mut w = SpendWindow::new(10);
        assert!(!w.alert(t0, 5.0));
        w.add(t0, 6.0);
        assert!(w.alert(t0, 5.0), "fires on crossing");
        assert!(w.in_episode());
        w.add(t0 + 30, 1.0);
        assert!(!w.alert(t0 + 30, 5.0), "once per episode");
        assert!(!w.alert(t0 + 120, 5.0));
        // Falls back under when the spend leaves the window: re-armed.
        assert!(!w.alert(t0 + 11 * 60, 5.0));
        assert!(!w.in_episode());
        w.add(t0 + 11 * 60, 5.5);
        assert!(w.alert(t0 + 11 * 60, 5.0), "new episode fires again");
        // Exactly at the threshold is not over it.
        let mut w = SpendWindow::new(1);
        w.add(t0, 5.0);
        assert!(!w.alert(t0, 5.0));
    }
}
