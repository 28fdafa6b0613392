# Shared set-up of the load scripts (run.sh, streams.sh, bodies.sh), sourced after the
# script has set SCRIPT (its name, for messages) and cd'ed to the repository root:
# messages, installing missing Debian packages, the release build, a private work dir
# with copies of the binaries and cleanup on exit, CPU pinning, free ports and keys.

die() { echo "$SCRIPT: FAIL: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# apt_install PKG…: install these Debian packages (nothing when none are given).
apt_install() {
  [ "$#" -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# build_release BIN…: `cargo build --release --bins` (unless LOAD_NO_BUILD=1), then
# check that target/release/BIN exists for each BIN.
build_release() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if [ "${LOAD_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins"
    cargo build --release --bins >&2
  fi
  local b
  for b in "$@"; do
    [ -x "target/release/$b" ] || die "target/release/$b missing"
  done
}

# setup_work NAME LOADGEN BIN…: a temp dir $WORK (removed on exit unless LOAD_KEEP=1) with
# private copies of target/release/BIN in $WORK/bin (others may rebuild target/ meanwhile,
# and perf needs the exact file that runs); $SLUICE points at the copy of sluice. Every
# pid added to PIDS (and NGINX_WORKERS) is killed on exit. With LOAD_PIN=1 (default) on
# ≥ 2 CPUs, PROXY_PIN runs the proxy on CPU 1 and LOAD_PIN_CMD the load generator
# (LOADGEN, for PLACEMENT) and the mock on CPU 0.
setup_work() {
  local name="$1" loadgen="$2"
  shift 2
  WORK="$(mktemp -d "/tmp/sluice-$name.XXXXXX")"
  PIDS=()
  NGINX_WORKERS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  PROXY_PIN=()
  LOAD_PIN_CMD=()
  if [ "${LOAD_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    PROXY_PIN=(taskset -c 1)
    LOAD_PIN_CMD=(taskset -c 0)
    PLACEMENT="proxy on CPU 1; $loadgen and the mock upstream on CPU 0"
  else
    PLACEMENT="unpinned"
  fi
  mkdir -p "$WORK/bin"
  local b
  for b in "$@"; do cp "target/release/$b" "$WORK/bin/"; done
  SLUICE="$WORK/bin/sluice"
}

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${NGINX_WORKERS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${LOAD_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# make_keys: MOCK_KEY (exported as MOCK_UPSTREAM_KEY, what sluice injects and the mock
# requires), a fresh tenant key TENANT_KEY from `sluice keygen` and its TENANT_HASH.
make_keys() {
  MOCK_KEY="mock-upstream-key-$RANDOM$RANDOM"
  export MOCK_UPSTREAM_KEY="$MOCK_KEY"
  TENANT_KEY="$("$SLUICE" keygen --tenant bench | sed -n 2p)"
  case "$TENANT_KEY" in sk-sluice-*) ;; *) die "sluice keygen printed no key" ;; esac
  TENANT_HASH="$(printf '%s' "$TENANT_KEY" | sha256sum | cut -d' ' -f1)"
}

# start_mock: $WORK/bin/mock-upstream on an ephemeral port, pinned with the load
# generator; sets MOCK_PID and MOCK_ADDR (host:port).
start_mock() {
  "${LOAD_PIN_CMD[@]}" "$WORK/bin/mock-upstream" --addr 127.0.0.1:0 --threads 1 >"$WORK/mock.out" 2>"$WORK/mock.err" &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  local _
  for _ in $(seq 100); do grep -q '^listening on' "$WORK/mock.out" 2>/dev/null && break; sleep 0.05; done
  MOCK_ADDR="$(sed -n 's/^listening on //p' "$WORK/mock.out")"
  [ -n "$MOCK_ADDR" ] || die "mock-upstream did not start: $(cat "$WORK/mock.err")"
}

# sluice_conf_head TAG PORT TOTAL: the part of sluice's config every load script shares —
# one thread, a listener on PORT, the mock upstream with the injected key and a total
# timeout of TOTAL, one route, the `bench` tenant. Files are named after TAG.
sluice_conf_head() {
  cat <<CONF
server:
  threads: 1
  grace_period: 1s
  pid_file: $WORK/sluice$1.pid
  upgrade_sock: $WORK/sluice$1.sock
  error_log: $WORK/sluice$1.err
listeners:
  - addr: 127.0.0.1:$2
    keepalive: { idle: 75s, max_requests: 10000 }
upstreams:
  mock:
    endpoints: [ { url: "http://$MOCK_ADDR" } ]
    keys: [ { env: MOCK_UPSTREAM_KEY, id: mock-key } ]
    timeouts: { connect: 2s, first_byte: 30s, idle: 60s, total: $3 }
    pool: { size: 128, idle: 60s }
routes:
  - { path: /v1/messages, methods: [POST], upstream: mock }
tenants:
  - { name: bench, keys: [ { sha256: "$TENANT_HASH" } ] }
CONF
}
