"""Metrics, access/audit logs and the usage API after a known mix of traffic.

/metrics is parsed with the official Prometheus client's text-format parser, and every
assertion is on an exact value or on the presence of a series, never a substring."""
import json
import os
import urllib.error
import urllib.request

import anthropic
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import LIMITED_KEY, TENANT_KEY, UPSTREAM_KEY, Stack

ADMIN_TOKEN = "adm-" + os.urandom(12).hex()

CONFIG = """
server: {{ threads: 2, grace_period: 1s, pid_file: "{dir}/sluice.pid", upgrade_sock: "{dir}/up.sock" }}
listeners: [ {{ addr: "127.0.0.1:{port}" }} ]
admin: {{ addr: "127.0.0.1:{admin}", token: {{ env: OBS_ADMIN_TOKEN }} }}
upstreams:
  main:
    endpoints: [ {{ url: "http://{mock}" }} ]
    keys: [ {{ env: SDK_UPSTREAM_KEY, id: main-key }} ]
    retry: {{ attempts: 2, backoff: 1ms }}
    timeouts: {{ connect: 1s, first_byte: 5s, idle: 5s, total: 1m }}
routes:
  - {{ path: /v1/messages, methods: [POST], upstream: main }}
  - {{ path: /v1/models, methods: [GET], upstream: main, prefix: true }}
tenants:
  - name: sdk
    biz: support
    keys: [ {{ sha256: "{sha}" }} ]
    limits:
      quota: {{ daily_requests: 100 }}
  - name: sdk-limited
    keys: [ {{ sha256: "{limited_sha}" }} ]
    limits:
      requests: {{ rate: 1/m, burst: 0 }}
logging:
  access: {{ path: "{dir}/access.log", format: json }}
  audit: {{ path: "{dir}/audit.jsonl", bodies: true, rotate: 1MiB, keep: 3 }}
"""


@pytest.fixture(scope="module")
def obs():
    s = Stack(config=CONFIG, extra_env={"OBS_ADMIN_TOKEN": ADMIN_TOKEN})
    yield s
    s.close()


def get(url, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def read_jsonl(path, want, timeout=3.0):
    """The JSON lines of a log once `want` of them are there (logs are written in batches)."""
    import time

    deadline = time.time() + timeout
    while True:
        lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.02)


