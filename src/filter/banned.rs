//! Banned words: Aho-Corasick over folded text.
//!
//! Folding (applied to the words and to every text): ASCII letters to lower case;
//! full-width forms U+FF01–U+FF5E to their ASCII counterparts (`ＡＢＣ１２３！` →
//! `abc123!`, and the Chinese full-width comma `，` → `,`); the ideographic space U+3000
//! to a space. Each folded char stands for exactly one original char, so positions map
//! back exactly. Non-ASCII letters are compared as they are (no Unicode case folding).

use std::path::Path;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memchr2;

use super::{Cand, Filters, Hit, Src, PRIO_WORD};

/// A banned-word list, compiled.
#[derive(Debug, Clone)]
pub struct BannedWords {
    ac: AhoCorasick,
    /// Folded words, sorted and deduplicated (prefix look-ups for streaming).
    sorted: Vec<Vec<u8>>,
    /// First bytes of the folded words longer than one byte (bitmap).
    first: [u64; 4],
    /// First two bytes of the folded words longer than two bytes (bitmap).
    pair: Box<[u64]>,
    /// Longest word, in chars.
    max_len: usize,
    count: usize,
    name: Arc<str>,
}

/// A fold buffer and its shift table.
type FoldBufs = (Vec<u8>, Vec<(usize, usize)>);

