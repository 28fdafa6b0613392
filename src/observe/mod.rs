//! Request ids, Server-Timing, and the JSON access log.

pub mod access_log;
pub mod audit;
pub mod log_writer;
pub mod metrics;
pub mod usage_book;

/// The client's `x-request-id` if it is well-formed (1–128 of `[A-Za-z0-9._:-]`).
pub fn client_request_id(v: Option<&[u8]>) -> Option<String> {
    let v = v?;
    if v.is_empty()
        || v.len() > 128
        || !v
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return None;
    }
    // all bytes are ASCII, so this cannot fail
    std::str::from_utf8(v).ok().map(str::to_string)
}

/// A fresh request id: `req_` + 24 random hex digits (96 bits).
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random::<u128>() >> 32;
    let mut s = String::with_capacity(28);
    s.push_str("req_");
    for i in (0..24).rev() {
        s.push(HEX[((n >> (4 * i)) & 0xf) as usize] as char);
    }
    s
}

/// `Server-Timing: sluice;dur=…, upstream;dur=…` (milliseconds, 3 decimals).
pub fn server_timing(sluice: std::time::Duration, upstream: std::time::Duration) -> String {
    let mut s = String::with_capacity(48);
    s.push_str("sluice;dur=");
    push_ms3(&mut s, sluice);
    s.push_str(", upstream;dur=");
    push_ms3(&mut s, upstream);
    s
}

/// Milliseconds with 3 decimals (`{:.3}` of the float, rounded to the microsecond),
/// without float formatting.
fn push_ms3(s: &mut String, d: std::time::Duration) {
    use std::fmt::Write;
    let us = (d.as_nanos() + 500) / 1000;
    let _ = write!(s, "{}.{:03}", us / 1000, us % 1000);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(
            client_request_id(Some(b"abc-123_x.y:z")).as_deref(),
            Some("abc-123_x.y:z")
        );
        assert_eq!(client_request_id(Some(b"")), None);
        assert_eq!(client_request_id(Some(b"has space")), None);
        assert_eq!(client_request_id(Some("ünï".as_bytes())), None);
        assert_eq!(client_request_id(Some(&[b'a'; 129])), None);
        let a = new_request_id();
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("req_"));
        assert_ne!(a, new_request_id());
    }

    #[test]
    fn timing() {
        let s = server_timing(
            std::time::Duration::from_micros(420),
            std::time::Duration::from_millis(12),
        );
        assert_eq!(s, "sluice;dur=0.420, upstream;dur=12.000");
        for ns in [0u64, 1, 499, 501, 999_999, 1_234_567, 98_765_432_101] {
            let d = std::time::Duration::from_nanos(ns);
            let mut got = String::new();
            push_ms3(&mut got, d);
            let want = format!("{:.3}", ((ns + 500) / 1000) as f64 / 1000.0);
            assert_eq!(got, want, "{ns} ns");
        }
        let id = new_request_id();
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