def samples(text):
    """{(name, frozenset(labels)): value} for every sample."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(sm, name, **labels):
    return sm.get((name, frozenset(labels.items())))


def drive(obs):
    """The known mix. Returns the input/output tokens the SDK saw."""
    c = anthropic.Anthropic(base_url=obs.base_url, api_key=TENANT_KEY, max_retries=0)
    inp = out = 0
    for i in range(3):
        m = c.messages.create(
            model="claude-sonnet-5", max_tokens=32, messages=[{"role": "user", "content": f"hello {i} 4111 1111"}],
            extra_headers={"x-request-id": f"obs-plain-{i}"},
        )
        inp += m.usage.input_tokens
        out += m.usage.output_tokens
    for i in range(2):
        with c.messages.stream(
            model="claude-sonnet-5", max_tokens=32, messages=[{"role": "user", "content": f"stream {i}"}]
        ) as s:
            final = s.get_final_message()
        inp += final.usage.input_tokens
        out += final.usage.output_tokens
    bad = anthropic.Anthropic(base_url=obs.base_url, api_key="sk-sluice-wrong-obs", max_retries=0)
    for _ in range(2):
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    limited = anthropic.Anthropic(base_url=obs.base_url, api_key=LIMITED_KEY, max_retries=0)
    limited.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        limited.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError):
        c.messages.create(
            model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "500", "x-request-id": "obs-upstream-500"},
        )
    return inp, out


def test_known_mix_gives_exact_metrics_logs_and_usage(obs):
    inp, out = drive(obs)
    status, text = get(f"http://127.0.0.1:{obs.admin}/metrics")
    assert status == 200
    sm = samples(text)

    # requests by tenant, route, code, biz
    assert value(sm, "sluice_requests_total", tenant="sdk", route="/v1/messages", code="200", biz="support") == 5
    assert value(sm, "sluice_requests_total", tenant="sdk", route="/v1/messages", code="500", biz="support") == 1
    assert value(sm, "sluice_requests_total", tenant="", route="/v1/messages", code="401", biz="") == 2
    assert value(sm, "sluice_requests_total", tenant="sdk-limited", route="/v1/messages", code="200", biz="") == 1
    assert value(sm, "sluice_requests_total", tenant="sdk-limited", route="/v1/messages", code="429", biz="") == 1
    # rejections by reason
    assert value(sm, "sluice_rejections_total", tenant="", reason="auth.invalid_key") == 2
    assert value(sm, "sluice_rejections_total", tenant="sdk-limited", reason="limit.tenant.requests") == 1
    # upstream tries: 5 + 1 (limited) successes; the 500 was tried twice (one retry)
    assert value(sm, "sluice_upstream_requests_total", upstream="main", endpoint=f"http://{obs.mock_addr}", code="200") == 6
    assert value(sm, "sluice_upstream_requests_total", upstream="main", endpoint=f"http://{obs.mock_addr}", code="500") == 2
    assert value(sm, "sluice_upstream_retries_total", upstream="main") == 1
    # tokens, exactly what the SDK saw
    assert value(sm, "sluice_tokens_total", tenant="sdk", model="claude-sonnet-5", kind="input") == inp
    assert value(sm, "sluice_tokens_total", tenant="sdk", model="claude-sonnet-5", kind="output") == out
    # histograms: series with buckets, count and sum
    assert value(sm, "sluice_request_duration_seconds_count", tenant="sdk", route="/v1/messages") == 6
    assert value(sm, "sluice_request_duration_seconds_bucket", tenant="sdk", route="/v1/messages", le="+Inf") == 6
    assert value(sm, "sluice_time_to_first_byte_seconds_count", tenant="sdk", route="/v1/messages") == 6
    assert value(sm, "sluice_overhead_seconds_count") == 10
    assert value(sm, "sluice_overhead_seconds_bucket", le="0.001") is not None
    # state gauges
    assert value(sm, "sluice_active_streams") == 0
    # the key rests (5xx cooldown) after the upstream's 500s
    assert value(sm, "sluice_key_available", upstream="main", key="main-key") == 0
    assert value(sm, "sluice_circuit_open", upstream="main", endpoint=f"http://{obs.mock_addr}") == 0
    assert value(sm, "sluice_quota_used_ratio", tenant="sdk", quota="requests") == pytest.approx(6 / 100)

    # admin usage: token required
    assert get(f"http://127.0.0.1:{obs.admin}/admin/usage")[0] == 401
    assert get(f"http://127.0.0.1:{obs.admin}/admin/usage", token="wrong")[0] == 401
    status, body = get(f"http://127.0.0.1:{obs.admin}/admin/usage", token=ADMIN_TOKEN)
    assert status == 200
    usage = {t["tenant"]: t for t in json.loads(body)["tenants"]}
    assert usage["sdk"]["today"]["requests"] == 6
    assert usage["sdk"]["today"]["input_tokens"] == inp
    assert usage["sdk"]["today"]["output_tokens"] == out
    assert usage["sdk"]["quota_used"]["requests"] == pytest.approx(0.06)
    assert usage["sdk-limited"]["today"]["rejections"] == {"limit.tenant.requests": 1}
    assert usage[""]["today"]["rejections"] == {"auth.invalid_key": 2}
    status, text = get(f"http://127.0.0.1:{obs.admin}/metrics")
    assert value(samples(text), "sluice_admin_auth_failures_total") == 2

    # access log: one JSON line per request, field by field
    lines = read_jsonl(os.path.join(obs.dir, "access.log"), 10)
    assert len(lines) == 10
    plain = next(l for l in lines if l["request_id"] == "obs-plain-0")
    assert plain["tenant"] == "sdk" and plain["biz"] == "support"
    assert plain["status"] == 200 and plain["route"] == "/v1/messages" and plain["method"] == "POST"
    assert plain["model"] == "claude-sonnet-5" and plain["stream"] is False
    assert plain["upstream"] == "main" and plain["key_id"] == "main-key" and plain["attempts"] == 1
    assert plain["usage"]["input_tokens"] > 0 and plain["usage"]["output_tokens"] > 0
    for k in ("duration_ms", "ttfb_ms", "upstream_ms", "overhead_ms"):
        assert isinstance(plain[k], (int, float)) and plain[k] >= 0
    assert plain["client_ip"] == "127.0.0.1"
    failed = next(l for l in lines if l["request_id"] == "obs-upstream-500")
    assert failed["status"] == 500 and failed["attempts"] == 2

    # audit log: same fields plus bodies (bodies: true)
    audit = read_jsonl(os.path.join(obs.dir, "audit.jsonl"), 10)
    assert len(audit) == 10
    a = next(l for l in audit if l["request_id"] == "obs-plain-0")
    assert a["tenant"] == "sdk" and a["status"] == 200 and a["filters"] == []
    assert json.loads(a["request_body"])["messages"][0]["content"].startswith("hello 0")
    assert json.loads(a["response_body"])["type"] == "message"


def test_no_secret_in_any_output(obs):
    """The keys used appear in no log, no audit line, no metric, no usage answer."""
    outputs = [obs.logs()]
    for f in ("access.log", "audit.jsonl"):
        p = os.path.join(obs.dir, f)
        if os.path.exists(p):
            outputs.append(open(p).read())
    outputs.append(get(f"http://127.0.0.1:{obs.admin}/metrics")[1])
    outputs.append(get(f"http://127.0.0.1:{obs.admin}/admin/usage", token=ADMIN_TOKEN)[1])
    blob = "\n".join(outputs)
    for secret in (TENANT_KEY, LIMITED_KEY, UPSTREAM_KEY, "sk-sluice-wrong-obs", ADMIN_TOKEN):
        assert secret not in blob