thread_local! {
    /// Fold buffers reused across calls.
    static FOLD: std::cell::RefCell<FoldBufs> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn bit(map: &[u64], i: usize) -> bool {
    map.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(map: &mut [u64], i: usize) {
    if let Some(w) = map.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

impl BannedWords {
    /// Compiles a word list. Leading/trailing whitespace of a word is ignored; an
    /// empty word is an error (it would match everywhere).
    pub fn new(words: &[String]) -> Result<BannedWords, String> {
        if words.is_empty() {
            return Err("banned word list is empty".to_string());
        }
        let mut folded = Vec::with_capacity(words.len());
        let mut max_len = 0;
        for (i, w) in words.iter().enumerate() {
            let w = w.trim();
            if w.is_empty() {
                return Err(format!("banned word #{i} is empty"));
            }
            let mut f = Vec::new();
            fold(w, &mut f, &mut Vec::new());
            max_len = max_len.max(w.chars().count());
            folded.push(f);
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&folded)
            .map_err(|e| format!("banned words: {e}"))?;
        let mut sorted = folded;
        sorted.sort_unstable();
        sorted.dedup();
        let mut first = [0u64; 4];
        let mut pair = vec![0u64; 1024].into_boxed_slice();
        for w in &sorted {
            if w.len() > 1 {
                set_bit(&mut first, usize::from(w[0]));
            }
            if w.len() > 2 {
                set_bit(&mut pair, usize::from(w[0]) << 8 | usize::from(w[1]));
            }
        }
        Ok(BannedWords {
            ac,
            sorted,
            first,
            pair,
            max_len,
            count: words.len(),
            name: Arc::from("banned_word"),
        })
    }

    /// Reads a word list: one word per line, `#` starts a comment line, blank lines
    /// are ignored, surrounding whitespace is trimmed.
    pub fn from_file(path: &Path) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(parse_list(&text))
    }

    /// Index of the word found first (leftmost) in `text`, if any.
    pub fn find(&self, text: &str) -> Option<usize> {
        let find = |f: &mut Vec<u8>, shifts: &mut Vec<(usize, usize)>| {
            fold(text, f, shifts);
            self.ac.find(&f[..]).map(|m| m.pattern().as_usize())
        };
        FOLD.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (f, shifts) = &mut *bufs;
                let r = find(f, shifts);
                if f.capacity() > 1 << 20 {
                    *f = Vec::new();
                    *shifts = Vec::new();
                }
                r
            }
            Err(_) => find(&mut Vec::new(), &mut Vec::new()),
        })
    }

    /// `text` with every banned word (leftmost-longest) replaced by `replacement`;
    /// `None` if there was none.
    pub fn mask(&self, text: &str, replacement: &str) -> Option<String> {
        self.mask_with_hits(text, replacement).map(|(s, _)| s)
    }

    /// Like [`mask`](Self::mask), with a [`Hit`] per masked word.
    pub fn mask_with_hits(&self, text: &str, replacement: &str) -> Option<(String, Vec<Hit>)> {
        Filters {
            redactor: None,
            masker: Some((self, replacement)),
        }
        .apply(text)
    }

    /// Longest word, in chars.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of words (the index space of [`Blocked`](super::Blocked) and [`Hit`]).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are no words (never, for a compiled list).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Candidates in `text[from..]`; see [`Filters::scan`]. Undetermined: the earliest
    /// suffix that is a proper prefix of a word.
    pub(crate) fn scan(&self, text: &str, from: usize, eof: bool, out: &mut Vec<Cand>) -> usize {
        FOLD.with(|cell| match cell.try_borrow_mut() {
            Ok(mut bufs) => {
                let (f, shifts) = &mut *bufs;
                let u = self.scan_with(text, from, eof, out, f, shifts);
                if f.capacity() > 1 << 20 {
                    *f = Vec::new();
                    *shifts = Vec::new();
                }
                u
            }
            Err(_) => self.scan_with(text, from, eof, out, &mut Vec::new(), &mut Vec::new()),
        })
    }

    fn scan_with(
        &self,
        text: &str,
        from: usize,
        eof: bool,
        out: &mut Vec<Cand>,
        f: &mut Vec<u8>,
        shifts: &mut Vec<(usize, usize)>,
    ) -> usize {
        fold(&text[from..], f, shifts);
        for m in self.ac.find_iter(&f[..]) {
            out.push(Cand {
                start: from + unfold(shifts, m.start()),
                end: from + unfold(shifts, m.end()),
                prio: PRIO_WORD,
                src: Src::Word(m.pattern().as_usize()),
            });
        }
        if eof || self.max_len < 2 {
            return text.len();
        }
        // The earliest of the last max_len - 1 folded chars.
        let mut k0 = f.len();
        let mut chars = 0;
        while k0 > 0 && chars + 1 < self.max_len {
            k0 -= 1;
            if f[k0] & 0xC0 != 0x80 {
                chars += 1;
            }
        }
        for k in k0..f.len() {
            if f[k] & 0xC0 != 0x80 && self.is_proper_prefix(&f[k..]) {
                return from + unfold(shifts, k);
            }
        }
        text.len()
    }

    /// Some word is longer than `p` and starts with it.
    fn is_proper_prefix(&self, p: &[u8]) -> bool {
        match p {
            [] => return false,
            [a] => {
                if !bit(&self.first, usize::from(*a)) {
                    return false;
                }
            }
            [a, b, ..] => {
                if !bit(&self.pair, usize::from(*a) << 8 | usize::from(*b)) {
                    return false;
                }
            }
        }
        let i = self.sorted.partition_point(|w| w.as_slice() < p);
        let mut rest = self.sorted[i..].iter();
        match rest.next() {
            Some(w) if w.as_slice() == p => rest.next().is_some_and(|w| w.starts_with(p)),
            Some(w) => w.starts_with(p),
            None => false,
        }
    }
}

