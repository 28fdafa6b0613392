//! The client's address: the TCP peer, or — when the peer is a trusted proxy — the
//! right-most address in `X-Forwarded-For` that is not itself a trusted proxy.

use ipnet::IpNet;
use std::net::IpAddr;

/// Resolve the client address.
pub fn client_ip(peer: Option<IpAddr>, xff: Option<&[u8]>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(xff) = xff.and_then(|v| std::str::from_utf8(v).ok()) else {
        return Some(peer);
    };
    let mut last_trusted = peer;
    for part in xff.rsplit(',') {
        let Some(ip) = parse_hop(part.trim()) else {
            // Garbage in the chain: stop at the last address we could vouch for.
            return Some(last_trusted);
        };
        if !is_trusted(&ip) {
            return Some(ip);
        }
        last_trusted = ip;
    }
    Some(last_trusted)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn resolution() {
        let t = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // untrusted peer: XFF ignored
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some(b"1.1.1.1"), &t),
            ip("203.0.113.9")
        );
        // trusted peer, no XFF
        assert_eq!(client_ip(ip("127.0.0.1"), None, &t), ip("127.0.0.1"));
        // trusted peer: right-most untrusted hop wins (spoofed left entries ignored)
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                Some(b"6.6.6.6, 198.51.100.7, 10.1.1.1"),
                &t
            ),
            ip("198.51.100.7")
        );
        // all hops trusted: the left-most one
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(b"10.2.2.2, 10.1.1.1"), &t),
            ip("10.2.2.2")
        );
        // garbage stops the walk
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(b"1.1.1.1, nonsense"), &t),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(b"[2001:db8::1]:443"), &t),
            ip("2001:db8::1")
        );
        assert_eq!(client_ip(None, None, &t), None);
    }
}
