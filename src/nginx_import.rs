//! `sluice import-nginx FILE`: a starting sluice config translated from an nginx /
//! OpenResty front proxy for the Claude API.
//!
//! Two parts:
//!
//! * [`parse`]: a small tokenizer and parser for nginx syntax — directives
//!   (`name args…;`), blocks (`name args { … }`), `#` comments, single- and
//!   double-quoted strings with nginx's escapes, `${var}` inside words, and OpenResty's
//!   `*_by_lua_block { … }` whose body is Lua (kept raw, never parsed as nginx syntax).
//!   Every directive keeps the line it starts on.
//! * [`translate`]: walks the tree and builds the YAML by plain string building. Every
//!   directive ends up either translated, or named in a [`Warning`] (`warning` when
//!   something is lost or needs a decision, `info` when sluice does it anyway) — none is
//!   silently dropped.
//!
//! Secrets are never copied: an inline `x-api-key` / `Authorization` value becomes
//! `keys: [{env: ANTHROPIC_API_KEY}]` and a warning, warnings name directives but never
//! print the arguments of unknown ones (a `set $key sk-ant-…` stays out of the output),
//! and Lua code is inspected but never echoed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

// ---------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------

/// One nginx directive: `name args…;`, `name args… { children }`, or an OpenResty
/// `name args… { lua }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// 1-based line of the directive's name.
    pub line: usize,
    /// The children of a block directive.
    pub block: Option<Vec<Directive>>,
    /// The raw Lua code of a `*_by_lua_block { … }` (without the outer braces).
    pub lua: Option<String>,
}

