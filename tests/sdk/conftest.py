"""Fixtures: the real sluice binary in front of the bundled mock upstream binary."""
import hashlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target/debug/sluice"))
MOCK_BIN = os.environ.get("MOCK_BIN", os.path.join(ROOT, "target/debug/mock-upstream"))

TENANT_KEY = "sk-sluice-sdk-test-" + os.urandom(16).hex()
LIMITED_KEY = "sk-sluice-sdk-limited-" + os.urandom(16).hex()
UPSTREAM_KEY = "sk-ant-sdk-upstream-" + os.urandom(16).hex()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CONFIG = """
server: {{ threads: 2, grace_period: 1s, pid_file: "{dir}/sluice.pid", upgrade_sock: "{dir}/up.sock" }}
listeners: [ {{ addr: "127.0.0.1:{port}" }} ]
admin: {{ addr: "127.0.0.1:{admin}" }}
upstreams:
  main:
    endpoints: [ {{ url: "http://{mock}" }} ]
    keys: [ {{ env: SDK_UPSTREAM_KEY }} ]
    timeouts: {{ connect: 1s, first_byte: 1500ms, idle: 2s, total: 1m }}
  dead:
    endpoints: [ {{ url: "http://127.0.0.1:{dead}" }} ]
routes:
  - {{ path: /v1/messages, methods: [POST], upstream: main }}
  - {{ path: /v1/messages/count_tokens, methods: [POST], upstream: main }}
  - {{ path: /v1/models, methods: [GET], upstream: main, prefix: true }}
  - {{ path: /v1/messages/batches, methods: [GET], upstream: dead }}
limits: {{ max_body: 256KiB }}
tenants:
  - name: sdk
    keys: [ {{ sha256: "{sha}" }} ]
  - name: sdk-limited
    keys: [ {{ sha256: "{limited_sha}" }} ]
    limits:
      requests: {{ rate: 1/m, burst: 0 }}
"""


class Stack:
    def __init__(self, config=None, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="sluice-sdk-")
        self.mock = subprocess.Popen(
            [MOCK_BIN, "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
        )
        line = self.mock.stdout.readline().strip()
        assert line.startswith("listening on "), line
        self.mock_addr = line.split()[-1]
        self.port, self.admin = free_port(), free_port()
        cfg = os.path.join(self.dir, "sluice.yaml")
        with open(cfg, "w") as f:
            f.write(
                (config or CONFIG).format(
                    dir=self.dir,
                    port=self.port,
                    admin=self.admin,
                    mock=self.mock_addr,
                    dead=free_port(),
                    sha=hashlib.sha256(TENANT_KEY.encode()).hexdigest(),
                    limited_sha=hashlib.sha256(LIMITED_KEY.encode()).hexdigest(),
                )
            )
        self.log_path = os.path.join(self.dir, "sluice.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, SDK_UPSTREAM_KEY=UPSTREAM_KEY, **(extra_env or {}))
        self.gw = subprocess.Popen(
            [SLUICE_BIN, "-c", cfg], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("sluice did not start: " + open(self.log_path).read())
        self.base_url = f"http://127.0.0.1:{self.port}"

    def logs(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def mock_requests(self):
        import json

        with urllib.request.urlopen(f"http://{self.mock_addr}/__mock/requests") as r:
            return json.loads(r.read())

    def close(self):
        for p in (self.gw, self.mock):
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    yield s
    s.close()


@pytest.fixture()
def client(stack):
    import anthropic

    return anthropic.Anthropic(base_url=stack.base_url, api_key=TENANT_KEY, max_retries=0)
