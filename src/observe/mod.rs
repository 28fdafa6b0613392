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
    let n: u128 = rand::random();
    format!("req_{:024x}", n >> 32)
}

/// `Server-Timing: sluice;dur=…, upstream;dur=…` (milliseconds, 3 decimals).
pub fn server_timing(sluice: std::time::Duration, upstream: std::time::Duration) -> String {
    format!(
        "sluice;dur={:.3}, upstream;dur={:.3}",
        sluice.as_secs_f64() * 1000.0,
        upstream.as_secs_f64() * 1000.0
    )
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
    }
}