/// The file is not valid nginx syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            s: text.as_bytes(),
            pos: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn err<T>(&self, line: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line,
            message: message.into(),
        })
    }

    /// The next token and the line it starts on.
    fn next(&mut self) -> Result<Option<(Tok, usize)>, ParseError> {
        loop {
            match self.peek() {
                None => return Ok(None),
                Some(c) if c.is_ascii_whitespace() => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some(_) => break,
            }
        }
        let line = self.line;
        let c = self.peek().unwrap_or(b' ');
        match c {
            b';' => {
                self.bump();
                Ok(Some((Tok::Semi, line)))
            }
            b'{' => {
                self.bump();
                Ok(Some((Tok::Open, line)))
            }
            b'}' => {
                self.bump();
                Ok(Some((Tok::Close, line)))
            }
            b'"' | b'\'' => {
                self.bump();
                let mut out = Vec::new();
                loop {
                    match self.bump() {
                        None => return self.err(line, "unterminated quoted string"),
                        Some(b'\\') => match self.bump() {
                            None => return self.err(line, "unterminated quoted string"),
                            Some(e) => unescape(e, &mut out),
                        },
                        Some(q) if q == c => break,
                        Some(o) => out.push(o),
                    }
                }
                match self.peek() {
                    None | Some(b';' | b'{' | b'}') => {}
                    Some(n) if n.is_ascii_whitespace() => {}
                    Some(_) => {
                        return self.err(
                            self.line,
                            "a quoted string must be followed by a space, `;` or `{`",
                        )
                    }
                }
                Ok(Some((Tok::Word(lossy(out)), line)))
            }
            _ => {
                let mut out = Vec::new();
                while let Some(c) = self.peek() {
                    if c.is_ascii_whitespace() || c == b';' || c == b'}' {
                        break;
                    }
                    if c == b'{' {
                        // `${var}` is a variable, not a block.
                        if out.last() == Some(&b'$') {
                            while let Some(v) = self.bump() {
                                out.push(v);
                                if v == b'}' {
                                    break;
                                }
                            }
                            continue;
                        }
                        break;
                    }
                    self.bump();
                    if c == b'\\' {
                        match self.bump() {
                            Some(e) => unescape(e, &mut out),
                            None => out.push(b'\\'),
                        }
                    } else {
                        out.push(c);
                    }
                }
                Ok(Some((Tok::Word(lossy(out)), line)))
            }
        }
    }

    /// After the `{` of a `*_by_lua_block`: the Lua code up to the matching `}`
    /// (Lua strings, long brackets and comments may hold braces).
    fn lua_block(&mut self, start: usize) -> Result<String, ParseError> {
        let begin = self.pos;
        let mut depth = 0usize;
        loop {
            let Some(c) = self.bump() else {
                return self.err(start, "unterminated Lua block (no matching `}`)");
            };
            match c {
                b'{' => depth += 1,
                b'}' => {
                    if depth == 0 {
                        let code = &self.s[begin..self.pos - 1];
                        return Ok(String::from_utf8_lossy(code).into_owned());
                    }
                    depth -= 1;
                }
                b'"' | b'\'' => loop {
                    match self.bump() {
                        None => return self.err(start, "unterminated string in Lua block"),
                        Some(b'\\') => {
                            self.bump();
                        }
                        Some(b'\n') => break, // unterminated on this line; Lua would fail
                        Some(q) if q == c => break,
                        Some(_) => {}
                    }
                },
                b'[' => {
                    if let Some(level) = self.long_bracket_open() {
                        self.long_bracket_close(level, start)?;
                    }
                }
                b'-' if self.peek() == Some(b'-') => {
                    self.bump();
                    if self.peek() == Some(b'[') {
                        self.bump();
                        if let Some(level) = self.long_bracket_open() {
                            self.long_bracket_close(level, start)?;
                            continue;
                        }
                    }
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => {}
            }
        }
    }

    /// After a `[`: if a Lua long bracket opens here (`[[`, `[==[`), consume it and
    /// return its level.
    fn long_bracket_open(&mut self) -> Option<usize> {
        let mut p = self.pos;
        let mut level = 0;
        while self.s.get(p) == Some(&b'=') {
            level += 1;
            p += 1;
        }
        if self.s.get(p) == Some(&b'[') {
            while self.pos <= p {
                self.bump();
            }
            Some(level)
        } else {
            None
        }
    }

    fn long_bracket_close(&mut self, level: usize, start: usize) -> Result<(), ParseError> {
        loop {
            match self.bump() {
                None => return self.err(start, "unterminated long string in Lua block"),
                Some(b']') => {
                    let mut p = self.pos;
                    let mut l = 0;
                    while self.s.get(p) == Some(&b'=') {
                        l += 1;
                        p += 1;
                    }
                    if l == level && self.s.get(p) == Some(&b']') {
                        while self.pos <= p {
                            self.bump();
                        }
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
        }
    }
}

fn unescape(e: u8, out: &mut Vec<u8>) {
    match e {
        b'"' | b'\'' | b'\\' => out.push(e),
        b't' => out.push(b'\t'),
        b'r' => out.push(b'\r'),
        b'n' => out.push(b'\n'),
        _ => {
            out.push(b'\\');
            out.push(e);
        }
    }
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn is_lua_block(name: &str) -> bool {
    name.ends_with("_by_lua_block")
}

/// Parse nginx configuration text into its directives.
pub fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
    let mut lx = Lexer::new(text);
    parse_block(&mut lx, None)
}

fn parse_block(lx: &mut Lexer, open: Option<usize>) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    loop {
        let Some((tok, line)) = lx.next()? else {
            return match open {
                Some(l) => lx.err(
                    l,
                    "unexpected end of file: the block opened here has no `}`",
                ),
                None => Ok(out),
            };
        };
        let name = match tok {
            Tok::Word(w) => w,
            Tok::Close => {
                return match open {
                    Some(_) => Ok(out),
                    None => lx.err(line, "unexpected `}`"),
                }
            }
            Tok::Semi => return lx.err(line, "unexpected `;`"),
            Tok::Open => return lx.err(line, "unexpected `{` (a block needs a name)"),
        };
        let mut args = Vec::new();
        loop {
            match lx.next()? {
                Some((Tok::Word(a), _)) => args.push(a),
                Some((Tok::Semi, _)) => {
                    out.push(Directive {
                        name,
                        args,
                        line,
                        block: None,
                        lua: None,
                    });
                    break;
                }
                Some((Tok::Open, l)) => {
                    if is_lua_block(&name) {
                        let code = lx.lua_block(l)?;
                        out.push(Directive {
                            name,
                            args,
                            line,
                            block: None,
                            lua: Some(code),
                        });
                    } else {
                        let children = parse_block(lx, Some(l))?;
                        out.push(Directive {
                            name,
                            args,
                            line,
                            block: Some(children),
                            lua: None,
                        });
                    }
                    break;
                }
                Some((Tok::Close, l)) => {
                    return lx.err(l, format!("unexpected `}}`: `{name}` needs a `;`"))
                }
                None => {
                    return lx.err(
                        line,
                        format!("unexpected end of file: `{name}` needs a `;`"),
                    )
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Warnings and results
// ---------------------------------------------------------------------------------

/// How much a warning matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something was not translated, or was translated approximately: review it.
    Warning,
    /// Not needed: sluice does this by itself.
    Info,
}

/// One note about the translation, tied to a line of the nginx file (0 = the file as a
/// whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub level: Level,
    pub message: String,
}

impl Warning {
    /// `FILE:LINE: warning: message` (or `info:`; `FILE: …` for whole-file notes).
    pub fn render(&self, file: &str) -> String {
        let level = match self.level {
            Level::Warning => "warning",
            Level::Info => "info",
        };
        if self.line == 0 {
            format!("{file}: {level}: {}", self.message)
        } else {
            format!("{file}:{}: {level}: {}", self.line, self.message)
        }
    }
}

/// The translation: the YAML text (ends with a newline) and the notes about it.
#[derive(Debug, Clone)]
pub struct Import {
    pub yaml: String,
    pub warnings: Vec<Warning>,
}

/// Read and translate `path`. The error is one line ready for stderr
/// (`FILE:LINE: error: …` or `FILE: error: …`).
pub fn import_file(path: &Path) -> Result<Import, String> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("{file}: error: cannot read: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    translate(&text).map_err(|e| format!("{file}:{}: error: {}", e.line, e.message))
}

/// Translate nginx configuration text.
pub fn translate(text: &str) -> Result<Import, ParseError> {
    let dirs = parse(text)?;
    let mut tr = Tr::default();
    tr.walk(&dirs, Ctx::Main, true);
    let yaml = tr.finish();
    let mut warnings = tr.warnings;
    warnings.sort_by_key(|w| if w.line == 0 { usize::MAX } else { w.line });
    Ok(Import { yaml, warnings })
}

// ---------------------------------------------------------------------------------
// Units
// ---------------------------------------------------------------------------------

/// An nginx time (`60s`, `5m`, `1h30m`, `500ms`, bare number = seconds) in ms.
pub fn nginx_time_ms(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().ok()?.checked_mul(1000);
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u64 = t[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult: u64 = match &t[ustart..i] {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// An nginx size (`10m`, `512k`, `1g`, bare number = bytes; binary multiples).
pub fn nginx_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = match t.as_bytes().last()? {
        b'k' | b'K' => (&t[..t.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&t[..t.len() - 1], 1 << 20),
        b'g' | b'G' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// An nginx rate (`10r/s`, `60r/m`) as sluice's `10/s`, `60/m`.
pub fn nginx_rate(s: &str) -> Option<String> {
    let (n, unit) = s.trim().split_once("r/")?;
    let n: u64 = n.parse().ok()?;
    if n == 0 || !matches!(unit, "s" | "m") {
        return None;
    }
    Some(format!("{n}/{unit}"))
}

/// A duration in sluice's syntax.
fn fmt_dur(ms: u64) -> String {
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 600 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A size in sluice's syntax.
fn fmt_size(b: u64) -> String {
    if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
        format!("{}GiB", b >> 30)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}KiB", b >> 10)
    } else {
        b.to_string()
    }
}

/// A YAML scalar: plain when that is unambiguous, else double-quoted.
fn q(s: &str) -> String {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '.');
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:-+@%*=".contains(c));
    let lower = s.to_ascii_lowercase();
    let ambiguous = s.parse::<f64>().is_ok()
        || s.parse::<i64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o")
        || matches!(
            lower.as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~"
        )
        || looks_like_date(s);
    if first_ok && chars_ok && !s.ends_with(':') && !ambiguous {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
}

// ---------------------------------------------------------------------------------
// Translation state
// ---------------------------------------------------------------------------------

/// Endpoint URLs, each with its `backup` flag.
type Endpoints = Vec<(String, bool)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Main,
    Events,
    Http,
    Server(usize),
    Location(usize),
}

#[derive(Debug, Default)]
struct ServerInfo {
    line: usize,
    proxies: bool,
    listens: Vec<ListenSpec>,
    cert: Option<(String, usize)>,
    key: Option<(String, usize)>,
}

#[derive(Debug, Clone)]
struct ListenSpec {
    addr: String,
    ssl: bool,
    reuseport: bool,
    fastopen: Option<u64>,
    line: usize,
}

#[derive(Debug)]
struct LocInfo {
    line: usize,
    modifier: String,
    path: String,
    proxy_pass: Option<(String, usize)>,
}

#[derive(Debug, Default)]
struct UpBlock {
    line: usize,
    servers: Vec<UpServer>,
    max_fails: Option<(u64, usize)>,
    fail_timeout: Option<(u64, usize)>,
    pool_size: Option<u64>,
    pool_idle: Option<u64>,
}

#[derive(Debug)]
struct UpServer {
    host: String,
    backup: bool,
}

#[derive(Debug)]
struct Zone {
    key: String,
    rate: String,
    line: usize,
}

#[derive(Debug)]
struct LimitReq {
    zone: String,
    burst: u64,
    nodelay: bool,
    line: usize,
}

/// A value that may be set in several places; the last one is used and a conflict is
/// warned about.
#[derive(Debug, Clone)]
struct Setting<T> {
    value: T,
    line: usize,
}

#[derive(Debug, Default)]
struct Tr {
    warnings: Vec<Warning>,
    threads: Option<usize>,
    error_log: Option<String>,
    servers: Vec<ServerInfo>,
    http_cert: Option<(String, usize)>,
    http_key: Option<(String, usize)>,
    upstream_blocks: BTreeMap<String, UpBlock>,
    locations: Vec<LocInfo>,
    /// `proxy_set_header NAME VALUE` in proxying contexts, in order.
    headers: Vec<(String, String, usize)>,
    /// `set $var value` (value kept only to resolve key headers; never printed).
    sets: BTreeMap<String, (String, usize)>,
    /// The `set` variables a key header used (the others are warned about).
    used_sets: Vec<String>,
    /// Variables defined by `map` blocks.
    map_vars: BTreeMap<String, usize>,
    /// Variables a `map` derives from the client's key.
    key_vars: Vec<String>,
    connect_timeout: Option<Setting<u64>>,
    read_timeout: Option<Setting<u64>>,
    max_body: Option<Setting<u64>>,
    keepalive_idle: Option<Setting<u64>>,
    keepalive_requests: Option<Setting<u64>>,
    access_log: Option<Setting<String>>,
    req_zones: BTreeMap<String, Zone>,
    conn_zones: BTreeMap<String, (String, usize)>,
    limit_reqs: Vec<LimitReq>,
    limit_conns: Vec<(String, u64, usize)>,
    allows: Vec<(String, usize)>,
    deny_all: Option<usize>,
    trusted: Vec<String>,
    real_ip_header: Option<(String, usize)>,
    first_real_ip_line: Option<usize>,
    retry_on: Option<Setting<Vec<String>>>,
    retry_attempts: Option<Setting<u64>>,
    ca_file: Option<Setting<String>>,
    tenant_hint_line: Option<usize>,
}

const STANDARD_ROUTES: [(&str, &str, bool); 3] = [
    ("/v1/messages", "POST", false),
    ("/v1/messages/count_tokens", "POST", false),
    ("/v1/models", "GET", true),
];

/// Directives that sluice makes unnecessary, with the reason.
fn not_needed(name: &str) -> Option<&'static str> {
    Some(match name {
        "proxy_buffering" | "proxy_cache" | "gzip" | "chunked_transfer_encoding"
        | "proxy_request_buffering" | "proxy_max_temp_file_size" | "proxy_buffer_size"
        | "proxy_buffers" | "proxy_busy_buffers_size" | "proxy_temp_file_write_size"
        | "client_body_buffer_size" | "gzip_types" | "gzip_proxied" | "gzip_comp_level"
        | "gzip_min_length" | "gzip_vary" | "gzip_http_version" | "gzip_buffers"
        | "proxy_cache_bypass" | "proxy_no_cache" | "postpone_output" => {
            "not needed: sluice always streams (answers are never buffered, cached or compressed)"
        }
        "proxy_http_version" | "proxy_ssl_server_name" | "proxy_ssl_session_reuse" => {
            "not needed: sluice speaks HTTP/1.1 (or h2) to the upstream and always sets SNI"
        }
        "worker_connections" | "multi_accept" | "use" | "worker_rlimit_nofile"
        | "accept_mutex" | "worker_cpu_affinity" | "worker_priority" => {
            "not needed: sluice has no per-worker connection settings"
        }
        "sendfile" | "tcp_nopush" | "tcp_nodelay" | "server_tokens" | "default_type"
        | "charset" | "types_hash_max_size" | "server_names_hash_bucket_size"
        | "server_names_hash_max_size" | "variables_hash_max_size" => {
            "not needed: sluice sets its own socket and HTTP options"
        }
        "server_name" => "not needed: sluice answers on its listeners whatever the Host",
        "resolver" | "resolver_timeout" => "not needed: sluice uses the system resolver",
        "user" => "not needed: run sluice as the user you want (e.g. systemd `User=`)",
        "pid" => "not translated: sluice's pid file is server.pid_file (default /tmp/sluice.pid)",
        "daemon" | "master_process" => "not needed: `sluice -d` daemonizes",
        "log_format" => {
            "not translated: sluice's access log has a fixed JSON format (fields in docs/configuration.md)"
        }
        "limit_req_log_level" | "limit_conn_log_level" | "limit_req_dry_run" => {
            "not needed: sluice counts refusals in its metrics and access log"
        }
        "zone" => "not needed: sluice shares upstream state within the process",
        "http2" => "not needed: sluice offers HTTP/2 by ALPN on TLS listeners",
        _ => return None,
    })
}

fn loc_proxies(children: &[Directive]) -> bool {
    children.iter().any(|d| {
        d.name == "proxy_pass"
            || (d.name == "location" && d.block.as_deref().is_some_and(loc_proxies))
    })
}

fn server_proxies(children: &[Directive]) -> bool {
    children
        .iter()
        .any(|d| d.name == "location" && d.block.as_deref().is_some_and(loc_proxies))
}

fn count_directives(ds: &[Directive]) -> usize {
    ds.iter()
        .map(|d| 1 + d.block.as_deref().map_or(0, count_directives))
        .sum()
}

fn mentions_client_key(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("$http_x_api_key")
        || l.contains("$http_authorization")
        || l.contains("$arg_key")
        || l.contains("$api_key")
}

impl Tr {
    fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Warning {
            line,
            level: Level::Warning,
            message: message.into(),
        });
    }

    fn info(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Warning {
            line,
            level: Level::Info,
            message: message.into(),
        });
    }

    fn not_translated(&mut self, d: &Directive) {
        self.warn(
            d.line,
            format!("not translated: {} (line {})", d.name, d.line),
        );
    }

    /// Record `value` for a setting, warning when an earlier, different value is replaced.
    fn setting<T: PartialEq + Clone>(
        &mut self,
        slot: fn(&mut Tr) -> &mut Option<Setting<T>>,
        value: T,
        line: usize,
        name: &str,
    ) {
        let old = slot(self).replace(Setting {
            value: value.clone(),
            line,
        });
        if let Some(o) = old {
            if o.value != value {
                self.warn(
                    line,
                    format!(
                        "{name} is also set (differently) at line {}: sluice has one value for the whole gateway; this one (line {line}) is used",
                        o.line
                    ),
                );
            }
        }
    }

    fn walk(&mut self, dirs: &[Directive], ctx: Ctx, active: bool) {
        for d in dirs {
            self.directive(d, ctx, active);
        }
    }

    fn directive(&mut self, d: &Directive, ctx: Ctx, active: bool) {
        if d.lua.is_some() || d.name.contains("_by_lua") {
            self.lua(d);
            return;
        }
        if let Some(children) = &d.block {
            self.block(d, children, ctx, active);
            return;
        }
        if let Some(reason) = not_needed(&d.name) {
            if d.name == "gzip" && d.args.first().is_some_and(|a| a == "on") {
                self.info(
                    d.line,
                    "gzip on: not translated — sluice never compresses (SSE must not be buffered)",
                );
            } else {
                self.info(d.line, reason);
            }
            return;
        }
        if d.name == "include" {
            self.warn(
                d.line,
                format!(
                    "include {} not followed: translate that file too (or paste it in) — its directives are not in this output",
                    d.args.join(" ")
                ),
            );
            return;
        }
        if !active {
            self.warn(
                d.line,
                format!(
                    "not translated: {} (line {}) — it is in a server/location that does not proxy to an upstream",
                    d.name, d.line
                ),
            );
            return;
        }
        self.leaf(d, ctx);
    }

    fn block(&mut self, d: &Directive, children: &[Directive], ctx: Ctx, active: bool) {
        match d.name.as_str() {
            "events" | "http" => {
                let c = if d.name == "http" {
                    Ctx::Http
                } else {
                    Ctx::Events
                };
                self.walk(children, c, active);
            }
            "server" if matches!(ctx, Ctx::Http | Ctx::Main) => {
                let proxies = server_proxies(children);
                let idx = self.servers.len();
                self.servers.push(ServerInfo {
                    line: d.line,
                    proxies: proxies && active,
                    ..Default::default()
                });
                if !proxies {
                    self.warn(
                        d.line,
                        "this server block proxies nothing (e.g. an HTTP→HTTPS redirect): not translated, nor are its listen addresses",
                    );
                }
                self.walk(children, Ctx::Server(idx), active && proxies);
            }
            "location" if matches!(ctx, Ctx::Server(_) | Ctx::Location(_)) => {
                let (modifier, path) = match d.args.as_slice() {
                    [p] if p.len() > 1 && p.starts_with('=') => ("=".to_string(), p[1..].to_string()),
                    [p] => (String::new(), p.clone()),
                    [m, p, ..] => (m.clone(), p.clone()),
                    [] => (String::new(), String::new()),
                };
                let proxies = loc_proxies(children);
                let idx = self.locations.len();
                self.locations.push(LocInfo {
                    line: d.line,
                    modifier,
                    path: path.clone(),
                    proxy_pass: None,
                });
                if !proxies && active {
                    self.warn(
                        d.line,
                        format!(
                            "location {} does not proxy to an upstream: not translated (sluice's health checks are /healthz and /readyz on the admin listener)",
                            d.args.join(" ")
                        ),
                    );
                }
                self.walk(children, Ctx::Location(idx), active && proxies);
            }
            "upstream" if matches!(ctx, Ctx::Http | Ctx::Main) => self.upstream_block(d, children),
            "map" => {
                if let Some(var) = d.args.get(1) {
                    self.map_vars.insert(var.clone(), d.line);
                }
                let hint = if d.args.first().is_some_and(|a| mentions_client_key(a)) {
                    if let Some(var) = d.args.get(1) {
                        self.key_vars.push(var.clone());
                    }
                    self.tenant_hint_line.get_or_insert(d.line);
                    " — a map over the client's key is a key check: use tenants[].keys (hashed, made with `sluice keygen`)"
                } else {
                    ""
                };
                self.warn(
                    d.line,
                    format!(
                        "not translated: map block ({} entries){hint}",
                        children.len()
                    ),
                );
            }
            "if" => {
                let cond = d.args.join(" ");
                let hint = if mentions_client_key(&cond)
                    || self.key_vars.iter().any(|v| cond.contains(v.as_str()))
                {
                    self.tenant_hint_line.get_or_insert(d.line);
                    " — a key check: use tenants[].keys (hashed, made with `sluice keygen`)"
                } else if cond.contains("$request_method") {
                    " — methods are allowed per route (routes[].methods)"
                } else {
                    ""
                };
                self.warn(
                    d.line,
                    format!(
                        "not translated: if block ({} directives inside){hint}",
                        count_directives(children)
                    ),
                );
            }
            "limit_except" => self.warn(
                d.line,
                "not translated: limit_except — allowed methods are set per route (routes[].methods)",
            ),
            _ => self.warn(
                d.line,
                format!(
                    "not translated: {} block ({} directives inside)",
                    d.name,
                    count_directives(children)
                ),
            ),
        }
    }

    fn upstream_block(&mut self, d: &Directive, children: &[Directive]) {
        let name = d.args.first().cloned().unwrap_or_default();
        let mut up = UpBlock {
            line: d.line,
            ..Default::default()
        };
        for c in children {
            if c.block.is_some() || c.lua.is_some() {
                self.directive(c, Ctx::Http, true);
                continue;
            }
            match c.name.as_str() {
                "server" => {
                    let Some(addr) = c.args.first() else {
                        self.not_translated(c);
                        continue;
                    };
                    if addr.starts_with("unix:") {
                        self.warn(c.line, "unix-socket upstream servers are not supported: not translated");
                        continue;
                    }
                    let mut backup = false;
                    let mut down = false;
                    for p in &c.args[1..] {
                        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
                        match k {
                            "backup" => backup = true,
                            "down" => down = true,
                            "max_fails" => match v.parse::<u64>() {
                                Ok(n) => up.max_fails = Some((n, c.line)),
                                Err(_) => self.warn(c.line, format!("invalid max_fails={v}")),
                            },
                            "fail_timeout" => match nginx_time_ms(v) {
                                Some(ms) => up.fail_timeout = Some((ms, c.line)),
                                None => self.warn(c.line, format!("invalid fail_timeout={v}")),
                            },
                            "weight" => self.warn(
                                c.line,
                                "server weight not translated: primaries share traffic round robin (weights exist for upstream keys: keys[].weight)",
                            ),
                            _ => self.warn(
                                c.line,
                                format!("server parameter {k} not translated"),
                            ),
                        }
                    }
                    if down {
                        self.warn(c.line, format!("server {addr} is marked down: left out"));
                        continue;
                    }
                    up.servers.push(UpServer {
                        host: addr.clone(),
                        backup,
                    });
                }
                "keepalive" => match c.args.first().and_then(|a| a.parse::<u64>().ok()) {
                    Some(n) => up.pool_size = Some(n),
                    None => self.not_translated(c),
                },
                "keepalive_timeout" => match c.args.first().and_then(|a| nginx_time_ms(a)) {
                    Some(ms) => up.pool_idle = Some(ms),
                    None => self.not_translated(c),
                },
                "keepalive_requests" | "keepalive_time" => self.info(
                    c.line,
                    format!("{}: not needed — sluice recycles upstream connections itself", c.name),
                ),
                "least_conn" | "ip_hash" | "hash" | "random" | "least_time" => self.warn(
                    c.line,
                    format!(
                        "{} not translated: sluice shares traffic among primaries round robin (requests with metadata.user_id stick to one key)",
                        c.name
                    ),
                ),
                "zone" => self.info(c.line, not_needed("zone").unwrap_or_default()),
                _ => self.not_translated(c),
            }
        }
        if self.upstream_blocks.insert(name.clone(), up).is_some() {
            self.warn(
                d.line,
                format!("upstream {name} is defined twice: the last one is used"),
            );
        }
    }

    fn leaf(&mut self, d: &Directive, ctx: Ctx) {
        let a0 = d.args.first().map(String::as_str).unwrap_or("");
        let line = d.line;
        match d.name.as_str() {
            "worker_processes" => {
                if a0 == "auto" {
                    self.threads = Some(2);
                    self.info(line, "worker_processes auto → server.threads: 2 (sluice's threads; raise it for busy gateways)");
                } else if let Ok(n) = a0.parse::<usize>() {
                    self.threads = Some(n.clamp(1, 1024));
                } else {
                    self.not_translated(d);
                }
            }
            "error_log" => {
                if ctx != Ctx::Main {
                    self.warn(line, "error_log below the main level not translated: sluice has one process log (server.error_log)");
                } else if matches!(a0, "stderr" | "/dev/stderr") {
                    self.info(line, "error_log to stderr: sluice's default");
                } else if a0.starts_with("syslog:") || a0.starts_with("memory:") {
                    self.warn(line, "error_log to syslog/memory not translated: sluice logs to stderr or a file (server.error_log)");
                } else {
                    self.error_log = Some(a0.to_string());
                    if let Some(dir) = Path::new(a0).parent().filter(|d| !d.as_os_str().is_empty()) {
                        if !dir.is_dir() {
                            self.warn(line, format!("error_log → server.error_log, but {} does not exist on this machine: create it or change the path", dir.display()));
                        }
                    }
                    if d.args.len() > 1 {
                        self.info(line, "error_log level not translated: set RUST_LOG (default info)");
                    }
                }
            }
            "listen" => self.listen(d, ctx),
            "ssl_certificate" | "ssl_certificate_key" => {
                if a0.contains('$') || a0.starts_with("data:") {
                    self.warn(line, format!("{} with variables or inline data not translated", d.name));
                    return;
                }
                let is_cert = d.name == "ssl_certificate";
                let dup = {
                    let slot = match ctx {
                        Ctx::Server(i) => {
                            let s = &mut self.servers[i];
                            if is_cert {
                                &mut s.cert
                            } else {
                                &mut s.key
                            }
                        }
                        _ if is_cert => &mut self.http_cert,
                        _ => &mut self.http_key,
                    };
                    if slot.is_some() {
                        true
                    } else {
                        *slot = Some((a0.to_string(), line));
                        false
                    }
                };
                if dup {
                    self.warn(line, format!("a second {}: sluice takes one certificate per listener; the first is used", d.name));
                }
            }
            n if n.starts_with("ssl_") => self.warn(
                line,
                format!("not translated: {n} (line {line}) — sluice uses its own TLS protocol/cipher/session settings"),
            ),
            "proxy_pass" => {
                if let Ctx::Location(i) = ctx {
                    self.locations[i].proxy_pass = Some((a0.to_string(), line));
                } else {
                    self.not_translated(d);
                }
            }
            "proxy_set_header" => {
                if d.args.len() < 2 {
                    self.not_translated(d);
                } else {
                    self.headers.push((d.args[0].clone(), d.args[1].clone(), line));
                }
            }
            "proxy_connect_timeout" | "proxy_read_timeout" => match nginx_time_ms(a0) {
                Some(ms) if ms > 0 => {
                    if d.name == "proxy_connect_timeout" {
                        self.setting(|t| &mut t.connect_timeout, ms, line, &d.name);
                    } else {
                        self.setting(|t| &mut t.read_timeout, ms, line, &d.name);
                    }
                }
                _ => self.warn(line, format!("{}: invalid time, not translated", d.name)),
            },
            "proxy_send_timeout" => self.warn(
                line,
                "proxy_send_timeout not translated: sluice sends the request body it already holds at once (bounded by timeouts.first_byte and timeouts.total)",
            ),
            "send_timeout" | "client_body_timeout" | "client_header_timeout" => self.warn(
                line,
                format!("not translated: {} (line {line}) — sluice has no client-side read/send timeouts besides listeners[].keepalive.idle", d.name),
            ),
            "client_max_body_size" => match nginx_size(a0) {
                Some(0) => {
                    self.setting(|t| &mut t.max_body, 1 << 30, line, &d.name);
                    self.warn(line, "client_max_body_size 0 (unlimited) has no equivalent: limits.max_body set to 1GiB (sluice holds the body to replay it on retries)");
                }
                Some(b) => self.setting(|t| &mut t.max_body, b, line, &d.name),
                None => self.warn(line, "client_max_body_size: invalid size, not translated"),
            },
            "keepalive_timeout" if matches!(ctx, Ctx::Main | Ctx::Http | Ctx::Server(_)) => {
                match nginx_time_ms(a0) {
                    Some(0) => self.warn(line, "keepalive_timeout 0 (no keep-alive) not translated: sluice keeps client connections alive"),
                    Some(ms) => {
                        self.setting(|t| &mut t.keepalive_idle, ms.max(1000), line, &d.name);
                        if d.args.len() > 1 {
                            self.info(line, "keepalive_timeout's second value (Keep-Alive header) not translated");
                        }
                    }
                    None => self.not_translated(d),
                }
            }
            "keepalive_requests" if matches!(ctx, Ctx::Main | Ctx::Http | Ctx::Server(_)) => {
                match a0.parse::<u64>() {
                    Ok(n) if n > 0 => self.setting(|t| &mut t.keepalive_requests, n, line, &d.name),
                    _ => self.not_translated(d),
                }
            }
            "limit_req_zone" => self.limit_req_zone(d),
            "limit_req" => {
                let mut zone = None;
                let mut burst = 0;
                let mut nodelay = false;
                for a in &d.args {
                    if let Some(z) = a.strip_prefix("zone=") {
                        zone = Some(z.to_string());
                    } else if let Some(b) = a.strip_prefix("burst=") {
                        burst = b.parse().unwrap_or(0);
                    } else if a == "nodelay" {
                        nodelay = true;
                    } else if a.starts_with("delay=") {
                        self.warn(line, "limit_req delay=N (two-stage limiting) approximated by `delay: true`");
                    }
                }
                match zone {
                    Some(zone) => self.limit_reqs.push(LimitReq { zone, burst, nodelay, line }),
                    None => self.not_translated(d),
                }
            }
            "limit_req_status" | "limit_conn_status" => {
                if a0 == "429" {
                    self.info(line, format!("{}: not needed — sluice refuses with 429 rate_limit_error and retry-after", d.name));
                } else {
                    self.warn(line, format!("{} {a0} not translated: sluice always refuses with 429 rate_limit_error (what the SDKs retry)", d.name));
                }
            }
            "limit_conn_zone" => {
                let zone = d.args.iter().find_map(|a| a.strip_prefix("zone="));
                match zone {
                    Some(z) => {
                        let name = z.split(':').next().unwrap_or(z).to_string();
                        self.conn_zones.insert(name, (a0.to_string(), line));
                    }
                    None => self.not_translated(d),
                }
            }
            "limit_conn" => match d.args.get(1).and_then(|n| n.parse::<u64>().ok()) {
                Some(n) if n > 0 => self.limit_conns.push((a0.to_string(), n, line)),
                _ => self.not_translated(d),
            },
            "allow" => {
                if a0 == "all" {
                    self.info(line, "allow all: nothing to translate (no ip_allow means every address)");
                } else {
                    self.allows.push((a0.to_string(), line));
                }
            }
            "deny" => {
                if a0 == "all" {
                    self.deny_all = Some(line);
                } else {
                    self.warn(line, format!("deny {a0} not translated: sluice has allowlists only (tenants[].ip_allow)"));
                }
            }
            "set_real_ip_from" => {
                self.first_real_ip_line.get_or_insert(line);
                if a0.starts_with("unix:") {
                    self.warn(line, "set_real_ip_from unix: not translated (sluice listens on TCP only)");
                } else if crate::config::parse_cidr(a0).is_some() {
                    if !self.trusted.iter().any(|t| t == a0) {
                        self.trusted.push(a0.to_string());
                    }
                } else {
                    self.warn(line, format!("set_real_ip_from {a0}: not a CIDR or address, not translated"));
                }
            }
            "real_ip_header" => self.real_ip_header = Some((a0.to_string(), line)),
            "real_ip_recursive" => {
                if a0 == "on" {
                    self.info(line, "real_ip_recursive on: sluice always takes the right-most address of X-Forwarded-For that is not a trusted proxy");
                } else {
                    self.warn(line, "real_ip_recursive off not translated: sluice always skips trusted proxies from the right of X-Forwarded-For (like `on`)");
                }
            }
            "access_log" => {
                let path = match a0 {
                    "off" => "off".to_string(),
                    "/dev/stdout" | "stdout" => "stdout".to_string(),
                    p if p.starts_with("syslog:") || p.contains('$') => {
                        self.warn(line, "access_log to syslog or with variables not translated: sluice logs to stdout or a file");
                        return;
                    }
                    p => p.to_string(),
                };
                if path != "off" {
                    let fmt = d.args.get(1).filter(|a| !a.contains('='));
                    self.warn(
                        line,
                        format!(
                            "access_log → logging.access.path; the format{} is not translated: sluice writes its own fixed JSON lines (fields in docs/configuration.md)",
                            fmt.map(|f| format!(" ({f})")).unwrap_or_default()
                        ),
                    );
                }
                self.setting(|t| &mut t.access_log, path, line, &d.name);
            }
            "proxy_next_upstream" => self.next_upstream(d),
            "proxy_next_upstream_tries" => match a0.parse::<u64>() {
                Ok(0) => self.info(line, "proxy_next_upstream_tries 0 (unlimited): sluice's default retry.attempts (3) kept"),
                Ok(n) => self.setting(|t| &mut t.retry_attempts, n.min(100), line, &d.name),
                Err(_) => self.not_translated(d),
            },
            "proxy_next_upstream_timeout" => self.warn(
                line,
                "proxy_next_upstream_timeout not translated: retries stop at timeouts.total",
            ),
            "proxy_ssl_verify" => {
                if a0 == "on" {
                    self.info(line, "proxy_ssl_verify on: sluice always verifies upstream certificates");
                } else {
                    self.info(line, "proxy_ssl_verify off (nginx's default): sluice verifies upstream certificates and host names (tls.verify: false turns that off, loudly)");
                }
            }
            "proxy_ssl_trusted_certificate" => {
                self.setting(|t| &mut t.ca_file, a0.to_string(), line, &d.name)
            }
            "proxy_ssl_verify_depth" => self.info(line, "proxy_ssl_verify_depth: not needed"),
            "proxy_ssl_name" => self.info(
                line,
                "proxy_ssl_name not translated: sluice sends each endpoint's own host name as SNI and Host",
            ),
            "proxy_ignore_client_abort" => {
                if a0 == "on" {
                    self.warn(line, "proxy_ignore_client_abort on not translated: sluice cancels the upstream request when the client goes away");
                } else {
                    self.info(line, "proxy_ignore_client_abort off: sluice's behaviour (the upstream request is cancelled)");
                }
            }
            "proxy_hide_header" => self.warn(
                line,
                format!("not translated: proxy_hide_header (line {line}) — sluice itself strips anthropic-organization-id and the upstream's anthropic-ratelimit-* headers"),
            ),
            "set" => {
                if let (Some(var), Some(val)) = (d.args.first(), d.args.get(1)) {
                    self.sets.insert(var.clone(), (val.clone(), line));
                } else {
                    self.not_translated(d);
                }
            }
            _ => self.not_translated(d),
        }
    }

    fn listen(&mut self, d: &Directive, ctx: Ctx) {
        let Ctx::Server(i) = ctx else {
            self.not_translated(d);
            return;
        };
        let line = d.line;
        let Some(raw) = d.args.first() else {
            self.not_translated(d);
            return;
        };
        if raw.starts_with("unix:") {
            self.warn(
                line,
                "listen on a unix socket not translated: sluice listens on TCP",
            );
            return;
        }
        let addr = if raw.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.0.0.0:{raw}")
        } else if let Some(p) = raw.strip_prefix("*:") {
            format!("0.0.0.0:{p}")
        } else if raw.starts_with('[') {
            if raw.contains("]:") {
                raw.clone()
            } else {
                format!("{raw}:80")
            }
        } else {
            let (host, port) = match raw.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (raw.clone(), "80".to_string()),
            };
            let host = if host.parse::<std::net::Ipv4Addr>().is_ok() {
                host
            } else if host == "localhost" {
                self.info(line, "listen localhost → 127.0.0.1");
                "127.0.0.1".to_string()
            } else {
                self.warn(
                    line,
                    format!("listen on host name {host} not translated as such: sluice needs an IP address; 0.0.0.0 used"),
                );
                "0.0.0.0".to_string()
            };
            format!("{host}:{port}")
        };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            self.warn(
                line,
                format!("listen {raw}: not an address sluice understands, not translated"),
            );
            return;
        }
        let mut spec = ListenSpec {
            addr,
            ssl: false,
            reuseport: false,
            fastopen: None,
            line,
        };
        for p in &d.args[1..] {
            let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
            match k {
                "ssl" => spec.ssl = true,
                "http2" => self.info(line, "listen … http2: not needed — sluice offers HTTP/2 by ALPN on TLS listeners"),
                "default_server" | "default" => {
                    self.info(line, "default_server: not needed — sluice answers on its listeners whatever the Host")
                }
                "reuseport" => spec.reuseport = true,
                "fastopen" => spec.fastopen = v.parse().ok(),
                _ => self.warn(line, format!("listen parameter {k} not translated")),
            }
        }
        self.servers[i].listens.push(spec);
    }

    fn limit_req_zone(&mut self, d: &Directive) {
        let key = d.args.first().cloned().unwrap_or_default();
        let mut name = None;
        let mut rate = None;
        for a in &d.args[1..] {
            if let Some(z) = a.strip_prefix("zone=") {
                name = Some(z.split(':').next().unwrap_or(z).to_string());
            } else if let Some(r) = a.strip_prefix("rate=") {
                rate = nginx_rate(r);
                if rate.is_none() {
                    self.warn(d.line, format!("limit_req_zone rate={r}: not understood"));
                }
            }
        }
        match (name, rate) {
            (Some(n), Some(r)) => {
                self.req_zones.insert(
                    n,
                    Zone {
                        key,
                        rate: r,
                        line: d.line,
                    },
                );
            }
            _ => self.not_translated(d),
        }
    }

    fn next_upstream(&mut self, d: &Directive) {
        let mut on = Vec::new();
        for a in &d.args {
            match a.as_str() {
                "error" => on.push("connect".to_string()),
                "timeout" => on.push("timeout".to_string()),
                "off" => {
                    self.setting(|t| &mut t.retry_attempts, 1, d.line, "proxy_next_upstream off");
                    return;
                }
                "non_idempotent" => self.info(
                    d.line,
                    "proxy_next_upstream non_idempotent: not needed — sluice holds the body and replays POSTs",
                ),
                s if s.starts_with("http_") && s[5..].parse::<u16>().is_ok() => {
                    on.push(s[5..].to_string())
                }
                s => self.warn(d.line, format!("proxy_next_upstream {s} not translated")),
            }
        }
        if !on.is_empty() {
            self.info(
                d.line,
                "proxy_next_upstream → retry.on; sluice's default is [connect, timeout, 401, 403, 429, 500, 502, 503, 504, 529] — consider adding 401/403/429/529 so a refused or rate-limited key moves to another key",
            );
            self.setting(|t| &mut t.retry_on, on, d.line, &d.name);
        }
    }

    /// OpenResty `*_by_lua`, `*_by_lua_block`, `*_by_lua_file`, and `lua_*` settings.
    fn lua(&mut self, d: &Directive) {
        let line = d.line;
        let name = d.name.as_str();
        let Some(i) = name.find("_by_lua") else {
            self.not_translated(d);
            return;
        };
        let phase = &name[..i];
        let code: Option<&str> = if let Some(c) = &d.lua {
            Some(c.as_str())
        } else if name.ends_with("_by_lua") {
            d.args.last().map(String::as_str)
        } else {
            None
        };
        let mut said = false;
        if name.ends_with("_by_lua_file") {
            self.warn(
                line,
                format!(
                    "{name} {}: the Lua file was not read — review it by hand (key checks → tenants[].keys, body redaction → filters)",
                    d.args.first().map(String::as_str).unwrap_or("")
                ),
            );
            said = true;
        }
        if phase == "access" {
            self.tenant_hint_line.get_or_insert(line);
            self.warn(
                line,
                format!("{name}: Lua key check → tenants[].keys (client keys as sha256 hashes made with `sluice keygen`; per-tenant ip_allow, models and limits replace the rest of such scripts)"),
            );
            said = true;
        }
        let Some(code) = code else {
            if !said {
                self.not_translated(d);
            }
            return;
        };
        let lc = code.to_ascii_lowercase();
        if lc.contains("ngx.re.gsub") || lc.contains("ngx.re.sub") || lc.contains("gsub(") {
            let dir = if matches!(phase, "body_filter" | "header_filter") {
                "response"
            } else {
                "request"
            };
            let rules = redaction_rules(code);
            let snippet = if rules.is_empty() {
                format!("filters: {{ {dir}: {{ redact: [{{ name: my_rule, pattern: \"…\" }}] }} }}")
            } else {
                format!("filters: {{ {dir}: {{ redact: [{}] }} }}", rules.join(", "))
            };
            let recognised = if rules.is_empty() {
                "the pattern was not recognised as a built-in: write it as a custom rule"
                    .to_string()
            } else {
                format!("the pattern looks like {}", rules.join(" and "))
            };
            self.warn(
                line,
                format!(
                    "{name}: body redaction with ngx.re.gsub → filters.{dir}.redact (built-ins cn_id_card, bank_card, cn_mobile, email); {recognised}. Not emitted (redaction changes what the upstream sees: turn it on deliberately, and filters may be missing from older builds) — add: {snippet}"
                ),
            );
            said = true;
        }
        let inline_keys = code.matches("sk-ant-").count();
        if inline_keys > 0 {
            self.warn(
                line,
                format!(
                    "{name}: {inline_keys} inline Anthropic key(s) in the Lua code, not copied: put each in an env var and list them as upstream keys (keys: [{{env: ANTHROPIC_API_KEY}}, {{env: ANTHROPIC_API_KEY_2}}, …])"
                ),
            );
            said = true;
        }
        if lc.contains("set_header") && (lc.contains("x-api-key") || lc.contains("authorization")) {
            self.warn(
                line,
                format!("{name}: Lua sets the upstream credential → upstreams.anthropic.keys (sluice injects keys from env/file, round robin, with cooldowns)"),
            );
            said = true;
        }
        if !said {
            self.warn(
                line,
                format!("not translated: {name} (line {line}) — Lua code has no sluice equivalent; review what it does"),
            );
        }
    }

    // -----------------------------------------------------------------------------
    // Output
    // -----------------------------------------------------------------------------

    fn finish(&mut self) -> String {
        let mut y = String::new();

        // server
        if self.threads.is_some() || self.error_log.is_some() {
            y.push_str("server:\n");
            if let Some(t) = self.threads {
                let _ = writeln!(y, "  threads: {t}");
            }
            if let Some(e) = &self.error_log {
                let _ = writeln!(y, "  error_log: {}", q(e));
            }
        }

        self.listeners_yaml(&mut y);
        let upstream_names = self.upstreams_yaml(&mut y);
        self.routes_yaml(&mut y, &upstream_names);
        self.limits_yaml(&mut y);
        self.tenants_yaml(&mut y);
        let unused: Vec<(String, usize)> = self
            .sets
            .iter()
            .filter(|(k, _)| !self.used_sets.contains(k))
            .map(|(k, (_, l))| (k.clone(), *l))
            .collect();
        for (k, l) in unused {
            self.warn(l, format!("not translated: set {k} (line {l})"));
        }

        if let Some(a) = self.access_log.clone() {
            let _ = writeln!(
                y,
                "logging:\n  access: {{ path: {}, format: json }}",
                q(&a.value)
            );
            let p = Path::new(&a.value);
            if a.value != "off" && a.value != "stdout" {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.is_dir() {
                        let line = a.line;
                        self.warn(line, format!("the access log directory {} does not exist on this machine: `sluice -t` needs it", dir.display()));
                    }
                }
            }
        }
        y
    }

    fn listeners_yaml(&mut self, y: &mut String) {
        let ka = match (&self.keepalive_idle, &self.keepalive_requests) {
            (None, None) => None,
            (i, r) => {
                let mut parts = Vec::new();
                if let Some(i) = i {
                    parts.push(format!("idle: {}", fmt_dur(i.value)));
                }
                if let Some(r) = r {
                    parts.push(format!("max_requests: {}", r.value));
                }
                Some(parts.join(", "))
            }
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let servers = std::mem::take(&mut self.servers);
        let all_addrs: Vec<String> = servers
            .iter()
            .filter(|s| s.proxies)
            .flat_map(|s| s.listens.iter().map(|l| l.addr.clone()))
            .collect();
        for s in &servers {
            if !s.proxies {
                continue;
            }
            let mut listens = s.listens.clone();
            if !listens.iter().any(|l| l.ssl) {
                for (f, l) in [&s.cert, &s.key].into_iter().flatten() {
                    self.warn(
                        *l,
                        format!(
                            "{f}: no `listen … ssl` in this server, so the certificate is not used"
                        ),
                    );
                }
            }
            if listens.is_empty() {
                self.info(
                    s.line,
                    "server without listen: nginx's default 0.0.0.0:80 used",
                );
                listens.push(ListenSpec {
                    addr: "0.0.0.0:80".into(),
                    ssl: false,
                    reuseport: false,
                    fastopen: None,
                    line: s.line,
                });
            }
            for l in listens {
                if let Some(port) = l.addr.strip_prefix("[::]:") {
                    let v4 = format!("0.0.0.0:{port}");
                    if all_addrs.contains(&v4) {
                        self.warn(l.line, format!("[::]:{port} not translated next to {v4}: sluice's [::] socket is dual-stack and would collide — to serve IPv6 clients too, change {v4} to \"[::]:{port}\""));
                        continue;
                    }
                }
                if seen.contains(&l.addr) {
                    self.warn(l.line, format!("{} is already a listener (from another server block): sluice serves one configuration on it", l.addr));
                    continue;
                }
                seen.push(l.addr.clone());
                let mut e = format!("  - addr: {}\n", q(&l.addr));
                if l.ssl {
                    let cert = s.cert.clone().or_else(|| self.http_cert.clone());
                    let key = s.key.clone().or_else(|| self.http_key.clone());
                    match (cert, key) {
                        (Some((c, cl)), Some((k, kl))) => {
                            let _ = writeln!(e, "    tls: {{ cert: {}, key: {} }}", q(&c), q(&k));
                            for (f, fl) in [(c, cl), (k, kl)] {
                                if std::fs::metadata(&f).is_err() {
                                    self.warn(fl, format!("{f} cannot be read on this machine: `sluice -t` reads the certificate and key (copy them or fix the path)"));
                                }
                            }
                        }
                        _ => self.warn(
                            l.line,
                            "listen … ssl without ssl_certificate and ssl_certificate_key: emitted as plain HTTP — add tls: {cert, key}",
                        ),
                    }
                }
                let mut tcp = Vec::new();
                if l.reuseport {
                    tcp.push("reuseport: true".to_string());
                }
                if let Some(n) = l.fastopen {
                    tcp.push(format!("fastopen: {n}"));
                }
                if !tcp.is_empty() {
                    let _ = writeln!(e, "    tcp: {{ {} }}", tcp.join(", "));
                }
                if let Some(k) = &ka {
                    let _ = writeln!(e, "    keepalive: {{ {k} }}");
                }
                out.push(e);
            }
        }
        self.servers = servers;
        if out.is_empty() {
            self.warn(0, "no listen directive in a proxying server: emitted listeners: [{addr: 0.0.0.0:8080}]");
            let mut e = "  - addr: 0.0.0.0:8080\n".to_string();
            if let Some(k) = &ka {
                let _ = writeln!(e, "    keepalive: {{ {k} }}");
            }
            out.push(e);
        }
        y.push_str("listeners:\n");
        for e in out {
            y.push_str(&e);
        }
    }

    /// Resolve a proxy_pass target to endpoint URLs (with `backup`) and the block it
    /// came from.
    fn endpoints_for(
        &mut self,
        scheme: &str,
        authority: &str,
        base: &str,
        line: usize,
    ) -> Option<(Endpoints, Option<String>)> {
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let url = |host: &str| {
            let h = host.strip_suffix(default_port).unwrap_or(host);
            format!("{scheme}://{h}{base}")
        };
        let block = self.upstream_blocks.get(authority).map(|b| {
            let servers: Vec<(String, bool)> = b
                .servers
                .iter()
                .map(|s| (s.host.clone(), s.backup))
                .collect();
            (b.line, servers)
        });
        if let Some((bline, servers)) = block {
            if servers.is_empty() {
                self.warn(line, format!("upstream {authority} has no usable server"));
                return None;
            }
            let mut eps: Vec<(String, bool)> = servers.iter().map(|s| (url(&s.0), s.1)).collect();
            let no_port: Vec<String> = servers
                .iter()
                .filter(|s| !s.0.contains(':'))
                .map(|s| s.0.clone())
                .collect();
            if scheme == "https" && !no_port.is_empty() {
                self.warn(
                    bline,
                    format!("server {} has no port: nginx would have used port 80 even for https; sluice uses 443", no_port.join(", ")),
                );
            }
            if eps.iter().all(|e| e.1) {
                self.warn(
                    bline,
                    "every server is a backup: the first is made a primary",
                );
                eps[0].1 = false;
            }
            Some((eps, Some(authority.to_string())))
        } else {
            Some((vec![(url(authority), false)], None))
        }
    }

    fn upstreams_yaml(&mut self, y: &mut String) -> Vec<(String, usize)> {
        // One sluice upstream per distinct target. Returns, per location, the name of
        // its upstream (or usize::MAX in .1 when it has none).
        struct Up {
            name: String,
            endpoints: Vec<(String, bool)>,
            block: Option<String>,
        }
        let mut ups: Vec<Up> = Vec::new();
        let mut per_loc: Vec<(String, usize)> = Vec::new();
        let locs = std::mem::take(&mut self.locations);
        for (li, loc) in locs.iter().enumerate() {
            let Some((pp, pl)) = &loc.proxy_pass else {
                continue;
            };
            if pp.contains('$') {
                self.warn(*pl, "proxy_pass with variables not translated: list the endpoints under upstreams.anthropic.endpoints");
                continue;
            }
            let Some((scheme, rest)) = pp.split_once("://") else {
                self.warn(
                    *pl,
                    format!("proxy_pass {pp}: not an http(s) URL, not translated"),
                );
                continue;
            };
            if scheme != "http" && scheme != "https" {
                self.warn(*pl, format!("proxy_pass {scheme}:// not translated: sluice endpoints are http:// or https://"));
                continue;
            }
            let (authority, uri) = match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            };
            let base = self.base_path(loc, uri, *pl);
            let Some((endpoints, block)) = self.endpoints_for(scheme, authority, &base, *pl) else {
                continue;
            };
            let idx = match ups.iter().position(|u| u.endpoints == endpoints) {
                Some(i) => i,
                None => {
                    let name = if ups.is_empty() {
                        "anthropic".to_string()
                    } else {
                        let raw = block.clone().unwrap_or_else(|| authority.to_string());
                        let mut n: String = raw
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                            .collect();
                        if n.starts_with(|c: char| c.is_ascii_digit()) || n == "anthropic" {
                            n = format!("up_{n}");
                        }
                        if ups.iter().any(|u| u.name == n) {
                            n = format!("{n}_{}", ups.len() + 1);
                        }
                        n
                    };
                    ups.push(Up {
                        name,
                        endpoints,
                        block,
                    });
                    ups.len() - 1
                }
            };
            per_loc.push((ups[idx].name.clone(), li));
        }
        self.locations = locs;
        if ups.is_empty() {
            self.warn(0, "no proxy_pass to an http(s) upstream found: emitted the default upstream https://api.anthropic.com");
            ups.push(Up {
                name: "anthropic".into(),
                endpoints: vec![("https://api.anthropic.com".into(), false)],
                block: None,
            });
        }
        if ups.len() > 1 {
            self.warn(0, format!("{} upstreams: the headers, keys and timeouts found are applied to each — review them per upstream", ups.len()));
        }
        let common = self.common_upstream_settings();
        y.push_str("upstreams:\n");
        for u in &ups {
            let _ = writeln!(y, "  {}:\n    endpoints:", u.name);
            for (url, backup) in &u.endpoints {
                if *backup {
                    let _ = writeln!(y, "      - {{ url: {}, backup: true }}", q(url));
                } else {
                    let _ = writeln!(y, "      - url: {}", q(url));
                }
            }
            y.push_str(&common);
            if let Some(b) = u.block.as_ref().and_then(|b| self.upstream_blocks.get(b)) {
                let mut pool = Vec::new();
                if let Some(n) = b.pool_size {
                    pool.push(format!("size: {n}"));
                }
                if let Some(ms) = b.pool_idle {
                    pool.push(format!("idle: {}", fmt_dur(ms.max(1000))));
                }
                if !pool.is_empty() {
                    let _ = writeln!(y, "    pool: {{ {} }}", pool.join(", "));
                }
            }
            y.push_str(&self.retry_yaml());
            if let Some(b) = u.block.clone() {
                y.push_str(&self.breaker_yaml(&b));
            }
        }
        let used: Vec<String> = ups.iter().filter_map(|u| u.block.clone()).collect();
        let unused: Vec<(String, usize)> = self
            .upstream_blocks
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(n, b)| (n.clone(), b.line))
            .collect();
        for (n, l) in unused {
            self.warn(
                l,
                format!("upstream {n} is not used by any translated proxy_pass: not translated"),
            );
        }
        per_loc
    }

    /// The endpoint base path for a location's proxy_pass URI (nginx replaces the
    /// matched location prefix by the URI; sluice prefixes the base to the whole path).
    fn base_path(&mut self, loc: &LocInfo, uri: Option<&str>, line: usize) -> String {
        let Some(uri) = uri else {
            return String::new();
        };
        if loc.modifier == "~" || loc.modifier == "~*" {
            return String::new();
        }
        let p = loc.path.as_str();
        if let Some(b) = uri.strip_suffix(p) {
            return b.trim_end_matches('/').to_string();
        }
        // Clients will call the gateway root (the SDKs add /v1/…), so nginx's
        // `P + rest → U + rest` becomes `/rest → base + /rest`; a URI ending in /v1 is
        // covered by the routes' own /v1.
        let base = uri.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_string();
        self.warn(
            line,
            format!(
                "location {p} rewrites the path to {uri} (proxy_pass with a URI): sluice forwards the request path unchanged after the endpoint's base path ({}) — clients must drop {p} from their base URL and use the gateway root",
                if base.is_empty() { "none" } else { &base }
            ),
        );
        base
    }

    /// Keys, auth, version, headers, timeouts and TLS shared by every upstream.
    fn common_upstream_settings(&mut self) -> String {
        let mut out = String::from("    keys:\n      - env: ANTHROPIC_API_KEY\n");
        let mut auth = None;
        let mut version = None;
        let mut set_headers: Vec<(String, String)> = Vec::new();
        let mut host_value: Option<(String, usize)> = None;
        let mut key_seen = false;
        let headers = std::mem::take(&mut self.headers);
        for (name, value, line) in &headers {
            let lower = name.to_ascii_lowercase();
            let line = *line;
            match lower.as_str() {
                "x-api-key" | "authorization" => {
                    key_seen = true;
                    let style = if lower == "x-api-key" { "x-api-key" } else { "bearer" };
                    if auth.is_some_and(|a| a != style) {
                        self.warn(line, "both x-api-key and Authorization are set: sluice sends one (auth:) — the first is used");
                    } else {
                        auth = Some(style);
                    }
                    self.key_value(name, value, line);
                }
                "anthropic-version" => {
                    if value.contains('$') {
                        self.info(line, "anthropic-version from a variable: not needed — sluice passes the client's anthropic-version and adds anthropic_version only when it is missing");
                    } else {
                        version = Some(value.clone());
                    }
                }
                "host" => host_value = Some((value.clone(), line)),
                "connection" | "upgrade" | "keep-alive" | "te" => self.info(
                    line,
                    format!("proxy_set_header {name}: not needed — sluice manages upstream connections"),
                ),
                "x-real-ip" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
                | "x-forwarded-port" | "forwarded" => self.info(
                    line,
                    format!("proxy_set_header {name}: not needed — sluice finds the client address itself (limits.trusted_proxies) and does not pass it upstream"),
                ),
                "accept-encoding" => self.info(
                    line,
                    "proxy_set_header Accept-Encoding: not needed — sluice streams bodies as they are and filters work on them",
                ),
                "content-length" | "transfer-encoding" => self.info(
                    line,
                    format!("proxy_set_header {name}: not needed — sluice frames requests itself"),
                ),
                _ => {
                    let secretish = ["key", "token", "secret", "auth", "cookie", "password", "session"]
                        .iter()
                        .any(|w| lower.contains(w))
                        || value.starts_with("sk-")
                        || value.to_ascii_lowercase().starts_with("bearer ");
                    if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        self.warn(line, format!("proxy_set_header {name}: not a valid header name, not translated"));
                    } else if secretish {
                        self.warn(line, format!("proxy_set_header {name}: looks like a credential, not copied (sluice never writes secrets into the config) — set it in front of sluice or ask for a secret header"));
                    } else if value.is_empty() {
                        self.warn(line, format!("proxy_set_header {name} \"\" (removing a header) not translated: sluice passes client headers as they are"));
                    } else if value.contains('$') {
                        self.warn(line, format!("proxy_set_header {name} uses nginx variables: not translated"));
                    } else {
                        set_headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                        set_headers.push((name.clone(), value.clone()));
                    }
                }
            }
        }
        self.headers = headers;
        if !key_seen {
            self.warn(0, "no proxy_set_header x-api-key/Authorization: nginx passed each client's own key through; sluice authenticates clients with tenant keys and sends its own upstream key from ANTHROPIC_API_KEY");
        }
        let _ = writeln!(out, "    auth: {}", auth.unwrap_or("x-api-key"));
        if let Some(v) = version {
            let _ = writeln!(
                out,
                "    anthropic_version: {}",
                serde_json::to_string(&v).unwrap_or_default()
            );
        }
        if let Some((h, line)) = host_value {
            if h.contains('$') {
                self.info(line, "proxy_set_header Host: not needed — sluice sends each endpoint's host name as Host and SNI");
            } else {
                let hosts: Vec<String> = self
                    .locations
                    .iter()
                    .filter_map(|l| l.proxy_pass.as_ref())
                    .filter_map(|(pp, _)| {
                        pp.split_once("://")
                            .map(|(_, r)| r.split('/').next().unwrap_or("").to_string())
                    })
                    .flat_map(|a| match self.upstream_blocks.get(&a) {
                        Some(b) => b.servers.iter().map(|s| s.host.clone()).collect(),
                        None => vec![a],
                    })
                    .map(|h| h.split(':').next().unwrap_or("").to_string())
                    .collect();
                if hosts.iter().all(|x| *x == h) {
                    self.info(line, "proxy_set_header Host: not needed — sluice sends the endpoint's host name as Host and SNI");
                } else {
                    self.warn(line, format!("proxy_set_header Host {h} not translated: sluice sends each endpoint's own host name as Host and SNI (use an endpoint URL with that host name)"));
                }
            }
        }
        if !set_headers.is_empty() {
            out.push_str("    set_headers:\n");
            for (n, v) in &set_headers {
                let _ = writeln!(out, "      {}: {}", q(n), q(v));
            }
        }
        if let Some(ca) = &self.ca_file {
            let _ = writeln!(out, "    tls: {{ ca_file: {} }}", q(&ca.value));
        }
        let mut t = Vec::new();
        if let Some(c) = &self.connect_timeout {
            t.push(format!("connect: {}", fmt_dur(c.value)));
        }
        if let Some(r) = self.read_timeout.clone() {
            let v = fmt_dur(r.value);
            t.push(format!("first_byte: {v}"));
            t.push(format!("idle: {v}"));
            let line = r.line;
            if r.value > 15 * 60_000 {
                t.push(format!("total: {v}"));
                self.info(line, format!("proxy_read_timeout → timeouts.first_byte and idle; total raised to {v} too (sluice also caps the whole exchange, 15m by default; nginx has no such cap)"));
            } else {
                self.info(line, "proxy_read_timeout → timeouts.first_byte and timeouts.idle (sluice also caps the whole exchange: timeouts.total, 15m by default)");
            }
        }
        if !t.is_empty() {
            let _ = writeln!(out, "    timeouts: {{ {} }}", t.join(", "));
        }
        out
    }

    /// What an x-api-key / Authorization header value means; never prints it.
    fn key_value(&mut self, name: &str, value: &str, line: usize) {
        let lower = value.to_ascii_lowercase();
        if name.eq_ignore_ascii_case("authorization")
            && !lower.starts_with("bearer ")
            && !value.starts_with('$')
        {
            self.warn(line, "proxy_set_header Authorization is not `Bearer …`: sluice sends `Authorization: Bearer KEY` (auth: bearer)");
        }
        let var = value
            .split_whitespace()
            .last()
            .filter(|v| v.starts_with('$'))
            .map(|v| v.trim_matches(|c| c == '{' || c == '}').replace("${", "$"));
        match var {
            None => self.warn(
                line,
                format!("proxy_set_header {name}: the key was inline in nginx.conf: put it in the ANTHROPIC_API_KEY env var (sluice never reads inline secrets); it is not copied"),
            ),
            Some(v) if v == "$http_x_api_key" || v == "$http_authorization" => self.warn(
                line,
                format!("proxy_set_header {name} {v}: nginx passed each client's own key upstream; sluice authenticates clients with tenant keys and sends its upstream key from ANTHROPIC_API_KEY"),
            ),
            Some(v) => {
                if let Some((val, set_line)) = self.sets.get(&v).cloned() {
                    self.used_sets.push(v.clone());
                    if val.contains('$') {
                        self.warn(line, format!("proxy_set_header {name} {v}: the key is computed (set at line {set_line}): put the upstream key in the ANTHROPIC_API_KEY env var"));
                    } else {
                        self.warn(
                            line,
                            format!("proxy_set_header {name} {v}: the key was inline in nginx.conf (set {v} at line {set_line}): put it in the ANTHROPIC_API_KEY env var (sluice never reads inline secrets); it is not copied"),
                        );
                    }
                } else if let Some(ml) = self.map_vars.get(&v).copied() {
                    self.warn(line, format!("proxy_set_header {name} {v}: keys chosen by the map at line {ml}: put each upstream key in an env var and list them under keys: [{{env: ANTHROPIC_API_KEY}}, {{env: ANTHROPIC_API_KEY_2}}, …] (sluice spreads requests over them)"));
                } else {
                    self.warn(line, format!("proxy_set_header {name} {v}: the key comes from an nginx variable: put the upstream key in the ANTHROPIC_API_KEY env var"));
                }
            }
        }
    }

    fn retry_yaml(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.retry_attempts {
            parts.push(format!("attempts: {}", a.value.max(1)));
        }
        if let Some(on) = &self.retry_on {
            parts.push(format!("on: [{}]", on.value.join(", ")));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("    retry: {{ {} }}\n", parts.join(", "))
        }
    }

    fn breaker_yaml(&mut self, block: &str) -> String {
        let Some(b) = self.upstream_blocks.get(block) else {
            return String::new();
        };
        if b.max_fails.is_none() && b.fail_timeout.is_none() {
            return String::new();
        }
        let line = b
            .max_fails
            .or(b.fail_timeout)
            .map(|x| x.1)
            .unwrap_or(b.line);
        let max_fails = b.max_fails.map(|x| x.0).unwrap_or(1);
        let fail_timeout = b.fail_timeout.map(|x| x.0).unwrap_or(10_000).max(1000);
        if max_fails == 0 {
            self.info(line, "max_fails=0 → circuit_breaker: { enabled: false }");
            return "    circuit_breaker: { enabled: false }\n".to_string();
        }
        let t = fmt_dur(fail_timeout);
        self.warn(
            line,
            format!("max_fails={max_fails} fail_timeout={t} → circuit_breaker: {{ min_requests: {max_fails}, error_rate: 50%, window: {t}, open_for: {t} }} (approximate: nginx counts failures, sluice opens on an error rate once min_requests were seen in the window)"),
        );
        format!("    circuit_breaker: {{ min_requests: {max_fails}, error_rate: 50%, window: {t}, open_for: {t} }}\n")
    }

    fn routes_yaml(&mut self, y: &mut String, per_loc: &[(String, usize)]) {
        /// path, methods, prefix, upstream, nginx line.
        type R = (String, Vec<&'static str>, bool, String, usize);
        fn push(
            routes: &mut Vec<R>,
            path: &str,
            methods: Vec<&'static str>,
            prefix: bool,
            up: &str,
            line: usize,
        ) {
            if !routes
                .iter()
                .any(|r| r.0 == path && r.2 == prefix && r.3 == up)
            {
                routes.push((path.to_string(), methods, prefix, up.to_string(), line));
            }
        }
        fn standard(routes: &mut Vec<R>, up: &str, line: usize) {
            for (path, m, prefix) in STANDARD_ROUTES {
                push(routes, path, vec![m], prefix, up, line);
            }
        }
        let mut routes: Vec<R> = Vec::new();
        let mut warns = Vec::new();
        for (up, li) in per_loc {
            let loc = &self.locations[*li];
            let p = loc.path.as_str();
            if !p.starts_with('/') {
                warns.push((
                    loc.line,
                    format!("location {p}: only path locations become routes; not translated"),
                ));
                continue;
            }
            match loc.modifier.as_str() {
                "=" => {
                    let m = STANDARD_ROUTES
                        .iter()
                        .find(|r| r.0 == p)
                        .map(|r| vec![r.1])
                        .unwrap_or_default();
                    push(&mut routes, p, m, false, up, loc.line);
                }
                "~" | "~*" => {
                    standard(&mut routes, up, loc.line);
                    warns.push((loc.line, format!("regex location {p} translated as the three standard routes (POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models…): check them against the regex — sluice is an allowlist, other paths get 404")));
                }
                _ => {
                    let rewritten = loc
                        .proxy_pass
                        .as_ref()
                        .and_then(|(pp, _)| pp.split_once("://"))
                        .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
                        .is_some_and(|uri| !uri.ends_with(p));
                    if matches!(p, "/" | "/v1" | "/v1/") || rewritten {
                        standard(&mut routes, up, loc.line);
                        warns.push((loc.line, format!("location {p} translated as the three standard routes (POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models and below): sluice is an allowlist — other paths (e.g. /v1/messages/batches, /v1/files) get 404 unless you add routes")));
                    } else if let Some(r) = STANDARD_ROUTES
                        .iter()
                        .find(|r| r.0 == p.trim_end_matches('/') && r.2)
                    {
                        push(&mut routes, r.0, vec![r.1], true, up, loc.line);
                    } else {
                        let path = p.trim_end_matches('/');
                        let path = if path.is_empty() { "/" } else { path };
                        push(&mut routes, path, Vec::new(), true, up, loc.line);
                    }
                }
            }
        }
        for (l, m) in warns {
            self.warn(l, m);
        }
        if routes.is_empty() {
            standard(&mut routes, "anthropic", 0);
        }
        y.push_str("routes:\n");
        let mut emitted: Vec<(String, bool, String)> = Vec::new();
        for (path, methods, prefix, up, line) in routes {
            if let Some(other) = emitted
                .iter()
                .find(|e| e.0 == path && e.1 == prefix && e.2 != up)
            {
                let other = other.2.clone();
                self.warn(
                    line,
                    format!("route {path} already goes to upstream {other} (sluice routes by path, first match wins): not emitted for upstream {up}"),
                );
                continue;
            }
            emitted.push((path.clone(), prefix, up.clone()));
            let mut e = format!("  - {{ path: {}", q(&path));
            if !methods.is_empty() {
                let _ = write!(e, ", methods: [{}]", methods.join(", "));
            }
            let _ = write!(e, ", upstream: {up}");
            if prefix {
                e.push_str(", prefix: true");
            }
            e.push_str(" }\n");
            y.push_str(&e);
        }
    }

    fn limits_yaml(&mut self, y: &mut String) {
        let mut lines: Vec<String> = Vec::new();
        if let Some(b) = &self.max_body {
            lines.push(format!("  max_body: {}", fmt_size(b.value)));
        }
        let mut client_ip: Option<(String, usize)> = None;
        let mut requests: Option<(String, usize)> = None;
        let reqs = std::mem::take(&mut self.limit_reqs);
        for r in &reqs {
            let Some(z) = self.req_zones.get(&r.zone) else {
                self.warn(
                    r.line,
                    format!(
                        "limit_req zone={} has no limit_req_zone: not translated",
                        r.zone
                    ),
                );
                continue;
            };
            let key = z.key.to_ascii_lowercase();
            let zkey = z.key.clone();
            let rate = z.rate.clone();
            let zl = z.line;
            if matches!(
                key.as_str(),
                "$binary_remote_addr" | "$remote_addr" | "$realip_remote_addr"
            ) {
                if !r.nodelay {
                    self.warn(r.line, "limit_req by address without nodelay: sluice's client_ip guard never delays — requests within the burst pass at once, beyond it are refused");
                }
                let v = format!("{{ rate: {rate}, burst: {} }}", r.burst);
                if let Some((old, ol)) = &client_ip {
                    if *old != v {
                        self.warn(r.line, format!("a second limit_req by address (first at line {ol}): sluice has one client_ip limit; this one is used"));
                    }
                }
                client_ip = Some((v, r.line));
            } else {
                let v = format!(
                    "{{ rate: {rate}, burst: {}, delay: {} }}",
                    r.burst, !r.nodelay
                );
                if !mentions_client_key(&key)
                    && !key.starts_with("$http_")
                    && !key.starts_with("$cookie_")
                {
                    self.warn(zl, format!("limit_req_zone keyed by {zkey}: sluice limits requests per tenant (limits.requests, the default for every tenant) — check that this is what you want"));
                }
                if let Some((old, ol)) = &requests {
                    if *old != v {
                        self.warn(r.line, format!("a second per-key limit_req (first at line {ol}): sluice has one default limits.requests; this one is used (per-tenant overrides: tenants[].limits.requests)"));
                    }
                }
                requests = Some((v, r.line));
            }
        }
        self.limit_reqs = reqs;
        let used: Vec<String> = self.limit_reqs.iter().map(|r| r.zone.clone()).collect();
        let unused: Vec<usize> = self
            .req_zones
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(_, z)| z.line)
            .collect();
        for l in unused {
            self.warn(
                l,
                "limit_req_zone is not used by any limit_req: not translated",
            );
        }
        if let Some((v, _)) = client_ip {
            lines.push(format!("  client_ip: {v}"));
        }
        if let Some(h) = self.real_ip_header.clone() {
            if !h.0.eq_ignore_ascii_case("x-forwarded-for") {
                let l = h.1;
                let msg = format!("real_ip_header {} not translated: sluice believes X-Forwarded-For from limits.trusted_proxies only", h.0);
                self.warn(l, msg);
            }
        } else if let Some(l) = self.first_real_ip_line {
            self.warn(l, "set_real_ip_from without real_ip_header (nginx then reads X-Real-IP): sluice believes X-Forwarded-For from limits.trusted_proxies");
        }
        if !self.trusted.is_empty() {
            lines.push(format!(
                "  trusted_proxies: [{}]",
                self.trusted
                    .iter()
                    .map(|t| q(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some((v, _)) = requests {
            lines.push(format!("  requests: {v}"));
        }
        let conns = self.limit_conns.clone();
        let mut conc: Option<u64> = None;
        for (zone, n, line) in conns {
            match self.conn_zones.get(&zone).cloned() {
                Some((key, _)) => {
                    let k = key.to_ascii_lowercase();
                    if k.contains("remote_addr") {
                        self.warn(line, format!("limit_conn {zone} {n} was per client address: limits.concurrency caps open requests per tenant (every client of a tenant shares it)"));
                    } else {
                        self.info(line, "limit_conn → limits.concurrency (open requests per tenant, streams included)");
                    }
                    if conc.is_some_and(|c| c != n) {
                        self.warn(line, "a second limit_conn: sluice has one default limits.concurrency; the smaller is used");
                    }
                    conc = Some(conc.map_or(n, |c| c.min(n)));
                }
                None => self.warn(
                    line,
                    format!("limit_conn {zone}: no limit_conn_zone of that name, not translated"),
                ),
            }
        }
        let used: Vec<String> = self.limit_conns.iter().map(|c| c.0.clone()).collect();
        let unused: Vec<usize> = self
            .conn_zones
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(_, z)| z.1)
            .collect();
        for l in unused {
            self.warn(
                l,
                "limit_conn_zone is not used by any limit_conn: not translated",
            );
        }
        if let Some(c) = conc {
            lines.push(format!("  concurrency: {}", c.min(u32::MAX as u64)));
        }
        if !lines.is_empty() {
            y.push_str("limits:\n");
            for l in lines {
                y.push_str(&l);
                y.push('\n');
            }
        }
    }

    fn tenants_yaml(&mut self, y: &mut String) {
        y.push_str("tenants:\n  - name: default\n    keys:\n      - env: SLUICE_TENANT_KEY\n");
        let mut ips = Vec::new();
        let allows = self.allows.clone();
        for (a, l) in &allows {
            if a.starts_with("unix:") {
                self.warn(*l, "allow unix: not translated");
            } else if crate::config::parse_cidr(a).is_some() {
                ips.push(q(a));
            } else {
                self.warn(
                    *l,
                    format!("allow {a}: not a CIDR or address, not translated"),
                );
            }
        }
        if !ips.is_empty() {
            if self.deny_all.is_some() {
                let _ = writeln!(y, "    ip_allow: [{}]", ips.join(", "));
                self.info(allows[0].1, "allow …; deny all; → tenants[].ip_allow (other addresses get 403 permission_error)");
            } else {
                self.warn(
                    allows[0].1,
                    "allow without `deny all` restricted nothing in nginx: no ip_allow emitted",
                );
            }
        } else if let Some(l) = self.deny_all {
            self.warn(
                l,
                "deny all without allow: not translated (it refuses everyone)",
            );
        }
        let line = self.tenant_hint_line.unwrap_or(0);
        self.warn(
            line,
            "tenants: a `default` tenant whose gateway key is read from SLUICE_TENANT_KEY was emitted — create gateway keys with `sluice keygen --tenant NAME` and list their sha256 under tenants[].keys (clients send those keys, never the Anthropic key)",
        );
    }
}

/// Built-in redaction rules a Lua pattern looks like.
fn redaction_rules(code: &str) -> Vec<&'static str> {
    let mut rules = Vec::new();
    let id = code.contains("{17}") || code.contains("身份证");
    let bank = regex::Regex::new(r"\{1[0-9],\s*1?9\}|\{16\}")
        .map(|r| r.is_match(code))
        .unwrap_or(false)
        || code.contains("银行卡");
    let mobile = regex::Regex::new(r"1\[3-?[0-9]*\]|1\[3456789\]")
        .map(|r| r.is_match(code))
        .unwrap_or(false)
        || code.contains("手机");
    let email = regex::Regex::new(r"[\]+*]@|@\[|@\\w|%w\+@")
        .map(|r| r.is_match(code))
        .unwrap_or(false)
        || code.contains("邮箱");
    if id {
        rules.push("cn_id_card");
    }
    if bank {
        rules.push("bank_card");
    }
    if mobile {
        rules.push("cn_mobile");
    }
    if email {
        rules.push("email");
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(text: &str) -> Import {
        translate(text).expect("translate")
    }

    fn has(imp: &Import, needle: &str) -> bool {
        imp.warnings.iter().any(|w| w.message.contains(needle))
    }

    /// The output deserializes into sluice's schema (unknown keys, types, units).
    fn schema_ok(yaml: &str) -> crate::config::schema::File {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    const MIN: &str =
        "http { server { listen 8080; location / { proxy_pass https://api.anthropic.com; } } }";

    #[test]
    fn tokenizer_quotes_comments_and_escapes() {
        let d =
            parse("# top\nname \"a b\" 'c;d' e\\ f \"q\\\"x\"; # trailing\nnext ${x}y;\n").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "name");
        assert_eq!(d[0].args, ["a b", "c;d", "e\\ f", "q\"x"]);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[1].args, ["${x}y"]);
        assert_eq!(d[1].line, 3);
        let d = parse("a x#y;").unwrap();
        assert_eq!(d[0].args, ["x#y"]);
        let d = parse("a \"\\d{17}\";").unwrap();
        assert_eq!(d[0].args, ["\\d{17}"]);
    }

    #[test]
    fn tokenizer_nested_blocks_and_lines() {
        let text = "http {\n  server {\n    listen 80;\n    location / {\n      proxy_pass http://x;\n    }\n  }\n}\n";
        let d = parse(text).unwrap();
        assert_eq!(d[0].name, "http");
        let server = &d[0].block.as_ref().unwrap()[0];
        assert_eq!(server.line, 2);
        let b = server.block.as_ref().unwrap();
        assert_eq!((b[0].name.as_str(), b[0].line), ("listen", 3));
        assert_eq!(
            (b[1].name.as_str(), b[1].args[0].as_str(), b[1].line),
            ("location", "/", 4)
        );
        let pp = &b[1].block.as_ref().unwrap()[0];
        assert_eq!((pp.name.as_str(), pp.line), ("proxy_pass", 5));
    }

    #[test]
    fn tokenizer_errors_have_lines() {
        assert_eq!(parse("a {\n b;\n").unwrap_err().line, 1);
        assert_eq!(parse("a;\n}\n").unwrap_err().line, 2);
        assert_eq!(parse("a \"x\n\ny").unwrap_err().line, 1);
        assert_eq!(parse("a b").unwrap_err().line, 1);
        assert!(parse("a \"x\"y;").is_err());
    }

    #[test]
    fn tokenizer_lua_blocks_are_raw() {
        let text = "access_by_lua_block {\n  local t = { a = 1 } -- } comment\n  ngx.say('{\"x\":1}') local s = [[ } ]] local u = [==[ ]] } ]==]\n  --[[ } ]]\n}\nnext;\n";
        let d = parse(text).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[0].lua.as_ref().unwrap().contains("ngx.say"));
        assert_eq!((d[1].name.as_str(), d[1].line), ("next", 6));
    }

    #[test]
    fn units() {
        assert_eq!(nginx_time_ms("60"), Some(60_000));
        assert_eq!(nginx_time_ms("60s"), Some(60_000));
        assert_eq!(nginx_time_ms("5m"), Some(300_000));
        assert_eq!(nginx_time_ms("1h30m"), Some(5_400_000));
        assert_eq!(nginx_time_ms("500ms"), Some(500));
        assert_eq!(nginx_time_ms("x"), None);
        assert_eq!(nginx_size("10m"), Some(10 << 20));
        assert_eq!(nginx_size("512k"), Some(512 << 10));
        assert_eq!(nginx_size("1G"), Some(1 << 30));
        assert_eq!(nginx_size("100"), Some(100));
        assert_eq!(nginx_rate("10r/s").as_deref(), Some("10/s"));
        assert_eq!(nginx_rate("60r/m").as_deref(), Some("60/m"));
        assert_eq!(nginx_rate("60/m"), None);
        assert_eq!(fmt_dur(300_000), "300s");
        assert_eq!(fmt_dur(3_600_000), "1h");
        assert_eq!(fmt_dur(900_000), "15m");
        assert_eq!(fmt_size(20 << 20), "20MiB");
        assert_eq!(fmt_size(1000), "1000");
        assert_eq!(q("0.0.0.0:8080"), "0.0.0.0:8080");
        assert_eq!(q("[::]:443"), "\"[::]:443\"");
        assert_eq!(q("on"), "\"on\"");
        assert_eq!(q("2023-06-01"), "\"2023-06-01\"");
        assert_eq!(q("a b"), "\"a b\"");
    }

    #[test]
    fn listeners_and_tls() {
        let i = tr("http { server { listen 127.0.0.1:8080; listen 443 ssl; ssl_certificate /etc/ssl/c.pem; ssl_certificate_key /etc/ssl/c.key; location / { proxy_pass https://api.anthropic.com; } } }");
        assert!(i.yaml.contains("  - addr: 127.0.0.1:8080\n"), "{}", i.yaml);
        assert!(
            i.yaml.contains(
                "  - addr: 0.0.0.0:443\n    tls: { cert: /etc/ssl/c.pem, key: /etc/ssl/c.key }\n"
            ),
            "{}",
            i.yaml
        );
        let f = schema_ok(&i.yaml);
        assert_eq!(f.listeners.len(), 2);
        let i = tr("http { ssl_certificate /a.pem; ssl_certificate_key /a.key; server { listen [::]:8443 ssl http2; location / { proxy_pass https://api.anthropic.com; } } }");
        assert!(
            i.yaml
                .contains("addr: \"[::]:8443\"\n    tls: { cert: /a.pem, key: /a.key }"),
            "{}",
            i.yaml
        );
        assert!(has(&i, "HTTP/2"));
        schema_ok(&i.yaml);
    }

    #[test]
    fn redirect_server_is_not_a_listener() {
        let i = tr("http { server { listen 80; return 301 https://$host$request_uri; } server { listen 8080; location / { proxy_pass https://api.anthropic.com; } } }");
        assert!(!i.yaml.contains("0.0.0.0:80\n"), "{}", i.yaml);
        assert!(has(&i, "proxies nothing"));
        assert!(has(&i, "not translated: return"));
    }

    #[test]
    fn prefix_location_gives_standard_routes_and_a_warning() {
        let i = tr(MIN);
        let f = schema_ok(&i.yaml);
        assert_eq!(f.routes.len(), 3);
        assert_eq!(f.routes[0].path, "/v1/messages");
        assert_eq!(f.routes[0].methods, ["POST"]);
        assert_eq!(f.routes[2].path, "/v1/models");
        assert!(f.routes[2].prefix);
        assert!(has(&i, "allowlist"));
        assert_eq!(
            f.upstreams["anthropic"].endpoints[0].url,
            "https://api.anthropic.com"
        );
        assert_eq!(f.listeners[0].addr, "0.0.0.0:8080");
    }

    #[test]
    fn exact_locations_give_exact_routes_and_base_paths() {
        let i = tr("http { server { listen 8080;
            location = /v1/messages { proxy_pass https://relay.example.com/claude/v1/messages; }
            location = /v1/models { proxy_pass https://relay.example.com/claude/v1/models; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.routes.len(), 2);
        assert_eq!(
            (
                f.routes[0].path.as_str(),
                f.routes[0].methods.clone(),
                f.routes[0].prefix
            ),
            ("/v1/messages", vec!["POST".to_string()], false)
        );
        assert_eq!(f.routes[1].methods, ["GET"]);
        assert_eq!(
            f.upstreams["anthropic"].endpoints[0].url,
            "https://relay.example.com/claude"
        );
        assert!(!has(&i, "allowlist"));
    }

    #[test]
    fn path_rewriting_location_is_warned() {
        let i = tr("http { server { listen 8080; location /claude/ { proxy_pass https://api.anthropic.com/; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(
            f.upstreams["anthropic"].endpoints[0].url,
            "https://api.anthropic.com"
        );
        assert_eq!(f.routes.len(), 3);
        assert!(has(&i, "rewrites the path"));
        let i = tr("http { server { listen 8080; location /claude/ { proxy_pass https://relay.example.com/anthropic/v1/; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(
            f.upstreams["anthropic"].endpoints[0].url,
            "https://relay.example.com/anthropic"
        );
    }

    #[test]
    fn same_routes_for_two_upstreams_are_not_emitted_twice() {
        let i = tr("http { server { listen 8080; location / { proxy_pass https://api.anthropic.com; } location /backup/ { proxy_pass https://relay.example.com/; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.routes.len(), 3);
        assert!(f.routes.iter().all(|r| r.upstream == "anthropic"));
        assert_eq!(f.upstreams.len(), 2);
        assert!(has(&i, "already goes to upstream anthropic"));
    }

    #[test]
    fn conf_d_snippet_without_http_block() {
        let i = tr("upstream c { server api.anthropic.com:443; }\nlimit_req_zone $binary_remote_addr zone=ip:1m rate=5r/s;\nserver { listen 8080; location / { limit_req zone=ip; proxy_pass https://c; } }\n");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.listeners[0].addr, "0.0.0.0:8080");
        assert_eq!(
            f.upstreams["anthropic"].endpoints[0].url,
            "https://api.anthropic.com"
        );
        assert_eq!(f.limits.client_ip.as_ref().unwrap().rate.count, 5);
    }

    #[test]
    fn dual_stack_listen_keeps_the_ipv4_socket() {
        let i = tr("http { server { listen 80; listen [::]:80; listen [::1]:9000; location / { proxy_pass https://api.anthropic.com; } } }");
        let f = schema_ok(&i.yaml);
        let addrs: Vec<&str> = f.listeners.iter().map(|l| l.addr.as_str()).collect();
        assert_eq!(addrs, ["0.0.0.0:80", "[::1]:9000"]);
        assert!(has(&i, "dual-stack"));
    }

    #[test]
    fn if_on_a_key_map_is_a_key_check() {
        let i = tr("http { map $http_x_api_key $ok { default 0; \"k-SECRET\" 1; } server { listen 80; if ($ok = 0) { return 401; } location / { proxy_pass https://api.anthropic.com; } } }");
        assert!(i
            .warnings
            .iter()
            .any(|w| w.message.starts_with("not translated: if block")
                && w.message.contains("tenants[].keys")));
        assert!(!format!("{:?}", i.warnings).contains("SECRET"));
    }

    #[test]
    fn upstream_block_with_backup_and_breaker() {
        let i = tr("http { upstream claude { server api.anthropic.com:443 max_fails=3 fail_timeout=30s; server relay.example.com:8443 backup; keepalive 32; }
            server { listen 8080; location /v1/ { proxy_pass https://claude; } } }");
        let f = schema_ok(&i.yaml);
        let u = &f.upstreams["anthropic"];
        assert_eq!(u.endpoints.len(), 2);
        assert_eq!(u.endpoints[0].url, "https://api.anthropic.com");
        assert!(!u.endpoints[0].backup);
        assert_eq!(u.endpoints[1].url, "https://relay.example.com:8443");
        assert!(u.endpoints[1].backup);
        assert_eq!(u.circuit_breaker.min_requests, 3);
        assert_eq!(u.circuit_breaker.open_for.0.as_secs(), 30);
        assert_eq!(u.pool.size, 32);
        assert!(has(&i, "approximate"));
    }

    #[test]
    fn inline_key_is_never_copied() {
        let i = tr(
            "http { server { listen 8080; location / { proxy_pass https://api.anthropic.com;
            proxy_set_header x-api-key sk-ant-SECRET-1;
            proxy_set_header anthropic-version 2023-06-01;
            proxy_set_header X-Claude-Timezone Asia/Shanghai;
            proxy_set_header X-Relay-Token tok-SECRET-2;
            proxy_set_header Host api.anthropic.com;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; } } }",
        );
        let f = schema_ok(&i.yaml);
        let u = &f.upstreams["anthropic"];
        assert_eq!(u.keys[0].env.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(u.anthropic_version, "2023-06-01");
        assert_eq!(u.set_headers.len(), 1);
        assert_eq!(u.set_headers["X-Claude-Timezone"], "Asia/Shanghai");
        let all = format!("{}{:?}", i.yaml, i.warnings);
        assert!(!all.contains("SECRET"), "{all}");
        assert!(has(&i, "the key was inline in nginx.conf: put it in the ANTHROPIC_API_KEY env var (sluice never reads inline secrets)"));
        assert!(has(&i, "X-Forwarded-For: not needed"));
        assert!(has(&i, "looks like a credential"));
    }

    #[test]
    fn bearer_key_via_set_variable() {
        let i = tr("http { server { listen 8080; set $k \"sk-ant-SECRET\"; location / { proxy_pass https://api.anthropic.com; proxy_set_header Authorization \"Bearer $k\"; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(
            f.upstreams["anthropic"].auth,
            crate::config::schema::AuthStyle::Bearer
        );
        assert!(has(&i, "inline in nginx.conf (set $k"));
        assert!(!format!("{}{:?}", i.yaml, i.warnings).contains("SECRET"));
        let i = tr(MIN);
        assert!(has(&i, "passed each client's own key"));
    }

    #[test]
    fn timeouts_and_body_size() {
        let i = tr("http { client_max_body_size 10m; server { listen 8080; location / { proxy_pass https://api.anthropic.com; proxy_connect_timeout 5; proxy_read_timeout 1h; proxy_send_timeout 60s; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.limits.max_body.0, 10 << 20);
        let t = &f.upstreams["anthropic"].timeouts;
        assert_eq!(t.connect.0.as_secs(), 5);
        assert_eq!(t.first_byte.0.as_secs(), 3600);
        assert_eq!(t.idle.0.as_secs(), 3600);
        assert_eq!(t.total.0.as_secs(), 3600);
        assert!(i.yaml.contains("max_body: 10MiB"));
        assert!(has(&i, "proxy_send_timeout not translated"));
    }

    #[test]
    fn limit_req_by_address_and_by_key() {
        let i = tr(
            "http { limit_req_zone $binary_remote_addr zone=ip:10m rate=10r/s;
            limit_req_zone $http_x_api_key zone=k:10m rate=100r/m;
            server { listen 8080; location / { proxy_pass https://api.anthropic.com;
              limit_req zone=ip burst=20 nodelay; limit_req zone=k burst=5; } } }",
        );
        let f = schema_ok(&i.yaml);
        let c = f.limits.client_ip.as_ref().unwrap();
        assert_eq!((c.rate.count, c.rate.per.as_secs(), c.burst), (10, 1, 20));
        let r = f.limits.requests.as_ref().unwrap();
        assert_eq!(
            (r.rate.count, r.rate.per.as_secs(), r.burst, r.delay),
            (100, 60, 5, true)
        );
        assert!(i.yaml.contains("client_ip: { rate: 10/s, burst: 20 }"));
    }

    #[test]
    fn limit_conn_allow_deny_and_real_ip() {
        let i = tr("http { limit_conn_zone $binary_remote_addr zone=addr:10m;
            set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For;
            server { listen 8080; allow 203.0.113.0/24; allow 198.51.100.7; deny all;
              location / { proxy_pass https://api.anthropic.com; limit_conn addr 8; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.limits.concurrency, Some(8));
        assert_eq!(f.limits.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(f.tenants[0].ip_allow, ["203.0.113.0/24", "198.51.100.7"]);
        assert_eq!(f.tenants[0].name, "default");
        assert_eq!(
            f.tenants[0].keys[0].env.as_deref(),
            Some("SLUICE_TENANT_KEY")
        );
        assert!(has(&i, "per client address"));
        assert!(has(&i, "sluice keygen"));
    }

    #[test]
    fn streaming_directives_are_info() {
        let i = tr("http { gzip off; server { listen 8080; location / { proxy_pass https://api.anthropic.com; proxy_buffering off; proxy_cache off; chunked_transfer_encoding on; proxy_http_version 1.1; proxy_ssl_server_name on; } } }");
        let infos = i
            .warnings
            .iter()
            .filter(|w| w.level == Level::Info && w.message.starts_with("not needed"))
            .count();
        assert_eq!(infos, 6, "{:?}", i.warnings);
    }

    #[test]
    fn access_log_and_threads() {
        let i = tr("worker_processes auto; http { access_log /dev/stdout main; server { listen 8080; location / { proxy_pass https://api.anthropic.com; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.logging.access.path, "stdout");
        assert_eq!(f.server.threads, 2);
        assert!(has(&i, "fixed JSON"));
        let i = tr("worker_processes 8; http { server { listen 8080; location / { proxy_pass https://api.anthropic.com; } } }");
        assert_eq!(schema_ok(&i.yaml).server.threads, 8);
    }

    #[test]
    fn lua_key_check_and_redaction() {
        let i = tr("http { server { listen 8080; location / {
            access_by_lua_block { if ngx.var.http_x_api_key ~= \"abc\" then return ngx.exit(401) end }
            rewrite_by_lua_block { local b = ngx.re.gsub(body, \"\\\\d{17}[\\\\dXx]\", \"*\", \"jo\") b = ngx.re.gsub(b, \"\\\\d{16,19}\", \"*\") }
            body_filter_by_lua_block { ngx.arg[1] = ngx.re.gsub(ngx.arg[1], \"1[3-9]\\\\d{9}\", \"*\") }
            content_by_lua_block { ngx.say(\"hi\") }
            proxy_pass https://api.anthropic.com; } } }");
        assert!(has(&i, "key check → tenants[].keys"));
        assert!(has(
            &i,
            "add: filters: { request: { redact: [cn_id_card, bank_card] } }"
        ));
        assert!(has(
            &i,
            "add: filters: { response: { redact: [cn_mobile] } }"
        ));
        assert!(has(&i, "not translated: content_by_lua_block"));
        assert!(!i.yaml.contains("filters"));
        schema_ok(&i.yaml);
    }

    #[test]
    fn unknown_directives_and_includes_are_warned_without_arguments() {
        let i = tr("events { worker_connections 1024; } http { include /etc/nginx/mime.types; set $secret hunter2; server { listen 8080; error_page 502 /x.html; location / { proxy_pass https://api.anthropic.com; add_header X-A b; } } }");
        assert!(has(&i, "include /etc/nginx/mime.types not followed"));
        assert!(has(&i, "not translated: error_page (line 1)"));
        assert!(has(&i, "not translated: add_header"));
        assert!(!format!("{:?}", i.warnings).contains("hunter2"));
        let w = i
            .warnings
            .iter()
            .find(|w| w.message.contains("error_page"))
            .unwrap();
        assert_eq!(
            w.render("n.conf"),
            "n.conf:1: warning: not translated: error_page (line 1)"
        );
    }

    #[test]
    fn nothing_proxied_still_gives_a_valid_config() {
        let i = tr("http { server { listen 8080; location / { return 200; } } }");
        let f = schema_ok(&i.yaml);
        assert_eq!(f.routes.len(), 3);
        assert_eq!(f.listeners[0].addr, "0.0.0.0:8080");
        assert!(has(&i, "no proxy_pass"));
        assert!(i.yaml.ends_with('\n'));
    }

    #[test]
    fn next_upstream_to_retry() {
        let i = tr("http { server { listen 8080; location / { proxy_pass https://api.anthropic.com; proxy_next_upstream error timeout http_502 http_529 non_idempotent; proxy_next_upstream_tries 4; } } }");
        let f = schema_ok(&i.yaml);
        let r = &f.upstreams["anthropic"].retry;
        assert_eq!(r.attempts, 4);
        assert_eq!(r.on.len(), 4);
        assert!(i
            .yaml
            .contains("retry: { attempts: 4, on: [connect, timeout, 502, 529] }"));
    }
}
