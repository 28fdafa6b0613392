//! The route table: an allowlist of paths and methods, each naming an upstream. Anything
//! not listed is 404 — the gateway is not an open proxy.

/// One allowed path.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path as written in the config (also the `route` label in logs and metrics).
    pub path: String,
    /// Match `path` and anything below it (`path/…`).
    pub prefix: bool,
    /// Allowed methods, upper case; empty = any.
    pub methods: Vec<String>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Override of `cache.enabled` for this route.
    pub cache: Option<bool>,
}

impl Route {
    fn matches_path(&self, path: &str) -> bool {
        if self.prefix {
            path == self.path
                || (path.starts_with(self.path.as_str())
                    && (self.path.ends_with('/')
                        || path.as_bytes().get(self.path.len()) == Some(&b'/')))
        } else {
            path == self.path
        }
    }

    fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found(&'a Route),
    /// The path exists but not for this method; the allowed methods.
    MethodNotAllowed(Vec<&'a str>),
    NotFound,
}

/// Routes in config order; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// Route a request by method and path (without query string).
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let mut allowed: Vec<&str> = Vec::new();
        for r in &self.routes {
            if r.matches_path(path) {
                if r.allows(method) {
                    return RouteMatch::Found(r);
                }
                allowed.extend(r.methods.iter().map(String::as_str));
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            allowed.sort_unstable();
            allowed.dedup();
            RouteMatch::MethodNotAllowed(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let r = |path: &str, prefix, methods: &[&str]| Route {
            path: path.into(),
            prefix,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            upstream: 0,
            cache: None,
        };
        RouteTable {
            routes: vec![
                r("/v1/messages", false, &["POST"]),
                r("/v1/messages/count_tokens", false, &["POST"]),
                r("/v1/models", true, &["GET"]),
            ],
        }
    }

    #[test]
    fn exact_and_prefix() {
        let t = table();
        assert!(
            matches!(t.find("POST", "/v1/messages"), RouteMatch::Found(r) if r.path == "/v1/messages")
        );
        assert!(
            matches!(t.find("POST", "/v1/messages/count_tokens"), RouteMatch::Found(r) if r.path == "/v1/messages/count_tokens")
        );
        assert!(matches!(t.find("GET", "/v1/models"), RouteMatch::Found(_)));
        assert!(matches!(
            t.find("GET", "/v1/models/claude-x"),
            RouteMatch::Found(_)
        ));
        assert!(matches!(t.find("GET", "/v1/modelsX"), RouteMatch::NotFound));
        assert!(matches!(
            t.find("POST", "/v1/messages/batches"),
            RouteMatch::NotFound
        ));
        assert!(matches!(t.find("GET", "/"), RouteMatch::NotFound));
    }

    #[test]
    fn wrong_method() {
        let t = table();
        match t.find("GET", "/v1/messages") {
            RouteMatch::MethodNotAllowed(m) => assert_eq!(m, vec!["POST"]),
            other => panic!("{other:?}"),
        }
    }
}
