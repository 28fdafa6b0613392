//! The client side of an exchange. The gateway (`proxy`, `relay`) is written against
//! the [`Downstream`] trait, implemented twice:
//!
//! - [`h1::H1Session`]: sluice's own HTTP/1.x server session (`h1`, `wire`), which every
//!   HTTP/1.x connection uses — it parses the head with `httparse`, reads and writes
//!   the connection directly and keeps it alive between requests;
//! - Pingora's `proxy::Session`, for HTTP/2 connections (TLS listeners offering `h2` by
//!   ALPN), served through Pingora's `HttpProxy` and the `ProxyHttp` hooks.
//!
//! [`app::Frontend`] is the Pingora `ServerApp` that picks one per connection.

pub mod app;
pub mod h1;
pub mod wire;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use std::future::Future;
use std::net::IpAddr;

/// What the gateway needs from a client connection for one request.
pub trait Downstream: Send + Sync {
    /// The request head.
    fn req_header(&self) -> &RequestHeader;
    /// The next piece of the request body; `None` at its end.
    fn read_request_body(&mut self) -> impl Future<Output = pingora::Result<Option<Bytes>>> + Send;
    /// Send the response head (once; later calls are ignored). `end`: there is no body.
    fn write_response_header(
        &mut self,
        resp: Box<ResponseHeader>,
        end: bool,
    ) -> impl Future<Output = pingora::Result<()>> + Send;
    /// Send a piece of the response body (now, not buffered); `end` finishes it.
    fn write_response_body(
        &mut self,
        body: Option<Bytes>,
        end: bool,
    ) -> impl Future<Output = pingora::Result<()>> + Send;
    /// Whether the response head was sent.
    fn response_written(&self) -> bool;
    /// Keep the connection for another request for this many seconds of idleness after
    /// this one (`None`: close it after this response).
    fn set_keepalive(&mut self, seconds: Option<u64>);
    /// Resolves when the client closes its connection (or resets its stream); never
    /// otherwise. Bytes the client sends meanwhile (a pipelined request) are kept.
    fn client_gone(&mut self) -> impl Future<Output = ()> + Send;
    /// The client's address (the TCP peer).
    fn client_ip(&self) -> Option<IpAddr>;
    /// The local port the connection arrived on (to find its listener's settings).
    fn local_port(&self) -> Option<u16>;
    /// The process is shutting down: do not keep the connection.
    fn shutting_down(&self) -> bool;
}

impl Downstream for pingora::proxy::Session {
    fn req_header(&self) -> &RequestHeader {
        self.as_downstream().req_header()
    }

    async fn read_request_body(&mut self) -> pingora::Result<Option<Bytes>> {
        self.as_downstream_mut().read_request_body().await
    }

    async fn write_response_header(
        &mut self,
        resp: Box<ResponseHeader>,
        end: bool,
    ) -> pingora::Result<()> {
        pingora::proxy::Session::write_response_header(self, resp, end).await
    }

    async fn write_response_body(&mut self, body: Option<Bytes>, end: bool) -> pingora::Result<()> {
        pingora::proxy::Session::write_response_body(self, body, end).await
    }

    fn response_written(&self) -> bool {
        self.as_downstream().response_written().is_some()
    }

    fn set_keepalive(&mut self, seconds: Option<u64>) {
        self.as_downstream_mut().set_keepalive(seconds)
    }

    async fn client_gone(&mut self) {
        loop {
            match self.as_downstream_mut().read_body_or_idle(true).await {
                Err(_) => return,
                Ok(Some(_)) => continue,
                Ok(None) => std::future::pending::<()>().await,
            }
        }
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.as_downstream()
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    fn local_port(&self) -> Option<u16> {
        self.as_downstream()
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port())
    }

    fn shutting_down(&self) -> bool {
        self.is_process_shutting_down()
    }
}
