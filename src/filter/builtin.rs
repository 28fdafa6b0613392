//! The built-in detectors, as one byte scan over the text.
//!
//! The scan only stops at ASCII digits, `+` and `@` (a 256-entry class table); every
//! candidate is validated in code. "Boundary" means: a neighbouring ASCII digit makes a
//! number part of a longer number (no match); letters, CJK and punctuation next to a
//! number are fine.
//!
//! * `cn_id_card`: a run of exactly 18 digits, or 17 digits followed by `X`/`x` (not
//!   followed by a digit); region code not starting with 0; birth date `YYYYMMDD` with
//!   1800 ≤ YYYY ≤ 2099 and a real month/day (leap years included); GB 11643 (ISO 7064
//!   MOD 11-2) check character.
//! * `cn_mobile`: `1[3-9]` + 9 digits as a run of exactly 11 digits; or with a prefix:
//!   `86` / `+86` directly (a 13-digit run `861…`), or followed by one space or dash
//!   (`+86 138…`, `86-138…`). The match includes the prefix.
//! * `bank_card`: 13–19 digits, Luhn-valid, first digit not 0; either one run of digits,
//!   or groups joined by single spaces or by single dashes (one separator kind per
//!   number), first group ≥ 4 digits, every other group ≥ 3 digits
//!   (`6222 0212 3456 7890 128`, `4111-1111-1111-1111`, `3782 822463 10005`). When a
//!   longer chain of groups is not a card, the longest valid card starting at a group
//!   is taken.
//! * `email`: `local@domain`: local part 1–64 chars of `[A-Za-z0-9._%+-]` (the whole
//!   run before `@`; a longer run is no address); domain = dot-separated labels of
//!   `[A-Za-z0-9-]` (≤ 253 chars), the match ends at the last label that is ≥ 2 ASCII
//!   letters (`a@b.com.` → `a@b.com`).
//!
//! Streaming: with `eof == false` the text may continue, and the scan reports the first
//! start whose verdict depends on text not seen yet (a digit run, chain or `+86` prefix
//! touching the end; a trailing run of local-part chars that an `@` may still follow;
//! an address whose domain touches the end). Every verdict needs at most
//! [`Builtins::span`] chars from its start.

use super::{Cand, Src, PRIO_BANK, PRIO_EMAIL, PRIO_ID, PRIO_MOBILE};

const C_DIGIT: u8 = 1;
const C_PLUS: u8 = 2;
const C_AT: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = C_DIGIT;
        d += 1;
    }
    t[b'+' as usize] = C_PLUS;
    t[b'@' as usize] = C_AT;
    t
};

/// No card or ID is this long: a run of this many digits is never a match.
const LONG_RUN: usize = 20;
/// Longest local part of an address.
const MAX_LOCAL: usize = 64;
/// Longest domain of an address.
const MAX_DOMAIN: usize = 253;

/// Chars from a start that a verdict may need (match + look-ahead).
pub(crate) const ID_SPAN: usize = 19;
pub(crate) const MOBILE_SPAN: usize = 16;
pub(crate) const BANK_SPAN: usize = 28;
pub(crate) const EMAIL_SPAN: usize = MAX_LOCAL + 1 + MAX_DOMAIN + 2;

/// The verdict at a start needs more text.
struct Need;

/// Which built-ins are on, with their rule indices.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Builtins {
    pub id: Option<usize>,
    pub mobile: Option<usize>,
    pub bank: Option<usize>,
    pub email: Option<usize>,
}

/// Longest candidate at one start: (end, priority, rule).
#[derive(Default)]
struct Best(Option<(usize, u32, usize)>);

impl Best {
    fn offer(&mut self, end: usize, prio: u32, rule: usize) {
        match self.0 {
            Some((e, p, _)) if e > end || (e == end && p <= prio) => {}
            _ => self.0 = Some((end, prio, rule)),
        }
    }
}

impl Builtins {
    /// Chars a verdict may need from its start, over the enabled detectors.
    pub fn span(&self) -> usize {
        let mut s = 0;
        if self.id.is_some() {
            s = s.max(ID_SPAN);
        }
        if self.mobile.is_some() {
            s = s.max(MOBILE_SPAN);
        }
        if self.bank.is_some() {
            s = s.max(BANK_SPAN);
        }
        if self.email.is_some() {
            s = s.max(EMAIL_SPAN);
        }
        s
    }

