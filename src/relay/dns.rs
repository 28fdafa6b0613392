//! A small DNS cache. Pingora's `HttpPeer::new` resolves synchronously and panics on
//! failure, so sluice resolves endpoint hosts itself (async, cached) and hands Pingora a
//! `SocketAddr`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(30);

type Entries = HashMap<(String, u16), (Instant, Vec<SocketAddr>)>;

/// Resolved addresses per `host:port`, kept for 30 s.
#[derive(Default)]
pub struct DnsCache {
    entries: Mutex<Entries>,
    rr: AtomicUsize,
}

impl DnsCache {
    /// One address for `host:port` (rotating over the resolved set).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let cached = {
            let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&key)
                .filter(|(at, addrs)| at.elapsed() < TTL && !addrs.is_empty())
                .map(|(_, a)| a.clone())
        };
        let addrs = match cached {
            Some(a) => a,
            None => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no addresses"),
                    ));
                }
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(key, (Instant::now(), addrs.clone()));
                addrs
            }
        };
        let i = self.rr.fetch_add(1, Ordering::Relaxed);
        Ok(addrs[i % addrs.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_and_localhost() {
        let d = DnsCache::default();
        assert_eq!(
            d.resolve("127.0.0.1", 80).await.unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            d.resolve("::1", 80).await.unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(d.resolve("localhost", 81).await.unwrap().ip().is_loopback());
        assert!(d.resolve("no-such-host.invalid", 80).await.is_err());
    }
}
