//! Configuration: the YAML schema (`schema`), humane units (`units`), source positions
//! (`locate`), and the runtime [`Config`] built once per load. A load either yields a
//! complete, validated `Config` or every problem found, each as `FILE:LINE:COL: message`.

pub mod locate;
pub mod schema;
pub mod units;

use crate::auth::{hash_key, Tenant, TenantTable};
use crate::route::{Route, RouteTable};
use crate::upstream::{
    BreakerConfig, Cooldown, CooldownPolicy, Endpoint, KeyPool, RetryPolicy, Secret, Timeouts,
    Upstream, UpstreamKey,
};
use locate::{Locator, Path as YPath};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A listening address with its socket and keepalive settings.
#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tcp_keepalive: Option<Duration>,
    pub fastopen: Option<usize>,
    pub reuseport: Option<bool>,
    pub keepalive_idle: Duration,
    pub keepalive_max_requests: u32,
    /// `(cert, key)` PEM paths when this listener terminates TLS.
    pub tls: Option<(String, String)>,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
}

/// Process-level settings (mapped onto Pingora's `ServerConf`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub error_log: Option<String>,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// Compiled content filters.
#[derive(Default)]
pub struct FilterSet {
    /// Request redaction and banned words (`None` = off).
    pub request: Option<Arc<crate::filter::RequestFilter>>,
    pub response_redactor: Option<Arc<crate::filter::Redactor>>,
    /// Banned words masked in responses, with their replacement.
    pub response_masker: Option<(Arc<crate::filter::BannedWords>, String)>,
}

impl FilterSet {
    pub fn response_enabled(&self) -> bool {
        self.response_redactor.is_some() || self.response_masker.is_some()
    }

    /// The response side, cheaply cloned for one request.
    pub fn clone_response(&self) -> ResponseFilters {
        ResponseFilters {
            redactor: self.response_redactor.clone(),
            masker: self.response_masker.clone(),
        }
    }
}

/// The response filters of one request.
pub struct ResponseFilters {
    pub redactor: Option<Arc<crate::filter::Redactor>>,
    pub masker: Option<(Arc<crate::filter::BannedWords>, String)>,
}

impl ResponseFilters {
    pub fn enabled(&self) -> bool {
        self.redactor.is_some() || self.masker.is_some()
    }
}

impl std::fmt::Debug for FilterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterSet")
            .field("request", &self.request.is_some())
            .field("response_redactor", &self.response_redactor.is_some())
            .field("response_masker", &self.response_masker.is_some())
            .finish()
    }
}

/// The audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConf {
    pub target: LogTarget,
    pub bodies: bool,
    pub rotation: crate::observe::log_writer::Rotation,
}

/// The runtime configuration: everything validated, compiled and resolved.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub loaded_at: SystemTime,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub routes: RouteTable,
    pub max_body: u64,
    /// `Some(url)` when limiter state is shared through Redis.
    pub redis: Option<String>,
    /// The pre-auth guard by client address.
    pub client_ip_limit: Option<crate::limit::Gcra>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tenants: TenantTable,
    pub access_log: LogTarget,
    pub audit: Option<AuditConf>,
    pub filters: FilterSet,
    pub cache: crate::cache::CacheSettings,
    /// Trusted JWT issuers.
    pub jwt: Vec<crate::tenant_auth::jwt::JwtIssuer>,
    pub pricing: Option<crate::pricing::PriceTable>,
    /// Things that are allowed but worth a warning (printed by `-t`, logged at start).
    pub warnings: Vec<String>,
}

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: 1,
                col: 1,
                message: format!("cannot read config: {e}"),
            }])
        })?;
        Config::from_str(&text, path)
    }

    /// Parse and validate `text`, reporting positions against `path`.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let parsed: schema::File = match serde_yaml::from_str(text) {
            Ok(f) => f,
            Err(e) => return Err(ConfigErrors(vec![serde_error(&file, &e)])),
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut b = Builder {
            file,
            locator: Locator::new(text),
            errors: Vec::new(),
            warnings: Vec::new(),
            base,
            has_pricing: parsed.pricing.is_some(),
            pricing_catch_all: parsed
                .pricing
                .as_ref()
                .is_some_and(|p| p.models.iter().any(|m| m.model.trim() == "*")),
        };
        let cfg = b.build(parsed, path);
        if b.errors.is_empty() {
            Ok(cfg)
        } else {
            b.errors.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(b.errors))
        }
    }
}