    /// Pushes the candidates starting in `t[from..]` (the longest per start) and
    /// returns the first undetermined start (`t.len()` if none).
    pub fn scan(&self, t: &[u8], from: usize, eof: bool, out: &mut Vec<Cand>) -> usize {
        let n = t.len();
        let digits = self.id.is_some() || self.mobile.is_some() || self.bank.is_some();
        let mut mask = 0;
        if digits {
            mask |= C_DIGIT;
        }
        if self.mobile.is_some() {
            mask |= C_PLUS;
        }
        if self.email.is_some() {
            mask |= C_AT;
        }
        if mask == 0 {
            return n;
        }
        let mut u_digit = n;
        let mut u_email = n;
        let mut i = from;
        while i < n {
            let c = CLASS[t[i] as usize] & mask;
            if c == 0 {
                i = skip_plain(t, i + 1);
                continue;
            }
            if c == C_DIGIT {
                let seg_start = i == 0 || !t[i - 1].is_ascii_digit();
                if seg_start && u_digit == n && self.digits_at(t, i, eof, out).is_err() {
                    u_digit = i;
                }
                while i < n && t[i].is_ascii_digit() {
                    i += 1;
                }
                continue;
            }
            if c == C_PLUS {
                if u_digit == n && self.plus_at(t, i, eof, out).is_err() {
                    u_digit = i;
                }
            } else if let Err(start) = self.email_at(t, i, from, eof, out) {
                u_email = u_email.min(start);
            }
            i += 1;
        }
        if self.email.is_some() && !eof {
            // A trailing run of local-part chars may still be followed by `@`.
            let mut k = n;
            while k > 0 && is_local(t[k - 1]) && n - k <= MAX_LOCAL {
                k -= 1;
            }
            if k < n && n - k <= MAX_LOCAL && k >= from {
                u_email = u_email.min(k);
            }
        }
        u_digit.min(u_email)
    }

    /// Digit run starting at `i` (preceded by a non-digit).
    fn digits_at(&self, t: &[u8], i: usize, eof: bool, out: &mut Vec<Cand>) -> Result<(), Need> {
        let n = t.len();
        let j = digit_end(t, i, LONG_RUN);
        let l = j - i;
        if l >= LONG_RUN {
            return Ok(());
        }
        if j == n && !eof {
            return Err(Need);
        }
        let mut best = Best::default();
        if let Some(rule) = self.id {
            if let Some(end) = id_at(t, i, j, eof)? {
                best.offer(end, PRIO_ID, rule);
            }
        }
        if let Some(rule) = self.mobile {
            if let Some(end) = mobile_at(t, i, j, eof)? {
                best.offer(end, PRIO_MOBILE, rule);
            }
        }
        if let Some(rule) = self.bank {
            if let Some(end) = bank_at(t, i, j, eof)? {
                best.offer(end, PRIO_BANK, rule);
            }
        }
        if let Some((end, prio, rule)) = best.0 {
            out.push(Cand {
                start: i,
                end,
                prio,
                src: Src::Rule(rule),
            });
        }
        Ok(())
    }

    /// `+` at `p`: a `+86` mobile prefix?
    fn plus_at(&self, t: &[u8], p: usize, eof: bool, out: &mut Vec<Cand>) -> Result<(), Need> {
        let Some(rule) = self.mobile else {
            return Ok(());
        };
        let n = t.len();
        let rest = &t[p + 1..];
        if rest.len() < 2 {
            return if !eof && b"86".starts_with(rest) {
                Err(Need)
            } else {
                Ok(())
            };
        }
        if &rest[..2] != b"86" {
            return Ok(());
        }
        let i = p + 1;
        let j = digit_end(t, i, LONG_RUN);
        if j - i >= LONG_RUN {
            return Ok(());
        }
        if j == n && !eof {
            return Err(Need);
        }
        if let Some(end) = mobile_at(t, i, j, eof)? {
            out.push(Cand {
                start: p,
                end,
                prio: PRIO_MOBILE,
                src: Src::Rule(rule),
            });
        }
        Ok(())
    }

