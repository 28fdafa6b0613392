//! The Grafana dashboard in `conf/grafana/sluice.json` stays importable and only queries
//! metrics sluice really exports (and covers every family SPEC §5 lists).

use serde_json::Value;
use sluice::observe::metrics::METRICS;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

/// The metric families SPEC §5 promises; each must appear in at least one panel.
const SPEC_FAMILIES: &[&str] = &[
    "sluice_requests_total",
    "sluice_request_duration_seconds",
    "sluice_time_to_first_byte_seconds",
    "sluice_overhead_seconds",
    "sluice_upstream_requests_total",
    "sluice_tokens_total",
    "sluice_rejections_total",
    "sluice_filter_hits_total",
    "sluice_active_streams",
    "sluice_circuit_open",
    "sluice_key_available",
    "sluice_config_reloads_total",
    "sluice_quota_used_ratio",
];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana/sluice.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every panel, rows included, with the panels nested in collapsed rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn title(p: &Value) -> String {
    p["title"].as_str().unwrap_or("<untitled>").to_string()
}

/// Identifiers in a PromQL expression that start with `sluice_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("sluice_") {
                names.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

/// Map a series name to its family: `_bucket`/`_sum`/`_count` of a histogram → the histogram.
fn family(name: &str, exported: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if exported
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
            {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// The families sluice exports (name → type), from the rendered registry. Every metric
/// is touched first, since a vec metric without label values is not rendered at all.
fn exported_families() -> BTreeMap<String, String> {
    let m = &*METRICS;
    let (t, r) = ("t", "/v1/messages");
    m.requests.with_label_values(&[t, r, "200", ""]).inc();
    m.duration.with_label_values(&[t, r]).observe(0.1);
    m.ttfb.with_label_values(&[t, r]).observe(0.1);
    m.overhead.observe(0.001);
    m.upstream_requests
        .with_label_values(&["u", "http://127.0.0.1:2", "200"])
        .inc();
    m.upstream_retries.with_label_values(&["u"]).inc();
    m.tokens.with_label_values(&[t, "claude-x", "input"]).inc();
    m.rejections
        .with_label_values(&[t, "limit.tenant.requests"])
        .inc();
    m.filter_hits.with_label_values(&["f", "block"]).inc();
    m.active_streams.set(0);
    m.circuit_open
        .with_label_values(&["u", "http://127.0.0.1:2"])
        .set(0);
    m.key_available.with_label_values(&["u", "k1"]).set(1);
    m.config_reloads.with_label_values(&["ok"]).inc();
    m.quota_used.with_label_values(&[t, "tokens"]).set(0.5);
    m.quota_warnings.set(0);
    m.limiter_fallback.set(0);
    m.log_dropped.with_label_values(&["access"]).inc();
    m.admin_auth_failures.inc();

    // `render` rebuilds the circuit and key gauges from the config, so give it a key.
    let mut key = tempfile::NamedTempFile::new().expect("temp key file");
    writeln!(key, "sk-test-not-a-real-key").expect("write key");
    let yaml = format!(
        "listeners: [{{addr: 127.0.0.1:1}}]\n\
         upstreams: {{u: {{endpoints: [{{url: http://127.0.0.1:2}}], keys: [{{file: '{}', id: k1}}]}}}}\n\
         routes: [{{path: /v1/messages, upstream: u}}]\n",
        key.path().display()
    );
    let cfg = sluice::config::Config::from_str(&yaml, Path::new("t.yaml"))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let text = METRICS.render(&cfg, None);

    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                families.insert(name.to_string(), kind.to_string());
            }
        }
    }
    families
}

#[test]
fn dashboard_structure() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion missing or too old"
    );
    assert!(
        dash["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "__inputs must declare DS_PROMETHEUS"
    );
    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    let ds = vars.get("datasource").expect("datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["tenant", "route"] {
        let v = vars.get(name).unwrap_or_else(|| panic!("{name} variable"));
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["multi"], true, "{name} must be multi-value");
        assert_eq!(v["includeAll"], true, "{name} must include All");
    }

    let panels = all_panels(&dash);
    assert!(!panels.is_empty(), "no panels");
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for p in &panels {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {} has no numeric id", title(p)));
        assert!(ids.insert(id), "duplicate panel id {id} ({})", title(p));
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("panel {} gridPos.{k}", title(p)))
        });
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "panel {} gridPos {g}",
            title(p)
        );
        for (other, ox, oy, ow, oh) in &cells {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "panels {} and {other} overlap", title(p));
        }
        cells.push((title(p), x, y, w, h));

        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {} has no description",
            title(p)
        );
        assert!(
            p["datasource"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "panel {} has no datasource",
            title(p)
        );
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {} has no targets", title(p));
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "panel {}: target {} has no expr",
                title(p),
                t["refId"]
            );
        }
    }
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let dash = dashboard();
    let exported = exported_families();
    for f in SPEC_FAMILIES {
        assert!(
            exported.contains_key(*f),
            "SPEC §5 family {f} is not exported (or not touched in this test)"
        );
    }

    // Every query: panel targets, annotations and template variables.
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut used_by_panels = BTreeSet::new();
    for p in all_panels(&dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                for n in metric_names(e) {
                    used_by_panels.insert(family(&n, &exported));
                }
                queries.push((format!("panel {}", title(p)), e.to_string()));
            }
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            queries.push((format!("annotation {}", a["name"]), e.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"].as_str().or_else(|| v["query"]["query"].as_str());
        if let (Some(q), Some("query")) = (q, v["type"].as_str()) {
            queries.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }

    let mut unknown = Vec::new();
    for (place, q) in &queries {
        for n in metric_names(q) {
            let f = family(&n, &exported);
            if !exported.contains_key(&f) {
                unknown.push(format!("{place}: {n}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboard queries metrics sluice does not export: {unknown:#?}\nexported: {:#?}",
        exported.keys().collect::<Vec<_>>()
    );

    let missing: Vec<&str> = SPEC_FAMILIES
        .iter()
        .copied()
        .filter(|f| !used_by_panels.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "SPEC §5 families no panel shows: {missing:?}"
    );
}

#[test]
fn metric_name_extraction() {
    let e = r#"histogram_quantile(0.99, sum by (le) (rate(sluice_overhead_seconds_bucket{tenant=~"$tenant"}[$__rate_interval]))) / x_sluice_no"#;
    assert_eq!(metric_names(e), vec!["sluice_overhead_seconds_bucket"]);
    let mut ex = BTreeMap::new();
    ex.insert(
        "sluice_overhead_seconds".to_string(),
        "histogram".to_string(),
    );
    ex.insert("sluice_requests_total".to_string(), "counter".to_string());
    assert_eq!(
        family("sluice_overhead_seconds_bucket", &ex),
        "sluice_overhead_seconds"
    );
    assert_eq!(
        family("sluice_overhead_seconds_count", &ex),
        "sluice_overhead_seconds"
    );
    assert_eq!(
        family("sluice_requests_total_count", &ex),
        "sluice_requests_total_count"
    );
}