/// One word per line; `#` comment lines and blank lines skipped; trimmed.
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Folds `text` into `out`. `shifts` records, after each folded 3-byte char, the
/// (folded, original) offsets; see [`unfold`].
pub(crate) fn fold(text: &str, out: &mut Vec<u8>, shifts: &mut Vec<(usize, usize)>) {
    out.clear();
    shifts.clear();
    let b = text.as_bytes();
    out.reserve(b.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(k) = memchr2(0xEF, 0xE3, &b[i..]) {
        let p = i + k;
        let folded = match (b[p], b.get(p + 1), b.get(p + 2)) {
            (0xEF, Some(0xBC), Some(&c @ 0x81..=0xBF)) => Some(c - 0x60),
            (0xEF, Some(0xBD), Some(&c @ 0x80..=0x9E)) => Some(c - 0x20),
            (0xE3, Some(0x80), Some(0x80)) => Some(b' '),
            _ => None,
        };
        match folded {
            Some(a) => {
                out.extend_from_slice(&b[last..p]);
                out.push(a);
                last = p + 3;
                shifts.push((out.len(), last));
                i = p + 3;
            }
            None => i = p + 1,
        }
    }
    out.extend_from_slice(&b[last..]);
    out.make_ascii_lowercase();
}

/// Original offset of folded offset `f`.
pub(crate) fn unfold(shifts: &[(usize, usize)], f: usize) -> usize {
    let i = shifts.partition_point(|s| s.0 <= f);
    match i {
        0 => f,
        _ => {
            let (fs, os) = shifts[i - 1];
            os + (f - fs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> BannedWords {
        BannedWords::new(&ws.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn fold_maps_fullwidth_and_case() {
        let mut f = Vec::new();
        let mut s = Vec::new();
        fold("ＡＢＣ１２３\u{3000}Xy，好", &mut f, &mut s);
        assert_eq!(std::str::from_utf8(&f).unwrap(), "abc123 xy,好");
        let orig = "ＡＢＣ１２３\u{3000}Xy，好";
        // Every folded char boundary maps to an original char boundary.
        let fs = std::str::from_utf8(&f).unwrap();
        for (k, _) in fs.char_indices() {
            assert!(orig.is_char_boundary(unfold(&s, k)));
        }
        assert_eq!(unfold(&s, f.len()), orig.len());
        assert_eq!(unfold(&s, 3), "ＡＢＣ".len());
    }

    #[test]
    fn find_is_case_and_width_insensitive() {
        let b = words(&["违禁词示例", "Bad Word", "abc123"]);
        assert_eq!(b.find("这里有违禁词示例。"), Some(0));
        assert_eq!(b.find("a BAD WORD here"), Some(1));
        assert_eq!(b.find("a ｂａｄ\u{3000}ｗｏｒｄ here"), Some(1));
        assert_eq!(b.find("ＡＢＣ１２３"), Some(2));
        assert_eq!(b.find("nothing bad"), None);
        assert_eq!(b.find(""), None);
    }

    #[test]
    fn empty_words_are_errors() {
        assert!(BannedWords::new(&[]).is_err());
        assert!(BannedWords::new(&["ok".into(), "  ".into()])
            .unwrap_err()
            .contains("#1"));
    }

    #[test]
    fn list_parsing() {
        assert_eq!(
            parse_list("# comment\n\n foo \r\nbar baz\n  # also comment\n"),
            vec!["foo", "bar baz"]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("filter_banned.txt");
        std::fs::write(&p, "a\n#b\n\nc\n").unwrap();
        assert_eq!(BannedWords::from_file(&p).unwrap(), vec!["a", "c"]);
        assert!(BannedWords::from_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn mask_replaces_original_span() {
        let b = words(&["abc", "违禁"]);
        assert_eq!(b.mask("xＡＢＣy违禁z", "*").unwrap(), "x*y*z");
        assert_eq!(b.mask("clean", "*"), None);
        let (_, hits) = b.mask_with_hits("abc abc", "*").unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].action, crate::filter::Action::Mask);
    }

    #[test]
    fn streaming_prefix_hold() {
        let b = words(&["abcd", "ab", "违禁词"]);
        let u = |t: &str| {
            let mut c = Vec::new();
            b.scan(t, 0, false, &mut c)
        };
        assert_eq!(u("xx"), 2);
        assert_eq!(u("xxa"), 2);
        assert_eq!(u("xxab"), 2); // "ab" may still grow into "abcd"
        assert_eq!(u("xxabc"), 2);
        assert_eq!(u("xxabd"), 5);
        assert_eq!(u("说违禁"), "说".len());
        assert_eq!(u("说违"), "说".len());
        assert_eq!(u("xxＡ"), 2);
    }
}