    /// `@` at `a`. `Err(start)`: undetermined address starting at `start`.
    fn email_at(
        &self,
        t: &[u8],
        a: usize,
        from: usize,
        eof: bool,
        out: &mut Vec<Cand>,
    ) -> Result<(), usize> {
        let Some(rule) = self.email else {
            return Ok(());
        };
        let n = t.len();
        let mut k = a;
        while k > 0 && is_local(t[k - 1]) && a - k <= MAX_LOCAL {
            k -= 1;
        }
        let local = a - k;
        if local == 0 || local > MAX_LOCAL || k < from {
            return Ok(());
        }
        let d0 = a + 1;
        let mut pos = d0;
        let mut labels = 0;
        let mut end = None;
        loop {
            let ls = pos;
            let mut alpha = true;
            while pos < n && is_label(t[pos]) && pos - d0 <= MAX_DOMAIN {
                alpha &= t[pos].is_ascii_alphabetic();
                pos += 1;
            }
            if pos - d0 > MAX_DOMAIN {
                return Ok(());
            }
            if pos == n && !eof {
                return Err(k);
            }
            if pos == ls {
                break;
            }
            labels += 1;
            if labels >= 2 && alpha && pos - ls >= 2 {
                end = Some(pos);
            }
            if pos < n && t[pos] == b'.' {
                if pos + 1 == n {
                    if !eof {
                        return Err(k);
                    }
                    break;
                }
                if is_label(t[pos + 1]) {
                    pos += 1;
                    continue;
                }
            }
            break;
        }
        if let Some(end) = end {
            out.push(Cand {
                start: k,
                end,
                prio: PRIO_EMAIL,
                src: Src::Rule(rule),
            });
        }
        Ok(())
    }
}

/// From `i`, skips 8 bytes at a time while none of them is in `+`..=`@` (which holds
/// the digits, `+` and `@`); returns a position at or before the next such byte.
fn skip_plain(t: &[u8], mut i: usize) -> usize {
    const L: u64 = 0x0101_0101_0101_0101;
    // Bytes b with 0x2A < b < 0x41 (high bit clear), exact per byte.
    const HI: u64 = L * (127 + 0x41);
    const LO: u64 = L * (127 - 0x2A);
    while let Some(w) = t.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        let y = x & (L * 127);
        let m = (HI - y) & !x & (y + LO) & (L * 128);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// End of the digit run at `i`, reading at most `cap` digits.
fn digit_end(t: &[u8], i: usize, cap: usize) -> usize {
    let mut j = i;
    let lim = t.len().min(i + cap);
    while j < lim && t[j].is_ascii_digit() {
        j += 1;
    }
    j
}

/// ID card at the run `t[i..j]` (`j < len` or eof).
fn id_at(t: &[u8], i: usize, j: usize, eof: bool) -> Result<Option<usize>, Need> {
    match j - i {
        18 => Ok(id_valid(&t[i..j]).then_some(j)),
        17 if matches!(t.get(j), Some(b'X' | b'x')) => match t.get(j + 1) {
            None if !eof => Err(Need),
            Some(d) if d.is_ascii_digit() => Ok(None),
            _ => Ok(id_valid(&t[i..j + 1]).then_some(j + 1)),
        },
        _ => Ok(None),
    }
}

/// 18 chars: 17 digits + check digit or X.
pub(crate) fn id_valid(s: &[u8]) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if s.len() != 18 || s[0] == b'0' || !s[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        s[r].iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1800..=2099).contains(&year) || !(1..=12).contains(&month) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days {
        return false;
    }
    let sum: u32 = s[..17]
        .iter()
        .zip(W)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = CHECK[(sum % 11) as usize];
    s[17].to_ascii_uppercase() == check
}

fn is_mobile(d: &[u8]) -> bool {
    d.len() == 11 && d[0] == b'1' && (b'3'..=b'9').contains(&d[1])
}

