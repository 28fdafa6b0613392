//! sluice — a gateway for the Anthropic Claude API on Pingora.
//!
//! Pure logic (`config`, `route`, `auth`, `sse`, `usage`, `peek`, `error`, `upstream`)
//! has no Pingora types and is tested beside the code; `proxy` (the `ProxyHttp` hooks),
//! `relay` (the upstream exchange), `admin` and `server` glue it to Pingora.

pub mod admin;
pub mod auth;
pub mod background;
pub mod cache;
pub mod config;
pub mod downstream;
pub mod error;
pub mod filter;
pub mod keygen;
pub mod limit;
pub mod mock;
pub mod nginx_import;
pub mod observe;
pub mod peek;
pub mod pricing;
pub mod proxy;
pub mod relay;
pub mod reload;
pub mod route;
pub mod server;
pub mod sse;
pub mod status;
pub mod tenant_auth;
pub mod upstream;
pub mod usage;