fn serde_error(file: &str, e: &serde_yaml::Error) -> ConfigError {
    let mut message = e.to_string();
    // serde_yaml appends " at line L column C"; we print the position up front instead.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    ConfigError {
        file: file.to_string(),
        line,
        col,
        message,
    }
}

struct Builder {
    file: String,
    locator: Locator,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Relative `file:` secrets are resolved against the current directory first, then
    /// the config's directory.
    base: PathBuf,
    /// The file has a `pricing` table (spend quotas need one).
    has_pricing: bool,
    /// Its model patterns include the catch-all `*`.
    pricing_catch_all: bool,
}

impl Builder {
    fn err(&mut self, at: &YPath, message: impl Into<String>) {
        let pos = self.locator.find(at);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    fn warn(&mut self, at: &YPath, message: impl Into<String>) {
        let pos = self.locator.find(at);
        self.warnings.push(format!(
            "{}:{}:{}: warning: {}",
            self.file,
            pos.line,
            pos.col,
            message.into()
        ));
    }

    fn read_file_secret(&mut self, at: &YPath, p: &str) -> Option<String> {
        let mut candidates = vec![PathBuf::from(p)];
        if Path::new(p).is_relative() {
            candidates.push(self.base.join(p));
        }
        let mut last_err = None;
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(s) => {
                    let v = s.trim().to_string();
                    if v.is_empty() {
                        self.err(at, format!("secret file `{p}` is empty"));
                        return None;
                    }
                    return Some(v);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let e = last_err.map(|e| e.to_string()).unwrap_or_default();
        self.err(at, format!("cannot read secret file `{p}`: {e}"));
        None
    }

    /// Resolve an `{env: NAME}` / `{file: PATH}` secret.
    fn secret(
        &mut self,
        at: &YPath,
        env: &Option<String>,
        file: &Option<String>,
    ) -> Option<String> {
        match (env, file) {
            (Some(name), None) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                Ok(_) => {
                    self.err(
                        &at.key("env"),
                        format!("environment variable `{name}` is empty"),
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        &at.key("env"),
                        format!("environment variable `{name}` is not set"),
                    );
                    None
                }
            },
            (None, Some(p)) => self.read_file_secret(&at.key("file"), p),
            (Some(_), Some(_)) => {
                self.err(at, "give either `env` or `file`, not both");
                None
            }
            (None, None) => {
                self.err(
                    at,
                    "a secret needs `env: NAME` or `file: PATH` (secrets are never written inline)",
                );
                None
            }
        }
    }

    fn positive(&mut self, at: &YPath, d: Duration) -> Duration {
        if d.is_zero() {
            self.err(at, "must be greater than zero");
        }
        d
    }

    fn socket_addr(&mut self, at: &YPath, s: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    at,
                    format!("invalid address `{s}` (write IP:PORT, e.g. 0.0.0.0:8080)"),
                );
                None
            }
        }
    }

    fn build(&mut self, f: schema::File, path: &Path) -> Config {
        let root = YPath::root();

        // server
        let sp = root.key("server");
        if f.server.threads == 0 || f.server.threads > 1024 {
            self.err(&sp.key("threads"), "threads must be between 1 and 1024");
        }
        let server = ServerSettings {
            threads: f.server.threads.max(1),
            grace_period: f.server.grace_period.0,
            pid_file: f.server.pid_file.clone(),
            upgrade_sock: f.server.upgrade_sock.clone(),
            error_log: f.server.error_log.clone(),
        };

        // listeners
        let lp = root.key("listeners");
        if f.listeners.is_empty() {
            self.err(
                &lp,
                "at least one listener is needed (e.g. `listeners: [{addr: 0.0.0.0:8080}]`)",
            );
        }
        let mut listeners = Vec::new();
        for (i, l) in f.listeners.iter().enumerate() {
            let at = lp.idx(i);
            let Some(addr) = self.socket_addr(&at.key("addr"), &l.addr) else {
                continue;
            };
            if listeners.iter().any(|x: &Listener| x.addr == addr) {
                self.err(&at.key("addr"), format!("listener {addr} is listed twice"));
            }
            listeners.push(Listener {
                addr,
                tcp_keepalive: l.tcp.keepalive.map(|d| d.0),
                fastopen: l.tcp.fastopen,
                reuseport: l.tcp.reuseport,
                keepalive_idle: l.keepalive.idle.0,
                keepalive_max_requests: l.keepalive.max_requests,
                tls: l.tls.as_ref().map(|t| {
                    for (k, f) in [("cert", &t.cert), ("key", &t.key)] {
                        if let Err(e) = std::fs::read(f) {
                            self.err(&at.key("tls").key(k), format!("cannot read `{f}`: {e}"));
                        }
                    }
                    (t.cert.clone(), t.key.clone())
                }),
            });
        }

        // admin
        let admin = f.admin.as_ref().and_then(|a| {
            let at = root.key("admin");
            let addr = self.socket_addr(&at.key("addr"), &a.addr)?;
            if listeners.iter().any(|l| l.addr == addr) {
                self.err(
                    &at.key("addr"),
                    "the admin address must differ from the listeners",
                );
            }
            let token = match &a.token {
                Some(t) => self
                    .secret(&at.key("token"), &t.env, &t.file)
                    .map(Secret::new),
                None => None,
            };
            Some(Admin { addr, token })
        });

        // upstreams
        let up = root.key("upstreams");
        if f.upstreams.is_empty() {
            self.err(&up, "at least one upstream is needed");
        }
        let mut upstreams = Vec::new();
        let mut names = Vec::new();
        for (name, u) in &f.upstreams {
            let at = up.key(name);
            let mut endpoints = Vec::new();
            if u.endpoints.is_empty() {
                self.err(
                    &at.key("endpoints"),
                    "an upstream needs at least one endpoint",
                );
            }
            for (i, e) in u.endpoints.iter().enumerate() {
                match Endpoint::parse(&e.url) {
                    Ok(mut ep) => {
                        ep.backup = e.backup;
                        endpoints.push(ep)
                    }
                    Err(m) => self.err(&at.key("endpoints").idx(i).key("url"), m),
                }
            }
            if !u.endpoints.is_empty() && u.endpoints.iter().all(|e| e.backup) {
                self.err(
                    &at.key("endpoints"),
                    "every endpoint is `backup: true`: at least one must be a primary",
                );
            }
            let mut keys = Vec::new();
            for (i, k) in u.keys.iter().enumerate() {
                let kat = at.key("keys").idx(i);
                if k.weight == 0 {
                    self.err(&kat.key("weight"), "weight must be at least 1");
                }
                if let Some(v) = self.secret(&kat, &k.env, &k.file) {
                    if let Err(m) = check_header_value(&v) {
                        self.err(
                            &kat,
                            format!("upstream key is not a valid header value: {m}"),
                        );
                    }
                    keys.push(UpstreamKey::new(
                        k.id.clone().unwrap_or_else(|| format!("{name}-{i}")),
                        Secret::new(v),
                        k.weight.max(1),
                    ));
                }
            }
            if u.keys.is_empty() {
                self.warn(
                    &at,
                    format!(
                        "upstream `{name}` has no keys: requests are forwarded without credentials"
                    ),
                );
            }
            if !u.tls.verify {
                self.warn(&at.key("tls").key("verify"), "TLS certificate verification is OFF for this upstream: anyone on the path can read your traffic and keys");
            }
            if let Some(ca) = &u.tls.ca_file {
                if std::fs::metadata(ca).is_err() {
                    self.err(
                        &at.key("tls").key("ca_file"),
                        format!("cannot read CA file `{ca}`"),
                    );
                }
            }
            if let Err(m) = check_header_value(&u.anthropic_version) {
                self.err(&at.key("anthropic_version"), m);
            }
            let mut set_headers = Vec::new();
            for (k, v) in &u.set_headers {
                let hat = at.key("set_headers").key(k);
                let lower = k.to_ascii_lowercase();
                if http::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    self.err(&hat, format!("`{k}` is not a valid header name"));
                } else if matches!(
                    lower.as_str(),
                    "x-api-key"
                        | "authorization"
                        | "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                ) {
                    self.err(&hat, format!("`{k}` cannot be set here (credentials come from `keys`, framing headers from sluice)"));
                }
                if let Err(m) = check_header_value(v) {
                    self.err(&hat, m);
                }
                set_headers.push((lower, v.clone()));
            }
            let t = &u.timeouts;
            let tp = at.key("timeouts");
            let timeouts = Timeouts {
                connect: self.positive(&tp.key("connect"), t.connect.0),
                tls: self.positive(&tp.key("tls"), t.tls.0),
                first_byte: self.positive(&tp.key("first_byte"), t.first_byte.0),
                idle: self.positive(&tp.key("idle"), t.idle.0),
                total: self.positive(&tp.key("total"), t.total.0),
            };
            names.push(name.clone());
            let rt = at.key("retry");
            let mut retry = RetryPolicy {
                attempts: u.retry.attempts,
                backoff: u.retry.backoff.0,
                max_backoff: u.retry.max_backoff.0,
                ..Default::default()
            };
            if u.retry.attempts == 0 {
                self.err(
                    &rt.key("attempts"),
                    "attempts counts the first try too: at least 1",
                );
            }
            for (i, v) in u.retry.on.iter().enumerate() {
                let text = match v {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    _ => String::from("?"),
                };
                if let Err(m) = retry.add_on(&text) {
                    self.err(&rt.key("on").idx(i), m);
                }
            }
            let mut cooldown = CooldownPolicy::defaults();
            for (k, v) in &u.cooldown {
                let rule = if v.trim().eq_ignore_ascii_case("retry-after") {
                    Ok(Cooldown::RetryAfter {
                        fallback: std::time::Duration::from_secs(10),
                    })
                } else {
                    units::parse_duration(v).map(Cooldown::For)
                };
                match rule {
                    Ok(r) => {
                        if let Err(m) = cooldown.set(k, r) {
                            self.err(&at.key("cooldown").key(k), m);
                        }
                    }
                    Err(m) => self.err(&at.key("cooldown").key(k), m),
                }
            }
            let cb = &u.circuit_breaker;
            let breaker = cb.enabled.then(|| BreakerConfig {
                error_rate: cb.error_rate.0,
                window_ms: cb.window.0.as_millis() as u64,
                min_requests: cb.min_requests.max(1),
                open_for_ms: cb.open_for.0.as_millis() as u64,
            });
            let health_check = u.health_check.as_ref().map(|h| {
                if !h.path.starts_with('/') {
                    self.err(
                        &at.key("health_check").key("path"),
                        "health check path must start with /",
                    );
                }
                (
                    h.interval.0.max(std::time::Duration::from_millis(100)),
                    h.path.clone(),
                )
            });
            upstreams.push(Arc::new(Upstream::new(
                name.clone(),
                endpoints,
                KeyPool::new(keys),
                u.auth,
                u.anthropic_version.clone(),
                set_headers,
                timeouts,
                (u.pool.idle.0, u.pool.size),
                (u.tls.verify, u.tls.ca_file.clone()),
                u.http2,
                retry,
                cooldown,
                breaker,
                health_check,
            )));
        }

        // routes
        let rp = root.key("routes");
        if f.routes.is_empty() {
            self.err(&rp, "no routes: every request would be refused with 404");
        }
        let mut routes = Vec::new();
        for (i, r) in f.routes.iter().enumerate() {
            let at = rp.idx(i);
            if !r.path.starts_with('/') {
                self.err(
                    &at.key("path"),
                    format!("route path `{}` must start with /", r.path),
                );
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                if !matches!(
                    upper.as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
                ) {
                    self.err(
                        &at.key("methods").idx(j),
                        format!("unknown HTTP method `{m}`"),
                    );
                }
                methods.push(upper);
            }
            let upstream = match names.iter().position(|n| *n == r.upstream) {
                Some(i) => i,
                None => {
                    self.err(
                        &at.key("upstream"),
                        format!(
                            "route names unknown upstream `{}` (defined: {})",
                            r.upstream,
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    );
                    0
                }
            };
            routes.push(Route {
                path: r.path.clone(),
                prefix: r.prefix,
                methods,
                upstream,
                cache: r.cache,
            });
        }

        // state
        let redis = match f.state.as_deref().map(str::trim) {
            None | Some("memory") => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("unix://") => {
                Some(url.to_string())
            }
            Some(other) => {
                let shown = if other.contains('@') {
                    "(hidden)"
                } else {
                    other
                };
                self.err(
                    &root.key("state"),
                    format!("state must be `memory` or a redis://host:port/db URL, not `{shown}`"),
                );
                None
            }
        };

        // limits
        let lp = root.key("limits");
        if f.limits.max_body.0 == 0 {
            self.err(&lp.key("max_body"), "max_body must be greater than zero");
        }
        let client_ip_limit = f.limits.client_ip.as_ref().map(|c| {
            crate::limit::Gcra::requests(c.rate.count, c.rate.per.as_nanos() as u64, c.burst)
        });
        let mut trusted_proxies = Vec::new();
        for (i, c) in f.limits.trusted_proxies.iter().enumerate() {
            match parse_cidr(c) {
                Some(n) => trusted_proxies.push(n),
                None => self.err(
                    &lp.key("trusted_proxies").idx(i),
                    format!("invalid CIDR `{c}`"),
                ),
            }
        }
        let defaults = schema::TenantLimits {
            requests: f.limits.requests.clone(),
            tokens: f.limits.tokens.clone(),
            concurrency: f.limits.concurrency,
            quota: f.limits.quota.clone(),
        };

        // tenants
        let tp = root.key("tenants");
        let mut tenants = TenantTable::default();
        let mut seen_names: Vec<&str> = Vec::new();
        for (i, t) in f.tenants.iter().enumerate() {
            let at = tp.idx(i);
            if t.name.trim().is_empty() {
                self.err(&at.key("name"), "tenant name must not be empty");
            } else if seen_names.contains(&t.name.as_str()) {
                self.err(
                    &at.key("name"),
                    format!("tenant `{}` is defined twice", t.name),
                );
            }
            seen_names.push(&t.name);
            if t.keys.is_empty() && f.auth.jwt.is_empty() {
                self.err(
                    &at.key("keys"),
                    "a tenant needs at least one key (`sluice keygen --tenant NAME` makes one) or a JWT issuer in `auth.jwt`",
                );
            }
            let mut digests = Vec::new();
            for (j, k) in t.keys.iter().enumerate() {
                let kat = at.key("keys").idx(j);
                match (&k.sha256, &k.env, &k.file) {
                    (Some(h), None, None) => match hex::decode(h.trim()) {
                        Ok(b) if b.len() == 32 => {
                            let mut d = [0u8; 32];
                            d.copy_from_slice(&b);
                            digests.push(d);
                        }
                        _ => self.err(
                            &kat.key("sha256"),
                            "sha256 must be 64 hex characters (the output of `sluice keygen`)",
                        ),
                    },
                    (None, env, file) if env.is_some() || file.is_some() => {
                        if let Some(v) = self.secret(&kat, env, file) {
                            digests.push(hash_key(v.as_bytes()));
                        }
                    }
                    _ => self.err(
                        &kat,
                        "a tenant key needs exactly one of `sha256`, `env` or `file`",
                    ),
                }
            }
            let mut ip_allow = Vec::new();
            for (j, c) in t.ip_allow.iter().enumerate() {
                match parse_cidr(c) {
                    Some(n) => ip_allow.push(n),
                    None => self.err(
                        &at.key("ip_allow").idx(j),
                        format!("invalid CIDR `{c}` (write e.g. 203.0.113.0/24 or 10.1.2.3)"),
                    ),
                }
            }
            for (j, m) in t.models.iter().enumerate() {
                if m.trim().is_empty() {
                    self.err(&at.key("models").idx(j), "model pattern must not be empty");
                }
            }
            let limits = self.tenant_limits(&at.key("limits"), &lp, &t.limits, &defaults);
            let tenant = Tenant {
                name: t.name.clone(),
                biz: t.biz.clone(),
                ip_allow,
                models: t.models.clone(),
                limits,
                cache: t.cache,
                signing: t.signing.as_ref().and_then(|sg| {
                    let sat = at.key("signing");
                    let secret =
                        self.secret(&sat.key("secret"), &sg.secret.env, &sg.secret.file)?;
                    if sg.window.0.as_secs() == 0 {
                        self.err(&sat.key("window"), "window must be at least 1s");
                    }
                    Some((Secret::new(secret), sg.window.0.as_secs().max(1)))
                }),
                spend_alert: t.spend_alert.as_ref().map(|a| {
                    let minutes = (a.window.0.as_secs() / 60).clamp(1, 1440) as u32;
                    if a.rate.is_nan() || a.rate <= 0.0 {
                        self.err(
                            &at.key("spend_alert").key("rate"),
                            "rate must be greater than zero",
                        );
                    }
                    (a.rate, minutes)
                }),
            };
            if let Err(owner) = tenants.add(tenant, &digests) {
                self.err(
                    &at.key("keys"),
                    format!(
                        "a key of tenant `{}` is already used by tenant `{owner}`",
                        t.name
                    ),
                );
            }
        }
        if f.tenants.is_empty() {
            self.warn(&tp, "no tenants: every request will be refused with 401");
        }
        for (i, t) in f.tenants.iter().enumerate() {
            for (j, sub) in t.jwt_subjects.iter().enumerate() {
                if let Err(m) = tenants.add_subject(sub, &t.name) {
                    self.err(&tp.idx(i).key("jwt_subjects").idx(j), m);
                }
            }
        }

        // JWT issuers
        let mut jwt = Vec::new();
        for (i, j) in f.auth.jwt.iter().enumerate() {
            let at = root.key("auth").key("jwt").idx(i);
            use crate::tenant_auth::jwt::{JwtIssuer, JwtIssuerSpec, JwtKeySource};
            let k = &j.key;
            let key = match (&k.secret, &k.pem_file, &k.jwks_file) {
                (Some(sec), None, None) => self
                    .secret(&at.key("key").key("secret"), &sec.env, &sec.file)
                    .map(|v| JwtKeySource::HsSecret(v.into_bytes())),
                (None, Some(p), None) => match std::fs::read(p) {
                    Ok(pem) if j.algorithms.iter().any(|a| a == "ES256") => {
                        Some(JwtKeySource::EcPem(pem))
                    }
                    Ok(pem) => Some(JwtKeySource::RsaPem(pem)),
                    Err(e) => {
                        self.err(
                            &at.key("key").key("pem_file"),
                            format!("cannot read `{p}`: {e}"),
                        );
                        None
                    }
                },
                (None, None, Some(p)) => match std::fs::read_to_string(p) {
                    Ok(jwks) => Some(JwtKeySource::Jwks(jwks)),
                    Err(e) => {
                        self.err(
                            &at.key("key").key("jwks_file"),
                            format!("cannot read `{p}`: {e}"),
                        );
                        None
                    }
                },
                _ => {
                    self.err(
                        &at.key("key"),
                        "give exactly one of `secret`, `pem_file`, `jwks_file`",
                    );
                    None
                }
            };
            let Some(key) = key else { continue };
            let mut spec = JwtIssuerSpec::new(j.name.clone(), j.algorithms.clone(), key);
            spec.issuer = j.issuer.clone();
            spec.audience = j.audience.clone();
            spec.max_lifetime = j.max_lifetime.0;
            spec.leeway = j.leeway.0;
            spec.tenant_claim = j.tenant_claim.clone();
            match JwtIssuer::new(spec) {
                Ok(iss) => {
                    for skipped in iss.skipped_keys() {
                        self.warn(&at.key("key"), format!("JWKS key skipped: {skipped}"));
                    }
                    jwt.push(iss)
                }
                Err(m) => self.err(&at, m),
            }
        }

        // pricing
        let pricing = f.pricing.as_ref().and_then(|p| {
            let specs = p
                .models
                .iter()
                .map(|m| crate::pricing::PriceSpec {
                    model: m.model.clone(),
                    input: m.input,
                    output: m.output,
                    cache_write: m.cache_write,
                    cache_read: m.cache_read,
                })
                .collect();
            match crate::pricing::PriceTable::new(specs, p.currency.clone()) {
                Ok(t) => Some(t),
                Err(m) => {
                    self.err(&root.key("pricing"), m);
                    None
                }
            }
        });

        // filters
        let filters = self.filters(&root.key("filters"), &f.filters);

        // cache
        let c = &f.cache;
        if c.max_entries == 0 {
            self.err(
                &root.key("cache").key("max_entries"),
                "max_entries must be at least 1",
            );
        }
        if c.ttl.0.is_zero() {
            self.err(
                &root.key("cache").key("ttl"),
                "ttl must be greater than zero",
            );
        }
        let cache = crate::cache::CacheSettings {
            enabled: c.enabled,
            ttl: c.ttl.0,
            max_entries: c.max_entries.max(1),
            max_body: c.max_body.0 as usize,
            shared: c.shared,
            streams: c.streams,
        };

        // logging
        let lg = root.key("logging");
        let access_log = self.log_target(&lg.key("access").key("path"), &f.logging.access.path);
        let audit = f.logging.audit.as_ref().map(|a| {
            let at = lg.key("audit");
            let target = self.log_target(&at.key("path"), &a.path);
            if a.rotate.0 < 4096 {
                self.err(&at.key("rotate"), "rotate must be at least 4KiB");
            }
            if target == LogTarget::Stdout && a.bodies {
                self.warn(
                    &at.key("bodies"),
                    "audit bodies go to stdout, mixed with the access log",
                );
            }
            AuditConf {
                target,
                bodies: a.bodies,
                rotation: crate::observe::log_writer::Rotation {
                    max_bytes: a.rotate.0,
                    keep: a.keep,
                },
            }
        });

        Config {
            source: path.to_path_buf(),
            loaded_at: SystemTime::now(),
            server,
            listeners,
            admin,
            upstreams,
            routes: RouteTable { routes },
            max_body: f.limits.max_body.0,
            redis,
            client_ip_limit,
            trusted_proxies,
            tenants,
            access_log,
            audit,
            filters,
            cache,
            jwt,
            pricing,
            warnings: std::mem::take(&mut self.warnings),
        }
    }
}

