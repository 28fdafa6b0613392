//! Redaction rules: built-ins plus custom regexes, compiled once per config load.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::builtin::Builtins;
use super::{Cand, Filters, Hit, Src, PRIO_CUSTOM};

/// Default `max_len` (chars) of a custom rule.
pub const DEFAULT_MAX_LEN: usize = 64;
/// Largest accepted `max_len` of a custom rule.
pub const MAX_MAX_LEN: usize = 4096;

const BUILTINS: &[&str] = &["cn_id_card", "bank_card", "cn_mobile", "email"];

/// Names of the built-in rules: `cn_id_card`, `bank_card`, `cn_mobile`, `email`.
pub fn builtin_names() -> &'static [&'static str] {
    BUILTINS
}

/// One entry of `filters.*.redact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Rule name: a built-in name when `pattern` is `None`, else a label for metrics.
    pub name: String,
    /// A custom regex; `None` selects the built-in called `name`.
    pub pattern: Option<String>,
    /// Longest text (in chars) the custom regex can match: the stream filter's
    /// hold-back for it. Default [`DEFAULT_MAX_LEN`], at most [`MAX_MAX_LEN`]. Ignored
    /// for built-ins (their lengths are fixed).
    pub max_len: Option<usize>,
}

impl RuleSpec {
    /// The built-in rule `name`.
    pub fn builtin(name: &str) -> Self {
        RuleSpec {
            name: name.to_string(),
            pattern: None,
            max_len: None,
        }
    }

