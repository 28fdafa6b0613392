//! Content filters: PII redaction and banned words, for requests (raw JSON bodies)
//! and responses (SSE streams and non-streaming JSON).
//!
//! Pure logic — no Pingora types, no async. The pieces:
//!
//! * [`Redactor`]: compiled redaction rules. Built-ins ([`builtin_names`]) are found by
//!   a byte scan (digit runs, `+`, `@`) and validated in code (GB 11643 checksum, Luhn,
//!   dates, boundaries); custom rules are regexes (ASCII classes when the pattern allows
//!   it, see [`Redactor::new`]).
//! * [`BannedWords`]: Aho-Corasick over text folded to lower-case ASCII and half-width
//!   forms (`ＡＢＣ１２３` matches `abc123`, U+3000 matches a space).
//! * [`RequestFilter`]: a request body as raw JSON bytes — string values are decoded,
//!   filtered and, only if they changed, re-encoded in place; a banned word anywhere in
//!   the prose blocks the request ([`Blocked`]).
//! * [`StreamFilter`]: an upstream SSE byte stream in arbitrary chunks; text deltas are
//!   filtered with a minimal hold-back so a match split across deltas, chunks or UTF-8
//!   boundaries is still caught; every other event passes through byte for byte.
//! * [`filter_message_json`]: a non-streaming `message` response.
//! * [`filter_text`]: one text through a redactor and/or a masker — what the stream
//!   filter's output equals, delta by delta concatenated.
//!
//! Matches of all rules (and of the banned-word masker) are merged leftmost-longest: the
//! match that starts first wins, then the longer one, then the more specific rule
//! (`cn_id_card`, `cn_mobile`, `bank_card`, `email`, custom rules in list order, banned
//! words). An 18-digit number that is a valid ID-card number is therefore never also
//! counted as a bank card.

mod banned;
mod builtin;
mod json;
mod redact;
mod stream;

use std::sync::Arc;

pub use banned::BannedWords;
pub use json::{filter_message_json, Filtered, RequestFilter, SKIP_KEYS};
pub use redact::{builtin_names, Redactor, RuleSpec, DEFAULT_MAX_LEN, MAX_MAX_LEN};
pub use stream::{StreamFilter, MAX_EVENT_SIZE};

/// What a filter did with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Replaced by the redaction replacement (`filters.*.redact`).
    Redact,
    /// The request was refused (`filters.request.block`).
    Block,
    /// A banned word in a response was replaced (`filters.response.block`).
    Mask,
}

impl Action {
    /// Lower-case name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Block => "block",
            Action::Mask => "mask",
        }
    }
}

/// One match a filter acted on. Never carries the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index of the rule in the [`RuleSpec`] list given to [`Redactor::new`], or of
    /// the word in the list given to [`BannedWords::new`].
    pub rule: usize,
    /// The rule's name (`cn_id_card`, `employee_id`, …), or `banned_word`.
    pub name: Arc<str>,
    /// What was done.
    pub action: Action,
}

/// A banned word was found in a request: answer 400, forward nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Index of the word in the list given to [`BannedWords::new`] (never the text).
    pub word: usize,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request contains banned word #{}", self.word)
    }
}

impl std::error::Error for Blocked {}

/// Where a candidate match comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// A redaction rule (index into the rule list).
    Rule(usize),
    /// A banned word (index into the word list).
    Word(usize),
}

/// A candidate match: byte range in the scanned text, merge priority (lower wins on
/// equal spans) and source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cand {
    pub start: usize,
    pub end: usize,
    pub prio: u32,
    pub src: Src,
}

/// Merge priorities.
pub(crate) const PRIO_ID: u32 = 0;
pub(crate) const PRIO_MOBILE: u32 = 1;
pub(crate) const PRIO_BANK: u32 = 2;
pub(crate) const PRIO_EMAIL: u32 = 3;
pub(crate) const PRIO_CUSTOM: u32 = 16;
pub(crate) const PRIO_WORD: u32 = u32::MAX;

/// A redactor and/or a banned-word masker, borrowed: the unit every text goes through.
#[derive(Clone, Copy, Default)]
pub(crate) struct Filters<'a> {
    pub redactor: Option<&'a Redactor>,
    pub masker: Option<(&'a BannedWords, &'a str)>,
}

