#!/usr/bin/env bash
# Scenario 3 of issue #8: many concurrent SSE streams, sluice vs nginx.
#
#   benches/load/streams.sh                        # N = 1000 and 10000, 3 rounds, ≈ 15 min
#   STREAMS_N="1000" STREAMS_RUNS=1 benches/load/streams.sh   # quick look
#   STREAMS_N="1000 10000 10000@1000" benches/load/streams.sh  # + 10000 streams, 1 event/s
#
# For each N and round, and for each of direct-to-mock, sluice and nginx (fresh processes
# every time, so idle RSS is a clean baseline), target/release/load-streams opens N
# streaming POST /v1/messages at STREAMS_OPEN_RATE/s, each asking the mock upstream for an
# SSE event every 100 ms (x-mock-event-delay-ms: 100) with a send timestamp in every
# event (x-mock-timestamps: 1: a `: ts=<µs>` comment line); once all are open it waits
# STREAMS_WARMUP s, then measures for STREAMS_WINDOW s:
#   - RSS per open stream  = (proxy RSS with N open − proxy RSS idle) / N
#   - CPU per 1,000 events = proxy utime+stime over the window / events the client got
#   - per-event latency    = client arrival − mock send time; "added" = proxy − direct
#                            (medians over rounds of the per-round differences)
# Proxies are configured like scenario 1 of run.sh: sluice with route + tenant auth (one
# sha256 key) + upstream-key injection, access log off; nginx with proxy_pass +
# proxy_set_header x-api-key + HTTP/1.1 upstream keepalive + `proxy_buffering off`. The
# mock checks the injected key on every stream (x-mock-require-key).
#
# CPU placement as in run.sh: the proxy (whole process) on CPU 1, the mock and the client
# on CPU 0. The fd limit is raised to the hard limit; a proxy needs two fds per stream, so
# N is capped at (hard limit − 100) / 2 with a note (this machine: hard limit 20000, no
# CAP_SYS_RESOURCE, so 10000 becomes 9950).
#
# Knobs: STREAMS_N (default "1000 10000"; N@MS sets that entry's event interval), STREAMS_RUNS (3), STREAMS_WINDOW (10 s),
# STREAMS_WARMUP (3 s), STREAMS_OPEN_RATE (2000/s), STREAMS_INTERVAL_MS (100: time between
# events of one stream), STREAMS_PROXIES ("sluice nginx"),
# STREAMS_RESULTS (benches/load/results-streams.md), STREAMS_RAW_OUT=FILE (keep raw
# JSON lines), LOAD_NO_BUILD=1, LOAD_KEEP=1, LOAD_PIN (1). Run it under
# `flock /tmp/sluice-bench.lock` when others measure on the same machine.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

NS="${STREAMS_N:-1000 10000}"
RUNS="${STREAMS_RUNS:-3}"
WINDOW="${STREAMS_WINDOW:-10}"
WARMUP="${STREAMS_WARMUP:-3}"
OPEN_RATE="${STREAMS_OPEN_RATE:-2000}"
DEFAULT_INTERVAL="${STREAMS_INTERVAL_MS:-100}"
PROXIES="${STREAMS_PROXIES:-sluice nginx}"
RESULTS="${STREAMS_RESULTS:-$HERE/results-streams.md}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"

SCRIPT=streams.sh
# shellcheck source=common.sh
. "$HERE/common.sh"

# ---------------------------------------------------------------- install + build
need=()
[ -x "$NGINX_BIN" ] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
apt_install "${need[@]}"
export PATH="$HOME/.cargo/bin:$PATH"
build_release sluice mock-upstream load-streams

# As many fds as allowed: a proxy holds two per stream (client + upstream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS="$(ulimit -n)"
NOTE=""

# ---------------------------------------------------------------- set-up
setup_work streams load-streams sluice mock-upstream load-streams

make_keys
BODY='{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Stream to many clients, please."}]}'
printf '%s' "$BODY" >"$WORK/body.json"

start_mock
log "mock upstream on $MOCK_ADDR; fd limit $FDS"

sluice_conf() {
  sluice_conf_head "" "$1" 10m
  cat <<EOF
limits: { max_body: 32MiB }
logging:
  access: { path: "off" }
EOF
}

