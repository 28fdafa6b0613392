// sluice status page: signs in with the admin token (POST /admin/login sets an HttpOnly
// session cookie; the token is never stored by the page) and polls GET /admin/status.
// No external assets; every value is written with textContent.
"use strict";

(function () {
  var POLL_MS = 2000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var timer = null;
  var polling = false;
  var last = null;
  var pollStarted = 0;

  function $(id) { return document.getElementById(id); }
  function show(el, on) { el.hidden = !on; }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (k === "text") e.textContent = attrs[k];
        else if (k === "cls") e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      }
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  // ---- number formatting (the browser test parses these back) ----
  function fmtInt(n) { return n == null ? "–" : String(Math.round(n)); }
  function fmtRate(x) { return x == null ? "–" : x.toFixed(2); }
  function fmtPct(x) { return x == null ? "–" : (x * 100).toFixed(2) + "%"; }
  function fmtMs(x) {
    if (x == null) return "–";
    if (x < 1) return x.toFixed(3);
    if (x < 100) return x.toFixed(1);
    return x.toFixed(0);
  }
  function fmtTime(unix) {
    var d = new Date(unix * 1000);
    function p(n) { return (n < 10 ? "0" : "") + n; }
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function fmtSecs(ms) {
    if (!ms) return "–";
    var s = Math.ceil(ms / 1000);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ---- sparklines: inline SVG ----
  // seriesList: [{values, color}]; max: fixed top of the scale (default: the data's max)
  function spark(seriesList, fixedMax) {
    var n = seriesList[0].values.length;
    var max = fixedMax || 0;
    if (!fixedMax) {
      seriesList.forEach(function (s) {
        s.values.forEach(function (v) { if (v != null && v > max) max = v; });
      });
    }
    if (max <= 0) max = 1;
    var w = 100, h = 30;
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    var base = document.createElementNS(SVG_NS, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", String(w));
    base.setAttribute("y1", String(h)); base.setAttribute("y2", String(h));
    base.setAttribute("stroke", "currentColor"); base.setAttribute("stroke-opacity", "0.15");
    base.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(base);
    seriesList.forEach(function (s) {
      var d = "", run = 0;
      function x(i) { return n > 1 ? (i / (n - 1)) * w : w; }
      s.values.forEach(function (v, i) {
        var next = i + 1 < n ? s.values[i + 1] : null;
        if (v == null) { run = 0; return; }
        var y = h - (Math.min(v, max) / max) * (h - 2) - 1;
        d += (run ? "L" : "M") + x(i).toFixed(2) + " " + y.toFixed(2) + " ";
        // a lone point (no neighbour with data) gets a short tick so it shows
        if (!run && next == null) d += "L" + Math.max(0, x(i) - 1.2).toFixed(2) + " " + y.toFixed(2) + " ";
        run++;
      });
      if (!d) return;
      var path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d.trim());
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", s.color);
      path.setAttribute("stroke-width", "1.6");
      path.setAttribute("stroke-linejoin", "round");
      path.setAttribute("stroke-linecap", "round");
      path.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(path);
    });
    return svg;
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#2f6fde";
  }

  // ---- rendering ----
  function card(label, valueNodes, sparkNode, legend) {
    var v = el("div", { cls: "value" }, valueNodes);
    return el("div", { cls: "card" }, [
      el("div", { cls: "label", text: label }), v, sparkNode, legend || null,
    ]);
  }
  function val(key, text) { return el("span", { "data-k": key, text: text }); }
  function unit(text) { return el("small", { text: text }); }
  function sep() { return el("span", { cls: "sep", text: "/" }); }

  function renderCards(st) {
    var o = st.overview, m = o.last_minute, s = st.series;
    var a = cssVar("--accent"), b = cssVar("--accent2");
    function pair(key, q, series50, series99, label) {
      return card(label, [
        val(key + ".p50", fmtMs(q.p50)), sep(), val(key + ".p99", fmtMs(q.p99)), unit(" ms"),
      ], spark([{ values: series50, color: a }, { values: series99, color: b }]),
      el("div", { cls: "legend" }, [el("span", { text: "p50" }), el("span", { text: " · " }),
        el("span", { cls: "p99", text: "p99" })]));
    }
    var cards = [
      card("Requests/s", [val("rps", fmtRate(m.rps))], spark([{ values: s.rps, color: a }])),
      card("Success rate", [val("success_rate", fmtPct(m.success_rate))],
        spark([{ values: s.success_rate, color: a }], 1)),
      pair("latency", m.latency_ms, s.latency_p50_ms, s.latency_p99_ms, "Latency p50 / p99"),
      pair("ttfb", m.ttfb_ms, s.ttfb_p50_ms, s.ttfb_p99_ms, "Time to first byte p50 / p99"),
      pair("overhead", m.overhead_ms, s.overhead_p50_ms, s.overhead_p99_ms, "Gateway overhead p50 / p99"),
      card("Active streams", [val("active_streams", fmtInt(o.active_streams))],
        spark([{ values: s.active_streams, color: a }])),
    ];
    $("cards").replaceChildren.apply($("cards"), cards);

    var q = o.last_15m;
    function tot(label, key, text) {
      return el("span", null, [document.createTextNode(label + " "), el("b", { "data-k": key, text: text })]);
    }
    $("totals").replaceChildren(
      tot("15 min: requests", "15m.requests", fmtInt(q.requests)),
      tot("ok", "15m.ok", fmtInt(q.ok)),
      tot("4xx", "15m.client_errors", fmtInt(q.client_errors)),
      tot("5xx", "15m.server_errors", fmtInt(q.server_errors)),
      tot("success", "15m.success_rate", fmtPct(q.success_rate)),
      tot("rejections", "15m.rejections", fmtInt(q.rejections)),
      tot("upstream errors", "15m.upstream_errors", fmtInt(q.upstream_errors)),
      tot("tokens", "15m.tokens", fmtInt(q.tokens)),
      tot("since start", "requests_since_start", fmtInt(o.requests_since_start))
    );
  }

  // a count for today, with a bar against the daily quota (the limiter's share used)
  function quotaCell(key, used, limit, ratio) {
    var td = el("td", { cls: "barcell" }, [el("span", { "data-k": key, text: fmtInt(used) })]);
    if (limit) {
      var r = ratio != null ? ratio : 0;
      var fill = el("div");
      fill.style.width = (Math.max(0, Math.min(1, r)) * 100).toFixed(1) + "%";
      td.appendChild(el("div", { cls: "bar" + (r >= 1 ? " full" : r >= 0.8 ? " warn" : "") }, [fill]));
      td.appendChild(el("div", { cls: "quota", "data-k": key + ".quota",
        text: (r * 100).toFixed(1) + "% of " + limit }));
    }
    return td;
  }

  function renderTenants(st) {
    var rows = st.tenants.map(function (t) {
      var id = t.name === "" ? "(unauthenticated)" : t.name;
      var k = "tenant." + t.name + ".";
      var rej = el("div", { cls: "reasons" });
      Object.keys(t.rejections).forEach(function (r) {
        rej.appendChild(el("span", { cls: "tag warn", "data-k": k + "rejections." + r,
          text: r + ": " + t.rejections[r] }));
      });
      var conc = fmtInt(t.concurrency.active) + (t.concurrency.limit != null ? " / " + t.concurrency.limit : "");
      return el("tr", { "data-tenant": t.name }, [
        el("td", null, [el("span", { cls: t.configured ? "" : "hint", text: id })]),
        quotaCell(k + "requests_today", t.requests_today, t.quota.daily_requests, t.quota.requests_used),
        quotaCell(k + "tokens_today", t.tokens_today, t.quota.daily_tokens, t.quota.tokens_used),
        el("td", { cls: "num", "data-k": k + "tokens_per_min", text: fmtInt(t.tokens_per_min) }),
        el("td", { cls: "num", "data-k": k + "concurrency", text: conc }),
        el("td", null, [rej]),
      ]);
    });
    if (!rows.length) rows = [el("tr", null, [el("td", { cls: "empty", colspan: "6", text: "no tenants" })])];
    $("tenants").tBodies[0].replaceChildren.apply($("tenants").tBodies[0], rows);
  }

  function circuitTag(ep) {
    var c = ep.circuit, cls = c === "closed" ? "ok" : c === "open" ? "bad" : "warn";
    return el("span", { cls: "tag " + cls, text: c + (ep.breaker ? "" : " (no breaker)") });
  }

  function renderUpstreams(st) {
    var boxes = st.upstreams.map(function (u) {
      var k = "upstream." + u.name + ".";
      function e(label, key, n) {
        return el("span", null, [document.createTextNode(label + " "), el("b", { "data-k": k + key, text: fmtInt(n) })]);
      }
      var eps = el("table", { cls: "grid small" }, [
        el("thead", null, [el("tr", null, ["Endpoint", "Circuit", "Health", "Tries", "Errors"].map(function (h, i) {
          return el("th", { text: h, cls: i >= 3 ? "num" : "" });
        }))]),
        el("tbody", null, u.endpoints.map(function (ep) {
          var t = ep.tries;
          return el("tr", { "data-endpoint": ep.url }, [
            el("td", { cls: "mono", text: ep.url + (ep.backup ? " (backup)" : "") }),
            el("td", { "data-k": k + "endpoint." + ep.url + ".circuit" }, [circuitTag(ep)]),
            el("td", null, [el("span", { cls: "tag " + (ep.healthy ? "ok" : "bad"),
              text: ep.healthy ? (ep.health_check ? "healthy" : "up") : "failing" })]),
            el("td", { cls: "num", text: fmtInt(t.total) }),
            el("td", { cls: "num", text: fmtInt(t["4xx"] + t["5xx"] + t.connect + t.timeout) }),
          ]);
        })),
      ]);
      var keys = el("table", { cls: "grid small" }, [
        el("thead", null, [el("tr", null, ["Key", "State", "Cooldown left"].map(function (h, i) {
          return el("th", { text: h, cls: i === 2 ? "num" : "" });
        }))]),
        el("tbody", null, u.keys.length ? u.keys.map(function (key) {
          var cls = key.state === "available" ? "ok" : key.state === "refused" ? "bad" : "warn";
          return el("tr", { "data-key": key.id }, [
            el("td", { cls: "mono", text: key.id }),
            el("td", null, [el("span", { cls: "tag " + cls, "data-k": k + "key." + key.id + ".state", text: key.state })]),
            el("td", { cls: "num", text: fmtSecs(key.cooldown_left_ms) }),
          ]);
        }) : [el("tr", null, [el("td", { cls: "empty", colspan: "3", text: "no keys (client keys pass through)" })])]),
      ]);
      return el("div", { cls: "upstream" }, [
        el("h3", { text: u.name }),
        el("div", { cls: "errs" }, [
          e("tries", "tries", u.tries), e("retries", "retries", u.retries),
          e("4xx", "errors.4xx", u.errors["4xx"]), e("5xx", "errors.5xx", u.errors["5xx"]),
          e("connect", "errors.connect", u.errors.connect), e("timeout", "errors.timeout", u.errors.timeout),
        ]),
        el("div", { cls: "scroll" }, [eps]),
        el("div", { cls: "scroll" }, [keys]),
      ]);
    });
    $("upstreams").replaceChildren.apply($("upstreams"), boxes);
  }

  function renderConfig(st) {
    var c = st.config;
    var dl = el("dl", null, [
      el("dt", { text: "File" }), el("dd", { cls: "mono", "data-k": "config.file", text: c.file }),
      el("dt", { text: "Loaded" }), el("dd", { "data-k": "config.loaded_at", text: c.loaded_at }),
      el("dt", { text: "Reloads" }), el("dd", { "data-k": "config.reloads", text: String(c.reloads.length) }),
    ]);
    var rows = c.reloads.slice().reverse().map(function (r) {
      var details = el("td");
      var list = [];
      r.errors.forEach(function (e) { list.push(el("li", { cls: "error", text: e })); });
      r.restart_required.forEach(function (e) { list.push(el("li", { text: "needs restart: " + e })); });
      r.warnings.forEach(function (e) { list.push(el("li", { text: "warning: " + e })); });
      if (list.length) details.appendChild(el("ul", null, list));
      return el("tr", null, [
        el("td", { text: r.at }),
        el("td", null, [el("span", { cls: "tag " + (r.result === "ok" ? "ok" : "bad"), text: r.result })]),
        details,
      ]);
    });
    var box = [dl];
    if (rows.length) {
      box.push(el("div", { cls: "scroll" }, [el("table", { cls: "grid small", id: "reloads" }, [
        el("thead", null, [el("tr", null, [el("th", { text: "At" }), el("th", { text: "Result" }), el("th", { text: "Details" })])]),
        el("tbody", null, rows),
      ])]));
    } else {
      box.push(el("p", { cls: "hint", text: "no reload since start" }));
    }
    $("config").replaceChildren.apply($("config"), box);
  }

  function renderRecent(id, list, detail) {
    var rows = list.map(function (e) {
      return el("tr", { "data-request-id": e.request_id }, [
        el("td", { text: fmtTime(e.at) }),
        el("td", { cls: "mono", text: e.request_id }),
        el("td", { text: e.tenant || "–" }),
        el("td", { cls: "num", text: e.status ? String(e.status) : "–" }),
        el("td", { text: detail(e) }),
      ]);
    });
    if (!rows.length) rows = [el("tr", null, [el("td", { cls: "empty", colspan: "5", text: "none" })])];
    var tb = $(id).tBodies[0];
    tb.replaceChildren.apply(tb, rows);
  }

  function render(st) {
    last = st;
    renderCards(st);
    renderTenants(st);
    renderUpstreams(st);
    renderConfig(st);
    renderRecent("rejections", st.recent.rejections, function (e) { return e.reason || ""; });
    renderRecent("upstream-errors", st.recent.upstream_errors, function (e) {
      var parts = [];
      if (e.upstream) parts.push(e.upstream);
      if (e.upstream_status) parts.push("upstream " + e.upstream_status);
      if (e.reason) parts.push(e.reason);
      if (e.error) parts.push(e.error);
      return parts.join(" · ");
    });
    $("meta").textContent = "v" + st.version + " · up " + fmtSecs(st.uptime_secs * 1000) +
      " · updated " + fmtTime(st.generated_at);
    document.body.setAttribute("data-generated-at", String(st.generated_at));
  }

  // ---- states ----
  function showLogin(message) {
    stopPolling();
    show($("dash"), false);
    show($("logout"), false);
    show($("login"), true);
    var err = $("login-error");
    err.textContent = message || "";
    show(err, !!message);
    $("token").focus();
  }

  function showDash() {
    show($("login"), false);
    show($("dash"), true);
    show($("logout"), true);
  }

  function banner(on) { show($("banner"), on); }

  function stopPolling() {
    polling = false;
    if (timer) { clearTimeout(timer); timer = null; }
  }

  // the next poll POLL_MS after the start of the previous one (never more than 2 s apart
  // unless a request itself takes longer)
  function schedule() {
    if (polling) timer = setTimeout(poll, Math.max(200, POLL_MS - (Date.now() - pollStarted)));
  }

  function poll() {
    timer = null;
    pollStarted = Date.now();
    // a gateway that accepts but does not answer counts as unreachable too
    var ctl = new AbortController();
    var guard = setTimeout(function () { ctl.abort(); }, 5000);
    fetch("/admin/status", { credentials: "same-origin", cache: "no-store", signal: ctl.signal })
      .then(function (r) {
        clearTimeout(guard);
        if (r.status === 401) { banner(false); showLogin(last ? "session ended: sign in again" : ""); return; }
        if (r.status === 403) {
          stopPolling(); banner(false); show($("login"), false);
          var d = $("disabled");
          d.textContent = "admin endpoints are disabled: set admin.token in the config";
          show(d, true);
          return;
        }
        if (!r.ok) throw new Error("status " + r.status);
        return r.json().then(function (st) {
          banner(false);
          showDash();
          try { render(st); } catch (e) { if (window.console) console.error(e); }
          schedule();
        });
      })
      .catch(function () {
        clearTimeout(guard);
        banner(true);
        schedule();
      });
  }

  function startPolling() {
    stopPolling();
    polling = true;
    poll();
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var input = $("token");
    var body = new URLSearchParams();
    body.set("token", input.value);
    $("login-button").disabled = true;
    fetch("/admin/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: body.toString(),
    }).then(function (r) {
      banner(false);
      if (r.ok) {
        input.value = "";
        show($("login-error"), false);
        startPolling();
      } else if (r.status === 401) {
        input.select();
        showLogin("wrong token");
      } else if (r.status === 403) {
        showLogin("admin endpoints are disabled: set admin.token in the config");
      } else {
        showLogin("sign-in failed (" + r.status + ")");
      }
    }).catch(function () {
      banner(true);
    }).then(function () {
      $("login-button").disabled = false;
    });
  });

  $("logout").addEventListener("click", function () {
    fetch("/admin/logout", { method: "POST", credentials: "same-origin" })
      .catch(function () {})
      .then(function () { last = null; showLogin(""); });
  });

  // An existing session (the server marks the page) goes straight to the dashboard.
  if (document.body.getAttribute("data-signed-in") === "yes") {
    startPolling();
  } else {
    showLogin("");
  }
})();