impl Builder {
    fn rules(
        &mut self,
        at: &YPath,
        entries: &[schema::RedactEntry],
    ) -> Vec<crate::filter::RuleSpec> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e {
                schema::RedactEntry::Builtin(name) => {
                    if !crate::filter::builtin_names().contains(&name.as_str()) {
                        self.err(
                            &at.idx(i),
                            format!(
                                "unknown built-in filter `{name}` (built-ins: {}; or give {{name, pattern}})",
                                crate::filter::builtin_names().join(", ")
                            ),
                        );
                        continue;
                    }
                    out.push(crate::filter::RuleSpec {
                        name: name.clone(),
                        pattern: None,
                        max_len: None,
                    });
                }
                schema::RedactEntry::Custom {
                    name,
                    pattern,
                    max_len,
                } => out.push(crate::filter::RuleSpec {
                    name: name.clone(),
                    pattern: Some(pattern.clone()),
                    max_len: *max_len,
                }),
            }
        }
        out
    }

    fn words(&mut self, at: &YPath, b: &schema::BlockWords) -> Option<crate::filter::BannedWords> {
        let mut words = b.words.clone();
        if let Some(file) = &b.words_file {
            let p = if Path::new(file).is_relative() && !Path::new(file).exists() {
                self.base.join(file)
            } else {
                PathBuf::from(file)
            };
            match crate::filter::BannedWords::from_file(&p) {
                Ok(w) => words.extend(w),
                Err(m) => {
                    self.err(&at.key("words_file"), m);
                    return None;
                }
            }
        }
        if words.is_empty() {
            self.err(
                at,
                "block needs `words` and/or a `words_file` with at least one word",
            );
            return None;
        }
        match crate::filter::BannedWords::new(&words) {
            Ok(w) => Some(w),
            Err(m) => {
                self.err(&at.key("words"), m);
                None
            }
        }
    }

    fn filters(&mut self, at: &YPath, f: &schema::Filters) -> FilterSet {
        let mut set = FilterSet::default();
        if let Some(r) = &f.request {
            let rat = at.key("request");
            let rules = self.rules(&rat.key("redact"), &r.redact);
            let redactor = if rules.is_empty() {
                None
            } else {
                match crate::filter::Redactor::new(&rules, &r.replacement) {
                    Ok(red) => Some(red),
                    Err(m) => {
                        self.err(&rat.key("redact"), m);
                        None
                    }
                }
            };
            if r.block.as_ref().is_some_and(|b| b.replacement.is_some()) {
                self.err(&rat.key("block").key("replacement"), "request block refuses the request (400): `replacement` applies to filters.response.block only");
            }
            let banned = r
                .block
                .as_ref()
                .and_then(|b| self.words(&rat.key("block"), b));
            if redactor.is_some() || banned.is_some() {
                set.request = Some(Arc::new(crate::filter::RequestFilter::new(
                    redactor, banned,
                )));
            }
        }
        if let Some(r) = &f.response {
            let rat = at.key("response");
            let rules = self.rules(&rat.key("redact"), &r.redact);
            if !rules.is_empty() {
                match crate::filter::Redactor::new(&rules, &r.replacement) {
                    Ok(red) => set.response_redactor = Some(Arc::new(red)),
                    Err(m) => self.err(&rat.key("redact"), m),
                }
            }
            if let Some(b) = &r.block {
                if let Some(w) = self.words(&rat.key("block"), b) {
                    let repl = b.replacement.clone().unwrap_or_else(|| "[FILTERED]".into());
                    set.response_masker = Some((Arc::new(w), repl));
                }
            }
        }
        set
    }

    /// `stdout`, `off`, or a file whose directory exists.
    fn log_target(&mut self, at: &YPath, path: &str) -> LogTarget {
        match path {
            "stdout" | "-" => LogTarget::Stdout,
            "off" | "" => LogTarget::Off,
            p => {
                let pb = PathBuf::from(p);
                let parent = pb.parent().map(Path::to_path_buf).unwrap_or_default();
                if !parent.as_os_str().is_empty() && !parent.is_dir() {
                    self.err(
                        at,
                        format!("log directory `{}` does not exist", parent.display()),
                    );
                }
                LogTarget::File(pb)
            }
        }
    }

    /// A tenant's limits: its own settings, each falling back to the `limits` default.
    fn tenant_limits(
        &mut self,
        at: &YPath,
        defaults_at: &YPath,
        own: &schema::TenantLimits,
        defaults: &schema::TenantLimits,
    ) -> crate::limit::TenantLimits {
        use crate::limit::{Gcra, Quota, RequestLimit};
        let pick = |own_set: bool| {
            if own_set {
                at.clone()
            } else {
                defaults_at.clone()
            }
        };
        let requests = own
            .requests
            .as_ref()
            .or(defaults.requests.as_ref())
            .map(|r| RequestLimit {
                bucket: Gcra::requests(r.rate.count, r.rate.per.as_nanos() as u64, r.burst),
                delay: r.delay,
            });
        let tokens = match own.tokens.as_ref().or(defaults.tokens.as_ref()) {
            Some(t) => {
                let p = pick(own.tokens.is_some()).key("tokens").key("burst");
                let cap = t.burst.unwrap_or(t.rate.count);
                if cap == 0 {
                    self.err(&p, "token burst must be greater than zero");
                }
                Some(Gcra::tokens(
                    t.rate.count,
                    t.rate.per.as_nanos() as u64,
                    cap,
                ))
            }
            None => None,
        };
        let concurrency = own.concurrency.or(defaults.concurrency);
        if concurrency == Some(0) {
            let p = pick(own.concurrency.is_some()).key("concurrency");
            self.err(&p, "concurrency must be at least 1 (omit it for no cap)");
        }
        let quota = match own.quota.as_ref().or(defaults.quota.as_ref()) {
            Some(q) => {
                let p = pick(own.quota.is_some()).key("quota");
                if q.daily_requests == Some(0) || q.daily_tokens == Some(0) {
                    self.err(
                        &p,
                        "daily quotas must be greater than zero (omit them for no quota)",
                    );
                }
                let mut cost = |key: &str, v: Option<f64>| -> Option<u64> {
                    let v = v?;
                    if !(v.is_finite() && v > 0.0 && v <= MAX_COST_QUOTA) {
                        self.err(
                            &p.key(key),
                            format!(
                                "{key} must be a positive amount of at most {MAX_COST_QUOTA} (omit it for no spend quota)"
                            ),
                        );
                        return None;
                    }
                    if !self.has_pricing {
                        self.err(
                            &p.key(key),
                            format!("{key} needs a `pricing` table to turn tokens into money"),
                        );
                    }
                    Some((v * 1e6).round() as u64)
                };
                let daily_cost = cost("daily_cost", q.daily_cost);
                let monthly_cost = cost("monthly_cost", q.monthly_cost);
                if (daily_cost.is_some() || monthly_cost.is_some())
                    && self.has_pricing
                    && !self.pricing_catch_all
                {
                    self.warn(
                        &p,
                        "spend quota: models that match no `pricing` pattern cost nothing against it; add a catch-all `model: \"*\"` price to count them",
                    );
                }
                if q.daily_requests.is_none()
                    && q.daily_tokens.is_none()
                    && q.daily_cost.is_none()
                    && q.monthly_cost.is_none()
                {
                    self.err(
                        &p,
                        "a quota needs daily_requests, daily_tokens, daily_cost and/or monthly_cost",
                    );
                }
                let offset = match &q.utc_offset {
                    Some(o) => match units::parse_utc_offset(o) {
                        Ok(v) => v,
                        Err(m) => {
                            self.err(&p.key("utc_offset"), m);
                            0
                        }
                    },
                    None => 0,
                };
                Some(Quota {
                    daily_requests: q.daily_requests,
                    daily_tokens: q.daily_tokens,
                    daily_cost,
                    monthly_cost,
                    warn_at: q.warn_at.0,
                    utc_offset_secs: offset,
                })
            }
            None => None,
        };
        crate::limit::TenantLimits {
            requests,
            tokens,
            concurrency,
            quota,
        }
    }
}

/// The largest `daily_cost` / `monthly_cost` (kept in millionths in 64-bit counters).
const MAX_COST_QUOTA: f64 = 1e12;

fn check_header_value(v: &str) -> Result<(), String> {
    if v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err("value must be printable ASCII without line breaks".into())
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address (`10.1.2.3`, meaning /32 or /128).
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
}

#[cfg(test)]
mod tests;