nginx_conf() {
  local p=$2
  cat <<EOF
worker_processes 1;
worker_rlimit_nofile $FDS;
daemon off;
pid $p/nginx.pid;
error_log $p/error.log warn;
events { worker_connections $FDS; }
http {
    client_body_temp_path $p/body;
    proxy_temp_path $p/proxy;
    fastcgi_temp_path $p/fastcgi;
    uwsgi_temp_path $p/uwsgi;
    scgi_temp_path $p/scgi;
    access_log off;
    client_max_body_size 32m;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    upstream mock {
        server $MOCK_ADDR;
        keepalive 128;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location = /v1/messages {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header x-api-key "$MOCK_KEY";
            proxy_set_header Authorization "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }
    }
}
EOF
}

# start PROXY -> PORT, PIDS_OF (space-separated pids to measure), PROXY_PID
start_proxy() {
  local proxy=$1
  PORT="$(free_port)"
  case "$proxy" in
    sluice)
      sluice_conf "$PORT" >"$WORK/sluice.yaml"
      "$SLUICE" -t -c "$WORK/sluice.yaml" >"$WORK/sluice.t" 2>&1 || die "sluice -t: $(cat "$WORK/sluice.t")"
      RUST_LOG=warn "${PROXY_PIN[@]}" "$SLUICE" -c "$WORK/sluice.yaml" >"$WORK/sluice.out" 2>>"$WORK/sluice.err" &
      PROXY_PID=$!
      ;;
    nginx)
      local p="$WORK/nginx"
      rm -rf "$p"; mkdir -p "$p"
      nginx_conf "$PORT" "$p" >"$p/nginx.conf"
      "$NGINX_BIN" -t -q -p "$p" -e "$p/error.log" -c "$p/nginx.conf" 2>"$p/t.out" || die "nginx -t: $(cat "$p/t.out")"
      "${PROXY_PIN[@]}" "$NGINX_BIN" -p "$p" -e "$p/error.log" -c "$p/nginx.conf" >"$p/stdout" 2>"$p/stderr" &
      PROXY_PID=$!
      ;;
  esac
  PIDS+=("$PROXY_PID")
  local code=""
  for _ in $(seq 100); do
    kill -0 "$PROXY_PID" 2>/dev/null || die "$proxy exited at start-up"
    code="$(curl -s -o "$WORK/ready.body" -w '%{http_code}' --max-time 2 \
      -H "x-api-key: $TENANT_KEY" -H "x-mock-require-key: $MOCK_KEY" \
      -H 'content-type: application/json' --data-binary "@$WORK/body.json" \
      "http://127.0.0.1:$PORT/v1/messages" || true)"
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || die "$proxy does not answer 200 (last: $code $(head -c 300 "$WORK/ready.body"))"
  grep -q message_stop "$WORK/ready.body" || die "$proxy: no complete stream: $(head -c 300 "$WORK/ready.body")"
  PIDS_OF="$PROXY_PID"
  if [ "$proxy" = nginx ]; then
    local w=""
    for _ in $(seq 50); do
      w="$(ps -o pid= --ppid "$PROXY_PID" | head -1 | tr -d ' ')"
      [ -n "$w" ] && break
      sleep 0.1
    done
    PIDS_OF="$PROXY_PID $w"
  fi
  sleep 0.5 # let start-up allocations settle before the idle RSS is read
}

stop_proxy() {
  local kids
  kids="$(ps -o pid= --ppid "$PROXY_PID" 2>/dev/null || true)"
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  for k in $kids; do kill "$k" 2>/dev/null || true; done
}

RAW="$WORK/raw.jsonl"
: >"$RAW"
FAILED=0

