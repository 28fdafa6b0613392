"""The status page in a real browser.

Headless Chromium (driven over the DevTools protocol, tests/browser/cdp.py) opens the
admin listener's page in front of a gateway that served a known mix of traffic, is
refused with a wrong token ("wrong token"), signs in, and every number the page shows
(`data-k` elements) is compared with `/admin/status` — which is itself checked against
the traffic. Then: the session cookie is HttpOnly, the layout fits a phone, signing out
works, and a stopped gateway shows the "gateway unreachable" banner. Screenshots go to
target/status-page*.png (and to docs/img/status.png with SLUICE_UPDATE_SCREENSHOT=1)."""
import json
import os
import re
import sys
import urllib.error
import urllib.request

import anthropic
import pytest

from conftest import LIMITED_KEY, ROOT, TENANT_KEY, Stack

sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))
from cdp import Browser  # noqa: E402

ADMIN_TOKEN = "adm-status-" + os.urandom(12).hex()


def shown(el_id):
    """JS: is the element with this id rendered (not just lacking `hidden`)?"""
    return f"(document.getElementById('{el_id}').getClientRects().length > 0)"


CONFIG = """
server: {{ threads: 2, grace_period: 1s, pid_file: "{dir}/sluice.pid", upgrade_sock: "{dir}/up.sock" }}
listeners: [ {{ addr: "127.0.0.1:{port}" }} ]
admin: {{ addr: "127.0.0.1:{admin}", token: {{ env: STATUS_ADMIN_TOKEN }} }}
upstreams:
  main:
    endpoints: [ {{ url: "http://{mock}" }} ]
    keys: [ {{ env: SDK_UPSTREAM_KEY, id: main-key }} ]
    retry: {{ attempts: 1 }}
    timeouts: {{ connect: 1s, first_byte: 5s, idle: 5s, total: 1m }}
routes:
  - {{ path: /v1/messages, methods: [POST], upstream: main }}
tenants:
  - name: sdk
    keys: [ {{ sha256: "{sha}" }} ]
    limits:
      concurrency: 4
      quota: {{ daily_requests: 100, daily_tokens: 50000 }}
  - name: sdk-limited
    keys: [ {{ sha256: "{limited_sha}" }} ]
    limits:
      requests: {{ rate: 1/m, burst: 0 }}
"""


def admin_get(stack, path, token=ADMIN_TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{stack.admin}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def drive(stack):
    """5 successes (one streamed), a 401, a 429, an upstream 529. Returns sdk's tokens."""
    c = anthropic.Anthropic(base_url=stack.base_url, api_key=TENANT_KEY, max_retries=0)
    tokens = 0
    for i in range(3):
        m = c.messages.create(
            model="claude-sonnet-5", max_tokens=32, messages=[{"role": "user", "content": f"hello {i}"}],
            extra_headers={"x-request-id": f"page-ok-{i}"},
        )
        tokens += m.usage.input_tokens + m.usage.output_tokens
    with c.messages.stream(
        model="claude-sonnet-5", max_tokens=32, messages=[{"role": "user", "content": "stream"}]
    ) as s:
        final = s.get_final_message()
    tokens += final.usage.input_tokens + final.usage.output_tokens
    bad = anthropic.Anthropic(base_url=stack.base_url, api_key="sk-sluice-wrong-page", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-request-id": "page-401"},
        )
    limited = anthropic.Anthropic(base_url=stack.base_url, api_key=LIMITED_KEY, max_retries=0)
    limited.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        limited.messages.create(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-request-id": "page-429"},
        )
    with pytest.raises(anthropic.APIStatusError) as e:
        c.messages.create(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "529", "x-request-id": "page-529"},
        )
    assert e.value.status_code == 529
    return tokens


# ---- what the page must show for a status document (same formatting as page.js) ----
def f_int(n):
    return "–" if n is None else str(round(n))


def f_rate(x):
    return "–" if x is None else f"{x:.2f}"


def f_pct(x):
    return "–" if x is None else f"{x * 100:.2f}%"


def f_ms(x):
    if x is None:
        return "–"
    if x < 1:
        return f"{x:.3f}"
    if x < 100:
        return f"{x:.1f}"
    return f"{x:.0f}"