impl<'a> Filters<'a> {
    pub fn is_empty(&self) -> bool {
        self.redactor.is_none() && self.masker.is_none()
    }

    /// Hold-back bound in chars (see [`Redactor::window`]).
    pub fn window(&self) -> usize {
        let r = self.redactor.map_or(0, Redactor::window);
        let b = self.masker.map_or(0, |(b, _)| b.max_len());
        r.max(b)
    }

    /// Collects the candidates of every rule in `text[from..]` into `cands` (cleared
    /// first); `text[..from]` is context only (boundaries). Unless `eof`, the text may
    /// continue: the return value is the first position whose matches are not yet
    /// determined (every candidate kept starts before it); with `eof` it is
    /// `text.len()`.
    pub fn scan(&self, text: &str, from: usize, eof: bool, cands: &mut Vec<Cand>) -> usize {
        cands.clear();
        let mut u = text.len();
        if let Some(r) = self.redactor {
            u = u.min(r.scan(text, from, eof, cands));
        }
        if let Some((b, _)) = self.masker {
            u = u.min(b.scan(text, from, eof, cands));
        }
        cands.retain(|c| c.start < u);
        u
    }

    /// Filters a whole text; `None` if nothing matched.
    pub fn apply(&self, text: &str) -> Option<(String, Vec<Hit>)> {
        if self.is_empty() {
            return None;
        }
        let mut cands = Vec::new();
        self.scan(text, 0, true, &mut cands);
        if cands.is_empty() {
            return None;
        }
        select(&mut cands);
        let mut out = String::with_capacity(text.len());
        let mut hits = Vec::with_capacity(cands.len());
        self.render(text, 0, text.len(), &cands, &mut out, &mut hits);
        Some((out, hits))
    }

    /// The replacement text of a candidate.
    pub fn replacement(&self, src: Src) -> &'a str {
        match src {
            Src::Rule(_) => self.redactor.map_or("", Redactor::replacement),
            Src::Word(_) => self.masker.map_or("", |(_, r)| r),
        }
    }

    /// The hit record of a candidate.
    pub fn hit(&self, src: Src) -> Hit {
        match src {
            Src::Rule(i) => Hit {
                rule: i,
                name: self
                    .redactor
                    .map_or_else(|| Arc::from("redact"), |r| r.rule_name(i)),
                action: Action::Redact,
            },
            Src::Word(i) => Hit {
                rule: i,
                name: self
                    .masker
                    .map_or_else(|| Arc::from("banned_word"), |(b, _)| b.name()),
                action: Action::Mask,
            },
        }
    }

    /// Appends `text[from..to]` to `out` with the selected, non-overlapping candidates
    /// `sel` (sorted, inside `from..to`) replaced; records a hit for each.
    pub fn render(
        &self,
        text: &str,
        from: usize,
        to: usize,
        sel: &[Cand],
        out: &mut String,
        hits: &mut Vec<Hit>,
    ) {
        let mut pos = from;
        for c in sel {
            out.push_str(&text[pos..c.start]);
            out.push_str(self.replacement(c.src));
            hits.push(self.hit(c.src));
            pos = c.end;
        }
        out.push_str(&text[pos..to]);
    }
}

/// Keeps the leftmost-longest non-overlapping candidates (ties: lower priority value),
/// sorted by start.
pub(crate) fn select(cands: &mut Vec<Cand>) {
    if cands.len() > 1 {
        cands.sort_unstable_by_key(|c| (c.start, std::cmp::Reverse(c.end), c.prio));
    }
    let mut last_end = 0;
    let mut first = true;
    cands.retain(|c| {
        if first || c.start >= last_end {
            first = false;
            last_end = c.end;
            true
        } else {
            false
        }
    });
}

/// Filters one text with a redactor and/or a banned-word masker (`(words,
/// replacement)`), merging their matches leftmost-longest. `None` if nothing matched.
/// This is what [`StreamFilter`] produces for a content block, whatever the chunking.
pub fn filter_text(
    text: &str,
    redactor: Option<&Redactor>,
    masker: Option<(&BannedWords, &str)>,
) -> Option<(String, Vec<Hit>)> {
    Filters { redactor, masker }.apply(text)
}

#[cfg(test)]
mod tests;