# measure N PROXY ROUND
measure() {
  local n=$1 proxy=$2 round=$3 target pidargs=() out rc=0
  # Streams must outlive a slow ramp: opening is CPU-bound once thousands of streams
  # are already sending (≈ 150–250 new streams/s at N = 10,000 on 2 cores).
  local deltas=$(( (n / 100 + WARMUP + WINDOW + 20) * 1000 / INTERVAL ))
  if [ "$proxy" = direct ]; then
    target="$MOCK_ADDR"
    pidargs=(--pid "$MOCK_PID")
    PROXY_PID=""
  else
    start_proxy "$proxy"
    target="127.0.0.1:$PORT"
    for p in $PIDS_OF; do pidargs+=(--pid "$p"); done
  fi
  local key="$TENANT_KEY"
  [ "$proxy" != direct ] || key="$MOCK_KEY"
  out="$("${LOAD_PIN_CMD[@]}" "$WORK/bin/load-streams" --target "$target" --streams "$n" \
    --key "$key" --header "x-mock-require-key: $MOCK_KEY" --header "x-mock-event-delay-ms: $INTERVAL" \
    --header "x-mock-deltas: $deltas" --body "$WORK/body.json" --open-rate "$OPEN_RATE" \
    --sources 8 --warmup "$WARMUP" --window "$WINDOW" --open-timeout 150 "${pidargs[@]}" \
    2>>"$WORK/client.err")" || rc=$?
  [ -z "$PROXY_PID" ] || stop_proxy
  [ -n "$out" ] || die "load-streams printed nothing ($proxy, N=$n): $(tail -5 "$WORK/client.err")"
  if [ "$rc" != 0 ]; then
    log "WARNING: not every stream stayed open ($proxy, N=$n): $out"
    # nginx at ~10,000 streams runs into worker_connections = the fd limit and resets a
    # few percent of the connections; that is noted, not fatal. sluice or direct is.
    if [ "$proxy" = nginx ]; then
      case "$NOTE" in *"nginx did not hold"*) ;; *) NOTE="${NOTE}nginx did not hold every stream at N=$n (see its open column; at the fd ceiling it logs 'worker_connections are not enough'). " ;; esac
    else
      FAILED=1
    fi
  fi
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(n=int(sys.argv[2]), proxy=sys.argv[3], round=int(sys.argv[4]), interval_ms=int(sys.argv[5])); print(json.dumps(d))' \
    "$out" "$n" "$proxy" "$round" "$INTERVAL" >>"$RAW"
  python3 - "$out" "$n" "$proxy" "$round" >&2 <<'PY'
import json, sys
d = json.loads(sys.argv[1])
print(f"== N={sys.argv[2]} {sys.argv[3]} round {sys.argv[4]}: open {d['opened']}/{d['streams']}, "
      f"{d['events_per_sec']:.0f} ev/s, latency p50 {d['lat_p50_us']} µs p99 {d['lat_p99_us']} µs, "
      f"RSS/stream {d['rss_per_stream_kib']} KiB, CPU {d['cpu_ms_per_1000_events']} ms/1000 ev")
PY
  sleep 2 # let closed connections drain
}

for spec in $NS; do
  n="${spec%@*}"
  INTERVAL="$DEFAULT_INTERVAL"
  [ "$spec" = "$n" ] || INTERVAL="${spec#*@}"
  max=$(( (FDS - 100) / 2 ))
  if [ "$n" -gt "$max" ]; then
    case "$NOTE" in *"N=$n capped"*) ;; *) NOTE="${NOTE}N=$n capped to $max: the fd limit is $FDS (hard) and a proxy holds two fds per stream. " ;; esac
    log "N=$n capped to $max (fd limit $FDS)"
    n=$max
  fi
  for round in $(seq "$RUNS"); do
    for proxy in direct $PROXIES; do
      measure "$n" "$proxy" "$round"
    done
  done
done

[ -z "${STREAMS_RAW_OUT:-}" ] || cp "$RAW" "$STREAMS_RAW_OUT"
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
python3 "$HERE/report_streams.py" "$RAW" "$RESULTS" \
  "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
  "machine=$(nproc) CPUs, $CPU_MODEL, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
  "command=benches/load/streams.sh (STREAMS_N=\"$NS\" STREAMS_RUNS=$RUNS)" \
  "settings=events every $DEFAULT_INTERVAL ms per stream unless marked, opened at $OPEN_RATE/s, ${WARMUP}s settle, ${WINDOW}s window, $RUNS round(s) (medians); one worker each; $PLACEMENT" \
  "versions=$("$NGINX_BIN" -v 2>&1 | sed 's/.*: //')" \
  "note=$NOTE"
[ "$FAILED" = 0 ] || die "some sluice or direct streams failed or ended early (see the table's open column)"
