"""Make docs/img/status.png: a gateway with a few minutes of varied traffic (successes,
streams, rejections, upstream errors, a refused and an accepted reload), photographed
by headless Chromium.

    cargo build --bins && .venv/bin/python tests/browser/screenshot.py [--seconds 150] [--out docs/img/status.png]
"""
import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "sdk"))
sys.path.insert(0, HERE)
os.environ.setdefault("SLUICE_BIN", os.path.join(ROOT, "target/debug/sluice"))
os.environ.setdefault("MOCK_BIN", os.path.join(ROOT, "target/debug/mock-upstream"))

import anthropic  # noqa: E402
from cdp import Browser  # noqa: E402
from conftest import LIMITED_KEY, TENANT_KEY, Stack  # noqa: E402
from test_status_page import ADMIN_TOKEN, CONFIG  # noqa: E402


def traffic(stack, seconds, stop):
    c = anthropic.Anthropic(base_url=stack.base_url, api_key=TENANT_KEY, max_retries=0)
    limited = anthropic.Anthropic(base_url=stack.base_url, api_key=LIMITED_KEY, max_retries=0)
    bad = anthropic.Anthropic(base_url=stack.base_url, api_key="sk-sluice-nope", max_retries=0)
    start = time.time()
    n = 0
    while not stop.is_set() and time.time() - start < seconds:
        phase = (time.time() - start) / seconds
        n += 1
        try:
            r = random.random()
            latency = str(int(40 + 200 * phase * random.random()))
            if r < 0.03:
                bad.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
            elif r < 0.06:
                limited.messages.create(model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
            elif r < 0.09 and phase > 0.5:
                c.messages.create(
                    model="claude-sonnet-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
                    extra_headers={"x-mock-status": random.choice(["529", "500"])},
                )
            elif r < 0.3:
                with c.messages.stream(
                    model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": f"stream {n}"}],
                    extra_headers={"x-mock-event-delay-ms": "30"},
                ) as s:
                    s.get_final_message()
            else:
                c.messages.create(
                    model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": f"hello {n}"}],
                    extra_headers={"x-mock-latency-ms": latency},
                )
        except anthropic.APIError:
            pass
        time.sleep(max(0.0, 0.25 - 0.2 * phase) * random.random())


def reload(stack):
    req = urllib.request.Request(f"http://127.0.0.1:{stack.admin}/admin/reload", method="POST")
    req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img", "status.png"))
    args = ap.parse_args()
    config = CONFIG.replace("daily_requests: 100,", "daily_requests: 20000,").replace(
        "daily_tokens: 50000", "daily_tokens: 500000"
    )
    stack = Stack(config=config, extra_env={"STATUS_ADMIN_TOKEN": ADMIN_TOKEN})
    stop = threading.Event()
    try:
        workers = [threading.Thread(target=traffic, args=(stack, args.seconds, stop)) for _ in range(3)]
        for w in workers:
            w.start()
        # a refused reload (bad unit), then a good one
        cfg = os.path.join(stack.dir, "sluice.yaml")
        text = open(cfg).read()
        time.sleep(args.seconds / 3)
        open(cfg, "w").write(text.replace("first_byte: 5s", "first_byte: soon"))
        reload(stack)
        open(cfg, "w").write(text)
        time.sleep(args.seconds / 6)
        reload(stack)
        for w in workers:
            w.join()
        # one stream still open when the picture is taken
        c = anthropic.Anthropic(base_url=stack.base_url, api_key=TENANT_KEY, max_retries=0)

        def slow_stream():
            try:
                with c.messages.stream(
                    model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "slow"}],
                    extra_headers={"x-mock-event-delay-ms": "3000"},
                ) as s:
                    s.get_final_message()
            except Exception:  # cut off when the stack stops after the picture
                pass

        threading.Thread(target=slow_stream, daemon=True).start()
        b = Browser(1280, 900)
        try:
            b.goto(f"http://127.0.0.1:{stack.admin}/")
            b.eval(
                f"document.getElementById('token').value = {json.dumps(ADMIN_TOKEN)};"
                "document.getElementById('login-button').click(); true"
            )
            b.wait_for("document.getElementById('dash').getClientRects().length > 0")
            time.sleep(2.5)
            print("saved", b.screenshot(args.out))
        finally:
            b.close()
    finally:
        stop.set()
        stack.close()


if __name__ == "__main__":
    main()