def expected_view(st):
    """{data-k: (expected text, raw value)} for every number the page must show."""
    o, m, q = st["overview"], st["overview"]["last_minute"], st["overview"]["last_15m"]
    want = {
        "rps": (f_rate(m["rps"]), m["rps"]),
        "success_rate": (f_pct(m["success_rate"]), m["success_rate"]),
        "active_streams": (f_int(o["active_streams"]), o["active_streams"]),
        "requests_since_start": (f_int(o["requests_since_start"]), o["requests_since_start"]),
        "15m.success_rate": (f_pct(q["success_rate"]), q["success_rate"]),
    }
    for k in ("latency", "ttfb", "overhead"):
        for p in ("p50", "p99"):
            v = m[f"{k}_ms"][p]
            want[f"{k}.{p}"] = (f_ms(v), v)
    for k in ("requests", "ok", "client_errors", "server_errors", "rejections", "upstream_errors", "tokens"):
        want[f"15m.{k}"] = (f_int(q[k]), q[k])
    for t in st["tenants"]:
        p = f"tenant.{t['name']}."
        want[p + "requests_today"] = (f_int(t["requests_today"]), t["requests_today"])
        want[p + "tokens_today"] = (f_int(t["tokens_today"]), t["tokens_today"])
        for kind in ("requests", "tokens"):
            limit = t["quota"][f"daily_{kind}"]
            if limit:
                r = t["quota"][f"{kind}_used"] or 0
                want[p + f"{kind}_today.quota"] = (f"{r * 100:.1f}% of {limit}", None)
        want[p + "tokens_per_min"] = (f_int(t["tokens_per_min"]), t["tokens_per_min"])
        c = t["concurrency"]
        conc = f_int(c["active"]) + ("" if c["limit"] is None else f" / {c['limit']}")
        want[p + "concurrency"] = (conc, c["active"])
        for reason, n in t["rejections"].items():
            want[p + "rejections." + reason] = (f"{reason}: {n}", n)
    for u in st["upstreams"]:
        p = f"upstream.{u['name']}."
        want[p + "tries"] = (f_int(u["tries"]), u["tries"])
        want[p + "retries"] = (f_int(u["retries"]), u["retries"])
        for cls in ("4xx", "5xx", "connect", "timeout"):
            want[p + "errors." + cls] = (f_int(u["errors"][cls]), u["errors"][cls])
        for k in u["keys"]:
            want[p + f"key.{k['id']}.state"] = (k["state"], k["state"])
        for ep in u["endpoints"]:
            want[p + f"endpoint.{ep['url']}.circuit"] = (ep["circuit"], ep["circuit"])
    want["config.file"] = (st["config"]["file"], st["config"]["file"])
    want["config.reloads"] = (str(len(st["config"]["reloads"])), len(st["config"]["reloads"]))
    return want


PAGE_VIEW = """(() => {
  const out = {};
  document.querySelectorAll('[data-k]').forEach(e => { out[e.getAttribute('data-k')] = e.textContent; });
  const rows = id => Array.from(document.querySelectorAll('#' + id + ' tbody tr[data-request-id]'))
    .map(r => r.getAttribute('data-request-id'));
  return { values: out, rejections: rows('rejections'), upstream_errors: rows('upstream-errors'),
           generated_at: Number(document.body.getAttribute('data-generated-at') || 0) };
})()"""


def mismatches(page, st):
    """Every difference between what the page shows and the status document."""
    bad = []
    for key, (text, raw) in expected_view(st).items():
        shown = page["values"].get(key)
        if shown is None:
            bad.append(f"{key}: not shown (want {text!r})")
            continue
        if shown.strip() != text:
            # numbers: allow only the rounding of the last shown digit
            num = re.fullmatch(r"(-?[\d.]+)(%?)", shown.strip())
            if isinstance(raw, (int, float)) and num:
                decimals = len(num.group(1).split(".")[1]) if "." in num.group(1) else 0
                value = float(num.group(1)) / (100 if num.group(2) else 1)
                tol = 0.5 * 10 ** -decimals / (100 if num.group(2) else 1) + 1e-9
                if abs(value - raw) <= tol:
                    continue
            bad.append(f"{key}: page shows {shown!r}, status says {text!r}")
    for ring in ("rejections", "upstream_errors"):
        want = [e["request_id"] for e in st["recent"][ring]]
        if page[ring] != want:
            bad.append(f"recent {ring}: page {page[ring]} != status {want}")
    return bad