/// Mobile number at the run `t[i..j]` (`j < len` or eof).
fn mobile_at(t: &[u8], i: usize, j: usize, eof: bool) -> Result<Option<usize>, Need> {
    let d = &t[i..j];
    match d.len() {
        11 if is_mobile(d) => Ok(Some(j)),
        13 if d.starts_with(b"86") && is_mobile(&d[2..]) => Ok(Some(j)),
        2 if d == b"86" && matches!(t.get(j), Some(b' ' | b'-')) => {
            let k = j + 1;
            match t.get(k) {
                None if !eof => Err(Need),
                Some(c) if c.is_ascii_digit() => {
                    let e = digit_end(t, k, 12);
                    if e == t.len() && !eof && e - k < 12 {
                        return Err(Need);
                    }
                    Ok(is_mobile(&t[k..e]).then_some(e))
                }
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Bank card starting at the run `t[i..j]` (`j < len` or eof): the longest Luhn-valid
/// single run or chain of groups.
fn bank_at(t: &[u8], i: usize, j: usize, eof: bool) -> Result<Option<usize>, Need> {
    let l = j - i;
    if t[i] == b'0' {
        return Ok(None);
    }
    let mut ends = [0usize; 8];
    let mut count = 0;
    if (4..=16).contains(&l) {
        if let Some(&sep) = t.get(j).filter(|&&b| b == b' ' || b == b'-') {
            let mut total = l;
            let mut pos = j;
            while count < ends.len() {
                match t.get(pos) {
                    None if !eof => return Err(Need),
                    Some(&c) if c == sep => {}
                    _ => break,
                }
                let k = pos + 1;
                match t.get(k) {
                    None if !eof => return Err(Need),
                    Some(c) if c.is_ascii_digit() => {}
                    _ => break,
                }
                let cap = 19 - total + 1;
                let e = digit_end(t, k, cap);
                let g = e - k;
                if g >= cap {
                    break;
                }
                if e == t.len() && !eof {
                    return Err(Need);
                }
                if g < 3 {
                    break;
                }
                total += g;
                ends[count] = e;
                count += 1;
                pos = e;
            }
        }
    }
    for &e in ends[..count].iter().rev() {
        let digits = t[i..e].iter().filter(|b| b.is_ascii_digit()).count();
        if digits >= 13 && luhn(&t[i..e]) {
            return Ok(Some(e));
        }
    }
    Ok(((13..=19).contains(&l) && luhn(&t[i..j])).then_some(j))
}

/// Luhn check over the digits of `s` (other bytes skipped).
pub(crate) fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut dbl = false;
    for &b in s.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if dbl {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        dbl = !dbl;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Builtins {
        Builtins {
            id: Some(0),
            mobile: Some(1),
            bank: Some(2),
            email: Some(3),
        }
    }

    /// (matched text, rule) of a whole-text scan, after the leftmost-longest merge.
    fn found(text: &str) -> Vec<(String, usize)> {
        let mut c = Vec::new();
        let u = all().scan(text.as_bytes(), 0, true, &mut c);
        assert_eq!(u, text.len());
        crate::filter::select(&mut c);
        c.iter()
            .map(|c| {
                let Src::Rule(r) = c.src else { unreachable!() };
                (text[c.start..c.end].to_string(), r)
            })
            .collect()
    }

    fn one(text: &str, m: &str, rule: usize) {
        assert_eq!(found(text), vec![(m.to_string(), rule)], "{text}");
    }

    fn none(text: &str) {
        assert_eq!(found(text), vec![], "{text}");
    }

    #[test]
    fn id_card_checksum_and_date() {
        assert!(id_valid(b"11010519491231002X"));
        assert!(id_valid(b"11010519491231002x"));
        assert!(id_valid(b"440524188001010014"));
        assert!(!id_valid(b"110105194912310021")); // bad check digit
        assert!(!id_valid(b"110105194913310028")); // month 13
        assert!(!id_valid(b"110105190002290020")); // 1900 is not a leap year
        assert!(!id_valid(b"010105194912310021")); // region starting 0
    }

    #[test]
    fn id_card_in_text() {
        one("身份证号11010519491231002X请核对", "11010519491231002X", 0);
        one("id:440524188001010014.", "440524188001010014", 0);
        one("ID 11010519491231002x ok", "11010519491231002x", 0);
        // Inside a longer number, or followed by a digit after the X.
        none("1440524188001010014");
        none("4405241880010100145");
        none("11010519491231002X5");
        // Wrong checksum / length.
        none("身份证110105194912310021号");
        none("11010519491231002");
    }

    #[test]
    fn valid_id_is_not_also_a_card() {
        // 440524188001010014 happens to be Luhn-invalid; find an 18-digit valid ID that
        // is also Luhn-valid and check it is reported as an ID only.
        let mut found_one = false;
        for seq in 0..1000u32 {
            let body = format!("44052419900101{seq:03}");
            for check in b"0123456789X" {
                let mut s = body.clone().into_bytes();
                s.push(*check);
                if id_valid(&s) && luhn(&s) {
                    let txt = String::from_utf8(s).unwrap();
                    one(&format!("号码{txt}。"), &txt, 0);
                    found_one = true;
                }
            }
            if found_one {
                break;
            }
        }
        assert!(found_one);
    }

    #[test]
    fn mobile() {
        one("电话13812345678请回拨", "13812345678", 1);
        one("call +8613812345678 now", "+8613812345678", 1);
        one("call +86 13812345678 now", "+86 13812345678", 1);
        one("call +86-19912345678", "+86-19912345678", 1);
        one("call 86-15912345678.", "86-15912345678", 1);
        one("8613812345678", "8613812345678", 1);
        none("12812345678"); // second digit 2
        none("1381234567"); // 10 digits
        none("138123456789"); // 12 digits
        none("913812345678");
        one("+85 13812345678 ", "13812345678", 1);
    }

    #[test]
    fn bank_card() {
        one("卡号6222021234567890128转账", "6222021234567890128", 2);
        one("card 4111-1111-1111-1111 exp", "4111-1111-1111-1111", 2);
        one("card 4111 1111 1111 1111.", "4111 1111 1111 1111", 2);
        one(
            "卡号6222 0212 3456 7890 128。",
            "6222 0212 3456 7890 128",
            2,
        );
        one("amex 3782 822463 10005", "3782 822463 10005", 2);
        none("card 4111111111111112"); // Luhn
        none("card 41111111111111111111"); // too long
        none("card 4111 1111-1111 1111"); // mixed separators
        none("card 4111  1111 1111 1111"); // double space
        none("x 0000000000000 y"); // leading 0
                                   // Longer chain: the longest valid card starting at a group.
        one("4111 1111 1111 1111 12", "4111 1111 1111 1111", 2);
    }

    #[test]
    fn email() {
        one(
            "写信给 john.doe+x@example.com。",
            "john.doe+x@example.com",
            3,
        );
        one("邮箱abc@qq.com谢谢", "abc@qq.com", 3);
        one("mail a@b.co.uk.", "a@b.co.uk", 3);
        one("mail a@b.com.123", "a@b.com", 3);
        one("13812345678@qq.com", "13812345678@qq.com", 3);
        none("a@b");
        none("a@localhost");
        none("@example.com");
        none("a@b.c");
        none(&format!("{}@example.com", "x".repeat(65)));
    }

    #[test]
    fn skip_plain_stops_at_every_interesting_byte() {
        for b in 0..=255u8 {
            for pos in 0..20 {
                let mut v = vec![b'a'; 24];
                v[pos] = b;
                let stop = skip_plain(&v, 0);
                if (0x2B..=0x40).contains(&b) {
                    assert!(stop <= pos, "byte {b:#x} at {pos}: {stop}");
                } else {
                    assert!(stop > pos, "byte {b:#x} at {pos}: {stop}");
                }
            }
        }
    }

    #[test]
    fn streaming_verdicts() {
        let b = all();
        let scan = |t: &str| {
            let mut c = Vec::new();
            let u = b.scan(t.as_bytes(), 0, false, &mut c);
            (u, c.len())
        };
        assert_eq!(scan("电话1381234"), ("电话".len(), 0));
        assert_eq!(scan("电话13812345678"), ("电话".len(), 0));
        assert_eq!(scan("电话13812345678。"), ("电话13812345678。".len(), 1));
        assert_eq!(scan("价格很高。"), ("价格很高。".len(), 0));
        assert_eq!(scan("hello wor"), (6, 0));
        assert_eq!(scan("a +"), (2, 0));
        assert_eq!(scan("a +8"), (2, 0));
        assert_eq!(scan("a +7"), (2, 0));
        assert_eq!(scan("x 11010519491231002X"), (2, 0));
        // A run longer than any card is decided at once.
        let long = format!("数{}", "1".repeat(70));
        assert_eq!(scan(&long), (long.len(), 0));
    }
}