    /// A custom regex rule.
    pub fn custom(name: &str, pattern: &str) -> Self {
        RuleSpec {
            name: name.to_string(),
            pattern: Some(pattern.to_string()),
            max_len: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Custom {
    rule: usize,
    re: Regex,
    max_len: usize,
}

/// Compiled redaction rules (built-ins + custom regexes) and their replacement.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<Arc<str>>,
    builtins: Builtins,
    customs: Vec<Custom>,
    replacement: String,
    window: usize,
}

impl Redactor {
    /// Compiles `rules`. Errors name the bad rule: an unknown built-in, a regex that
    /// does not compile or matches the empty string, a bad `max_len`.
    ///
    /// Custom patterns are compiled with Unicode classes off (`\d`, `\w`, `\s`, `\b` are
    /// ASCII — fast, and `\b` works next to CJK text) whenever the pattern allows it;
    /// a pattern that can only work Unicode-aware (`.`, negated classes, `\p{…}`) is
    /// compiled Unicode-aware. A built-in listed twice counts once (the first entry).
    pub fn new(rules: &[RuleSpec], replacement: &str) -> Result<Redactor, String> {
        let mut names = Vec::with_capacity(rules.len());
        let mut builtins = Builtins::default();
        let mut customs = Vec::new();
        for (i, spec) in rules.iter().enumerate() {
            names.push(Arc::from(spec.name.as_str()));
            match &spec.pattern {
                None => {
                    let slot = match spec.name.as_str() {
                        "cn_id_card" => &mut builtins.id,
                        "bank_card" => &mut builtins.bank,
                        "cn_mobile" => &mut builtins.mobile,
                        "email" => &mut builtins.email,
                        other => {
                            return Err(format!(
                                "redact rule #{i} `{other}`: unknown built-in (known: {}); give a `pattern` for a custom rule",
                                BUILTINS.join(", ")
                            ))
                        }
                    };
                    if slot.is_none() {
                        *slot = Some(i);
                    }
                }
                Some(pattern) => {
                    let max_len = spec.max_len.unwrap_or(DEFAULT_MAX_LEN);
                    if max_len == 0 || max_len > MAX_MAX_LEN {
                        return Err(format!(
                            "redact rule #{i} `{}`: max_len must be 1..={MAX_MAX_LEN}",
                            spec.name
                        ));
                    }
                    let re = compile(pattern)
                        .map_err(|e| format!("redact rule #{i} `{}`: {e}", spec.name))?;
                    if re.is_match("") {
                        return Err(format!(
                            "redact rule #{i} `{}`: pattern matches the empty string",
                            spec.name
                        ));
                    }
                    customs.push(Custom {
                        rule: i,
                        re,
                        max_len,
                    });
                }
            }
        }
        let window = customs
            .iter()
            .map(|c| c.max_len + 1)
            .max()
            .unwrap_or(0)
            .max(builtins.span());
        Ok(Redactor {
            names,
            builtins,
            customs,
            replacement: replacement.to_string(),
            window,
        })
    }

    /// Redacts one text. `None` if nothing matched (nothing is allocated then).
    pub fn redact(&self, text: &str) -> Option<(String, Vec<Hit>)> {
        Filters {
            redactor: Some(self),
            masker: None,
        }
        .apply(text)
    }

    /// The stream hold-back bound, in chars: the longest text a rule can match plus
    /// the look-ahead its verdict needs (built-ins: `cn_id_card` 19, `cn_mobile` 16,
    /// `bank_card` 28, `email` 320; custom rules: `max_len + 1`). The stream filter
    /// never holds more than this per content block.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The replacement text.
    pub fn replacement(&self) -> &str {
        &self.replacement
    }

    /// Number of rules (the `rule` index space of [`Hit`]).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True if there are no rules.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Name of rule `i`.
    pub(crate) fn rule_name(&self, i: usize) -> Arc<str> {
        self.names
            .get(i)
            .cloned()
            .unwrap_or_else(|| Arc::from("redact"))
    }

    /// Candidates of every rule in `text[from..]`; see [`Filters::scan`].
    pub(crate) fn scan(&self, text: &str, from: usize, eof: bool, out: &mut Vec<Cand>) -> usize {
        let mut u = self.builtins.scan(text.as_bytes(), from, eof, out);
        for c in &self.customs {
            u = u.min(scan_custom(c, text, from, eof, out));
        }
        u
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    match RegexBuilder::new(pattern).unicode(false).build() {
        Ok(re) => Ok(re),
        Err(_) => RegexBuilder::new(pattern).build(),
    }
}

/// Matches of one regex in `text[from..]`. A match is determined once `max_len + 1`
/// chars after its start are known and it does not touch the end of the text.
fn scan_custom(c: &Custom, text: &str, from: usize, eof: bool, out: &mut Vec<Cand>) -> usize {
    let n = text.len();
    // Starts before `det` have at least max_len + 1 chars after them.
    let det = if eof {
        n + 1
    } else {
        let mut det = from;
        for (count, (idx, ch)) in text[from..].char_indices().rev().enumerate() {
            if count == c.max_len {
                det = from + idx + ch.len_utf8();
                break;
            }
        }
        det
    };
    let mut pos = from;
    while pos <= n {
        let Some(m) = c.re.find_at(text, pos) else {
            break;
        };
        if m.start() >= det || (!eof && m.end() == n) {
            return m.start();
        }
        if m.start() == m.end() {
            // Empty matches are never candidates; step over one char.
            pos = match text[m.end()..].chars().next() {
                Some(ch) => m.end() + ch.len_utf8(),
                None => break,
            };
            continue;
        }
        out.push(Cand {
            start: m.start(),
            end: m.end(),
            prio: PRIO_CUSTOM.saturating_add(c.rule as u32),
            src: Src::Rule(c.rule),
        });
        pos = m.end();
    }
    if eof {
        n
    } else {
        det.min(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Redactor {
        Redactor::new(
            &[
                RuleSpec::builtin("cn_id_card"),
                RuleSpec::builtin("bank_card"),
                RuleSpec::builtin("cn_mobile"),
                RuleSpec::builtin("email"),
                RuleSpec::custom("employee_id", r"EMP-\d{6}"),
            ],
            "[REDACTED]",
        )
        .unwrap()
    }

    #[test]
    fn errors_name_the_rule() {
        let e = Redactor::new(&[RuleSpec::builtin("passport")], "x").unwrap_err();
        assert!(e.contains("passport") && e.contains("#0"), "{e}");
        let e = Redactor::new(
            &[RuleSpec::builtin("email"), RuleSpec::custom("bad", "a(")],
            "x",
        )
        .unwrap_err();
        assert!(e.contains("bad") && e.contains("#1"), "{e}");
        let e = Redactor::new(&[RuleSpec::custom("empty", "a*")], "x").unwrap_err();
        assert!(e.contains("empty string"), "{e}");
        let mut r = RuleSpec::custom("long", "a");
        r.max_len = Some(0);
        assert!(Redactor::new(&[r], "x").is_err());
    }

    #[test]
    fn redacts_all_kinds() {
        let r = all();
        let (out, hits) = r
            .redact("工号EMP-123456，身份证11010519491231002X，电话+86 13812345678，卡6222 0212 3456 7890 128，邮箱a.b@example.com。")
            .unwrap();
        assert_eq!(
            out,
            "工号[REDACTED]，身份证[REDACTED]，电话[REDACTED]，卡[REDACTED]，邮箱[REDACTED]。"
        );
        let names: Vec<&str> = hits.iter().map(|h| &*h.name).collect();
        assert_eq!(
            names,
            [
                "employee_id",
                "cn_id_card",
                "cn_mobile",
                "bank_card",
                "email"
            ]
        );
        assert_eq!(hits[0].rule, 4);
        assert!(hits
            .iter()
            .all(|h| h.action == crate::filter::Action::Redact));
    }

    #[test]
    fn clean_text_is_none() {
        let r = all();
        assert!(r.redact("").is_none());
        assert!(r.redact("你好，世界！Hello 2024 年 12 月。😀👍🏽").is_none());
        assert!(r.redact("EMP-12345 is short").is_none());
    }

    #[test]
    fn custom_regex_is_ascii_next_to_cjk() {
        let r = Redactor::new(&[RuleSpec::custom("emp", r"\bEMP-\d{6}\b")], "#").unwrap();
        assert_eq!(r.redact("工号EMP-123456请").unwrap().0, "工号#请");
        // Unicode-only pattern falls back to Unicode mode.
        let r = Redactor::new(&[RuleSpec::custom("any", r"密.码")], "#").unwrap();
        assert_eq!(r.redact("旧密Ａ码新").unwrap().0, "旧#新");
    }

    #[test]
    fn window() {
        assert_eq!(all().window(), 320);
        let r = Redactor::new(&[RuleSpec::builtin("cn_mobile")], "#").unwrap();
        assert_eq!(r.window(), 16);
        let mut spec = RuleSpec::custom("x", "x{3}");
        spec.max_len = Some(3);
        let r = Redactor::new(&[spec], "#").unwrap();
        assert_eq!(r.window(), 4);
        assert_eq!(builtin_names().len(), 4);
    }
}