@pytest.fixture(scope="module")
def stack():
    s = Stack(config=CONFIG, extra_env={"STATUS_ADMIN_TOKEN": ADMIN_TOKEN})
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def test_status_page_in_a_browser(stack, browser):
    tokens = drive(stack)
    page_url = f"http://127.0.0.1:{stack.admin}/"
    b = browser

    # ---- signed out: the login form; a wrong token says so ----
    b.goto(page_url)
    b.wait_for(shown("login"), what="login form")
    assert b.eval(shown("dash")) is False
    b.eval(
        "document.getElementById('token').value = 'not-the-token';"
        "document.getElementById('login-button').click(); true"
    )
    b.wait_for(
        shown("login-error") + " && document.getElementById('login-error').textContent === 'wrong token'",
        what="'wrong token'",
    )
    assert b.eval(shown("dash")) is False

    # ---- the right token: the dashboard ----
    b.eval(
        f"document.getElementById('token').value = {json.dumps(ADMIN_TOKEN)};"
        "document.getElementById('login-button').click(); true"
    )
    b.wait_for(
        shown("dash") + " && document.querySelector('[data-k=\"15m.requests\"]')",
        what="dashboard",
    )
    assert b.eval(shown("login")) is False, "the form is gone once signed in"
    assert b.eval("document.getElementById('token').value") == "", "token cleared from the form"
    assert b.eval("document.cookie") == "", "the session cookie is HttpOnly"
    assert ADMIN_TOKEN not in b.eval("document.documentElement.outerHTML")
    assert ADMIN_TOKEN not in b.eval("location.href")

    # ---- /admin/status matches the traffic ----
    status, body = admin_get(stack, "/admin/status")
    assert status == 200, body
    st = json.loads(body)
    q = st["overview"]["last_15m"]
    assert (q["requests"], q["ok"], q["client_errors"], q["server_errors"]) == (8, 5, 2, 1), q
    assert q["success_rate"] == 0.625
    assert st["overview"]["last_minute"]["requests"] == 8
    tenants = {t["name"]: t for t in st["tenants"]}
    assert tenants["sdk"]["requests_today"] == 5
    assert tenants["sdk"]["tokens_today"] == tokens
    assert tenants["sdk"]["tokens_per_min"] == tokens
    assert tenants["sdk-limited"]["rejections"] == {"limit.tenant.requests": 1}
    assert tenants[""]["rejections"] == {"auth.invalid_key": 1}
    up = st["upstreams"][0]
    assert up["errors"] == {"4xx": 0, "5xx": 1, "connect": 0, "timeout": 0}
    assert up["keys"][0]["state"] == "cooling"
    assert [e["request_id"] for e in st["recent"]["rejections"]] == ["page-429", "page-401"]
    assert [e["request_id"] for e in st["recent"]["upstream_errors"]] == ["page-529"]

    # ---- the page shows the same numbers (after a poll that started after our read) ----
    b.wait_for(
        f"Number(document.body.getAttribute('data-generated-at')) >= {st['generated_at']}",
        what="a fresh poll",
    )
    page = b.eval(PAGE_VIEW)
    # re-read: the document is steady once traffic stopped (but for cooldown timers)
    st2 = json.loads(admin_get(stack, "/admin/status")[1])
    bad = mismatches(page, st2)
    assert not bad, "page differs from /admin/status:\n" + "\n".join(bad)
    assert page["values"]["15m.requests"] == "8"
    assert page["values"]["tenant.sdk.requests_today"] == "5"
    assert page["values"]["tenant.sdk.concurrency"] == "0 / 4"
    assert page["values"]["tenant.sdk.requests_today.quota"] == "5.0% of 100"
    assert page["values"]["upstream.main.errors.5xx"] == "1"
    assert page["values"]["upstream.main.key.main-key.state"] == "cooling"
    # sparklines are drawn (inline SVG, one path per series with data)
    assert b.eval("document.querySelectorAll('#cards svg path').length") >= 6
    # the check really catches a wrong number on the page
    b.eval("document.querySelector('[data-k=\"15m.requests\"]').textContent = '9'; true")
    wrong = mismatches(b.eval(PAGE_VIEW), st2)
    assert any(w.startswith("15m.requests") for w in wrong), wrong
    b.wait_for("document.querySelector('[data-k=\"15m.requests\"]').textContent === '8'", what="re-render")

    # ---- screenshots: laptop, then phone (no sideways scrolling of the page) ----
    shot = b.screenshot(os.path.join(ROOT, "target", "status-page.png"))
    assert os.path.getsize(shot) > 10_000
    if os.environ.get("SLUICE_UPDATE_SCREENSHOT"):
        b.screenshot(os.path.join(ROOT, "docs", "img", "status.png"))
    b.viewport(390, 844, mobile=True)
    b.wait_for("document.documentElement.clientWidth <= 400", what="phone viewport")
    width = b.eval("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px phone"
    b.screenshot(os.path.join(ROOT, "target", "status-page-phone.png"))
    b.viewport(1280, 900)

    # ---- sign out: back to the form, the cookie no longer works ----
    b.eval("document.getElementById('logout').click(); true")
    b.wait_for(shown("login") + " && !" + shown("dash"), what="login form after sign-out")
    assert b.eval("fetch('/admin/status').then(r => r.status)") == 401

    # ---- gateway gone: the banner ----
    b.eval(
        f"document.getElementById('token').value = {json.dumps(ADMIN_TOKEN)};"
        "document.getElementById('login-button').click(); true"
    )
    b.wait_for(shown("dash"), what="dashboard again")
    stack.gw.kill()
    stack.gw.wait()
    b.wait_for(
        shown("banner") + " && "
        "document.getElementById('banner').textContent === 'gateway unreachable, retrying…'",
        what="unreachable banner",
    )
    # the last numbers stay on screen under the banner
    assert b.eval("document.querySelector('[data-k=\"15m.requests\"]').textContent") == "8"
    # nothing leaked the token into the gateway's log
    assert ADMIN_TOKEN not in stack.logs()
