"""The official anthropic Python SDK against sluice: it must behave as against the real API."""
import time

import anthropic
import pytest

from conftest import LIMITED_KEY, TENANT_KEY, UPSTREAM_KEY


def test_messages_create(client, stack):
    msg = client.messages.create(
        model="claude-sonnet-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello from the SDK, 你好"}],
    )
    assert msg.type == "message"
    assert msg.model == "claude-sonnet-5"
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg._request_id and msg._request_id.startswith("req_mock_")
    # the mock saw the pooled key, never the tenant's
    seen = [r for r in stack.mock_requests() if r["path"] == "/v1/messages"][-1]
    headers = dict(seen["headers"])
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert TENANT_KEY not in str(seen)


def test_messages_stream(client):
    with client.messages.stream(
        model="claude-sonnet-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "stream please"}],
        extra_headers={"x-mock-chunk-bytes": "5"},  # split inside lines and UTF-8
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "你好" in text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.content[0].text == text


def test_messages_create_stream_raw_events(client):
    events = list(
        client.messages.create(
            model="claude-sonnet-5",
            max_tokens=32,
            stream=True,
            messages=[{"role": "user", "content": "raw events"}],
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds


def test_count_tokens(client):
    r = client.messages.count_tokens(
        model="claude-sonnet-5", messages=[{"role": "user", "content": "count me"}]
    )
    assert r.input_tokens > 0


def test_models_list_and_retrieve(client):
    models = list(client.models.list())
    assert len(models) >= 1
    one = client.models.retrieve(models[0].id)
    assert one.id == models[0].id


def test_bad_key_is_authentication_error(stack):
    c = anthropic.Anthropic(base_url=stack.base_url, api_key="sk-sluice-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        c.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    assert e.value.response.headers["x-sluice-reason"] == "auth.invalid_key"


def test_unknown_route_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.beta.files.list()
    assert e.value.status_code == 404
    assert e.value.response.headers["x-sluice-reason"] == "route.not_found"


def test_body_too_large_is_413(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(
            model="claude-sonnet-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "x" * 300_000}],
        )
    assert e.value.status_code == 413
    assert e.value.body["error"]["type"] == "request_too_large"


def test_upstream_down_is_502(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.batches.list()
    assert e.value.status_code == 502
    assert e.value.response.headers["x-sluice-reason"] == "upstream.unavailable"


def test_upstream_timeout_is_504(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(
            model="claude-sonnet-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-hang": "1"},
        )
    assert e.value.status_code == 504
    assert e.value.response.headers["x-sluice-reason"] == "upstream.timeout"


def test_upstream_overloaded_is_passed_through(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(
            model="claude-sonnet-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-status": "529"},
        )
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_broken_stream_raises_instead_of_ending_quietly(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        with client.messages.stream(
            model="claude-sonnet-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-disconnect-after": "4"},
        ) as stream:
            for _ in stream.text_stream:
                pass
    assert "upstream stream interrupted" in str(e.value)


def test_no_key_in_logs(stack):
    logs = stack.logs()
    assert TENANT_KEY not in logs
    assert UPSTREAM_KEY not in logs
    assert '"status":200' in logs


def test_rate_limit_is_rate_limit_error_with_retry_after(stack):
    c = anthropic.Anthropic(base_url=stack.base_url, api_key=LIMITED_KEY, max_retries=0)
    first = c.messages.with_raw_response.create(
        model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    assert first.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "0"
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 429
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["x-sluice-reason"] == "limit.tenant.requests"
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60


# --- content filters, through the official SDK -------------------------------------

FILTER_CONFIG_EXTRA = """
filters:
  request:
    redact: [cn_id_card]
    block: {{ words: [违禁词] }}
  response:
    redact: [bank_card]
"""


@pytest.fixture(scope="module")
def filtered():
    from conftest import CONFIG, Stack

    s = Stack(config=CONFIG + FILTER_CONFIG_EXTRA)
    yield s
    s.close()


def test_id_card_reaches_the_upstream_redacted(filtered):
    c = anthropic.Anthropic(base_url=filtered.base_url, api_key=TENANT_KEY, max_retries=0)
    c.messages.create(
        model="claude-sonnet-5",
        max_tokens=32,
        messages=[{"role": "user", "content": "身份证号11010519491231002X请核对"}],
    )
    seen = [r for r in filtered.mock_requests() if r["path"] == "/v1/messages"][-1]
    assert "11010519491231002X" not in seen["body"]
    import json as _json

    assert _json.loads(seen["body"])["messages"][0]["content"] == "身份证号[REDACTED]请核对"


def test_banned_word_is_bad_request_and_not_forwarded(filtered):
    c = anthropic.Anthropic(base_url=filtered.base_url, api_key=TENANT_KEY, max_retries=0)
    before = len(filtered.mock_requests())
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "有违禁词"}])
    assert e.value.response.headers["x-sluice-reason"] == "filter.block"
    assert len(filtered.mock_requests()) == before


def test_streamed_card_number_arrives_masked_and_message_is_well_formed(filtered):
    c = anthropic.Anthropic(base_url=filtered.base_url, api_key=TENANT_KEY, max_retries=0)
    with c.messages.stream(
        model="claude-sonnet-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "4111 1111 1111 1111 please"}],
        extra_headers={"x-mock-chunk-bytes": "3", "x-mock-deltas": "12"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "4111" not in text and "[REDACTED]" in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


# --- response cache: a cached answer replayed as a stream ---------------------------


@pytest.fixture(scope="module")
def cached():
    from conftest import CONFIG, Stack

    s = Stack(config=CONFIG + "cache: {{ enabled: true, ttl: 5m, streams: true }}\n")
    yield s
    s.close()


def test_cached_answer_replays_as_a_stream_the_sdk_accepts(cached):
    c = anthropic.Anthropic(base_url=cached.base_url, api_key=TENANT_KEY, max_retries=0)
    args = dict(model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "cache me"}])
    original = c.messages.with_raw_response.create(**args)
    assert original.headers["x-sluice-cache"] == "miss"
    original = original.parse()
    with c.messages.stream(**args) as stream:
        replayed = stream.get_final_message()
        assert stream.response.headers["x-sluice-cache"] == "hit"
    assert replayed.model_dump() == original.model_dump()
    calls = [r for r in cached.mock_requests() if r["path"] == "/v1/messages"]
    assert len(calls) == 1


# --- spend quota: money, not tokens -------------------------------------------------


@pytest.fixture(scope="module")
def spend():
    from conftest import CONFIG, Stack

    config = CONFIG.replace(
        "      requests: {{ rate: 1/m, burst: 0 }}\n",
        "      quota: {{ daily_cost: 0.01 }}\n",
    ) + 'pricing: {{ currency: USD, models: [ {{ model: "*", input: 1000, output: 1000 }} ] }}\n'
    s = Stack(config=config)
    yield s
    s.close()


def test_spent_daily_cost_quota_is_rate_limit_error(spend):
    # $0.001 a token: the first answer (~15 input + a few output tokens) spends the
    # day's $0.01, so the next request is refused until midnight
    c = anthropic.Anthropic(base_url=spend.base_url, api_key=LIMITED_KEY, max_retries=0)
    args = dict(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "how much?"}])
    first = c.messages.create(**args)
    assert (first.usage.input_tokens + first.usage.output_tokens) * 0.001 >= 0.01
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(**args)
    assert e.value.status_code == 429
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.body["error"]["message"] == "daily spend quota exhausted for this key"
    assert e.value.response.headers["x-sluice-reason"] == "quota.cost"
    left = 86400 - int(time.time()) % 86400
    assert abs(int(e.value.response.headers["retry-after"]) - left) <= 2
    # the tenant without a spend quota is unaffected
    other = anthropic.Anthropic(base_url=spend.base_url, api_key=TENANT_KEY, max_retries=0)
    assert other.messages.create(**args).stop_reason == "end_turn"
