//! The Pingora `ServerApp` on every gateway listener. Pingora accepts the connection
//! (and terminates TLS); then:
//!
//! - HTTP/2 (ALPN `h2` on a TLS listener) goes to Pingora's `HttpProxy` with the
//!   [`H2Gateway`] hooks;
//! - everything else is HTTP/1.x, served here request after request with
//!   [`H1Session`] and [`Gateway::serve`].

use super::h1::{Conn, H1Session, Next};
use super::wire::RequestError;
use crate::error::GatewayError;
use crate::observe::metrics::METRICS;
use crate::observe::new_request_id;
use crate::proxy::{Gateway, H2Gateway};
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout as timeout;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// sluice's listener application.
pub struct Frontend {
    gateway: Arc<Gateway>,
    h2: Arc<HttpProxy<H2Gateway>>,
}

impl Frontend {
    pub fn new(gateway: Arc<Gateway>, h2: HttpProxy<H2Gateway>) -> Self {
        Frontend {
            gateway,
            h2: Arc::new(h2),
        }
    }

    /// Serve HTTP/1.x requests on `stream` until it closes or may not be kept.
    async fn serve_h1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let digest = stream.get_socket_digest();
        let client_ip = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let local_port = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let (mut idle, max_requests) = self.gateway.connection_limits(local_port);
        let mut conn = Conn::new(stream);
        let mut served: u32 = 0;
        loop {
            let head = match conn.next_request(idle, shutdown).await {
                Next::Request(h) => h,
                Next::Closed => return,
                Next::Refused(e) => return refuse(conn, &e).await,
            };
            served = served.saturating_add(1);
            let mut s = H1Session::new(conn, *head, client_ip, local_port, *shutdown.borrow());
            if max_requests > 0 && served >= max_requests {
                s.last_request();
            }
            self.gateway.serve(&mut s).await;
            match s.into_reusable() {
                Some((c, keepalive)) => {
                    conn = c;
                    idle = keepalive;
                }
                None => return,
            }
        }
    }
}

#[async_trait]
impl ServerApp for Frontend {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.h2, stream, shutdown).await;
        }
        self.serve_h1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.h2).await
    }
}

/// Answer a request head that cannot be accepted (Anthropic shape, `x-sluice-reason`),
/// then close the connection.
async fn refuse(mut conn: Conn, e: &RequestError) {
    let ge = match e {
        RequestError::HeadTooLarge => GatewayError::HeadTooLarge,
        RequestError::Malformed(_) => GatewayError::MalformedRequest(e.to_string()),
    };
    METRICS
        .rejections
        .with_label_values(&["", ge.reason()])
        .inc();
    let id = new_request_id();
    let body = ge.body(&id);
    let status = http::StatusCode::from_u16(ge.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let date = get_cached_date();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-sluice-reason: {}\r\nx-request-id: {id}\r\nrequest-id: {id}\r\ndate: {}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        ge.reason(),
        date.to_str().unwrap_or(""),
    );
    log::debug!("refused a request head: {e}");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(body.as_bytes());
    if conn.stream.write_all(&wire).await.is_err() || conn.stream.flush().await.is_err() {
        return;
    }
    // Lingering close: closing with unread bytes would make the kernel send a reset,
    // which can destroy the answer before the client reads it. Stop sending, then read
    // and discard what the client still sends, for a bounded time and amount.
    let _ = conn.stream.shutdown().await;
    let drain = async {
        let mut left = 1usize << 20;
        let mut sink = [0u8; 4096];
        while left > 0 {
            match conn.stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = timeout(LINGER, drain).await;
}

/// How long a refused connection is drained before it is closed.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
