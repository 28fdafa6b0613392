#!/usr/bin/env bash
# Whole-gateway load test: sluice vs nginx (+Lua) on the same mock upstream.
#
#   benches/load/run.sh                       # scenarios 1 2 4, one round, ≈ 2½ minutes
#   LOAD_SCENARIOS="1 2 3 4" benches/load/run.sh   # all four, ≈ 3 minutes
#   LOAD_RUNS=3 benches/load/run.sh           # three interleaved rounds, medians reported
#   LOAD_PROFILE="1 2" benches/load/run.sh    # + perf/strace profiles → profile.md
#
# Installs what is missing (wrk, nginx, libnginx-mod-http-lua, and oha for scenario 4),
# builds release, starts target/release/mock-upstream, then for each scenario starts
# sluice and nginx with equivalent configurations (one worker each), checks both answer
# 200 (and that the upstream key was injected, and in scenario 2 that the ID/card numbers
# were redacted), drives them with wrk, and prints a table that is also written to
# benches/load/results.md. Everything runs on ephemeral loopback ports from a temp dir and
# is killed on exit.
#
# Scenarios (LOAD_SCENARIOS, default "1 2 4"):
#   1  plain relay: sluice route + tenant auth (one sha256 key) + upstream-key injection
#      vs nginx proxy_pass + proxy_set_header x-api-key + HTTP/1.1 upstream keepalive
#   2  the seed setup: + limits.requests (never rejects) + request redaction
#      (cn_id_card, bank_card) + JSON access log to a file, vs nginx + Lua key table +
#      limit_req + ngx.re.gsub body redaction + log_format json
#   3  streaming relay: like 1, but "stream": true (an SSE answer of 11 events, 5
#      deltas, written by the mock at once); nginx gets `proxy_buffering off`
#   4  overhead at a fixed rate (LOAD_RATE, default 2000 req/s, oha with latency
#      correction): direct to the mock vs through sluice and nginx with the scenario-2
#      configurations; added p50/p99/p99.9 latency
#
# CPU placement (LOAD_PIN=1, default, on machines with ≥ 2 CPUs): the proxy under test —
# the whole process, every thread, nginx master and worker alike — runs on CPU 1; the load
# generator and the mock upstream run on CPU 0. Each proxy therefore gets exactly one core.
# LOAD_PIN=0 leaves everything to the scheduler.
#
# Knobs: LOAD_DURATION (s, default 10), LOAD_WARMUP (s, default 2), LOAD_CONNS (default
# 50), LOAD_RUNS (default 1), LOAD_RATE (default 2000), LOAD_SCENARIOS, LOAD_PIN,
# LOAD_KEEP=1 (keep the temp dir), LOAD_NO_BUILD=1 (skip cargo build),
# LOAD_RESULTS (default benches/load/results.md), LOAD_RAW_OUT=FILE (keep the raw TSV;
# `report.py A.tsv,B.tsv OUT.md` gives medians over several runs), LOAD_PROFILE="1 2"
# (profile sluice and nginx in those scenarios with perf + strace, installing linux-perf
# and strace if missing, into benches/load/profile.md or LOAD_PROFILE_OUT;
# LOAD_PROFILE_SECS, default 5).
#
# Load generators: wrk (Debian package) for throughput; oha (cargo install, a few minutes
# once) for scenario 4 only, because wrk has no constant-rate mode and wrk2 is not packaged.
#
# Issue #8's other two measurements have their own scripts (same patterns: install, build,
# ephemeral ports, CPU pinning, cleanup):
#   benches/load/streams.sh   scenario 3 at scale: 1,000 and 10,000 concurrent SSE streams
#                             (target/release/load-streams), RSS per stream, CPU per 1,000
#                             events, added per-event latency → results-streams.md
#   benches/load/bodies.sh    scenario 5: 1/4/16 MiB request bodies with redaction,
#                             throughput and peak RSS over idle → results-bodies.md
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

DURATION="${LOAD_DURATION:-10}"
WARMUP="${LOAD_WARMUP:-2}"
CONNS="${LOAD_CONNS:-50}"
RUNS="${LOAD_RUNS:-1}"
RATE="${LOAD_RATE:-2000}"
SCENARIOS="${LOAD_SCENARIOS:-1 2 4}"
RESULTS="${LOAD_RESULTS:-$HERE/results.md}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
LUA_MODULE=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MODULE=/usr/lib/nginx/modules/ndk_http_module.so

SCRIPT=run.sh
# shellcheck source=common.sh
. "$HERE/common.sh"
wants() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- 1. install
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x "$NGINX_BIN" ] || need+=(nginx)
[ -f "$LUA_MODULE" ] || need+=(libnginx-mod-http-lua)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
if [ -n "${LOAD_PROFILE:-}" ]; then
  command -v perf >/dev/null || need+=(linux-perf)
  command -v strace >/dev/null || need+=(strace)
fi
apt_install "${need[@]}"
export PATH="$HOME/.cargo/bin:$PATH"
if wants 4 && ! command -v oha >/dev/null; then
  # oha is the constant-rate driver of scenario 4 (wrk2 is not packaged in Debian 12);
  # it builds from crates.io in a few minutes, once.
  log "installing oha (cargo install oha --locked; once)"
  cargo install oha --locked >&2
fi

# ---------------------------------------------------------------- 2. build
build_release sluice mock-upstream

# ---------------------------------------------------------------- set-up
setup_work load wrk/oha sluice mock-upstream
MOCK="$WORK/bin/mock-upstream"

BODY_FILE="$HERE/body.json"
BODY="$(tr -d '\n' <"$BODY_FILE")"
STREAM_BODY_FILE="$WORK/body-stream.json"
printf '%s' "${BODY/\"max_tokens\":64,/\"max_tokens\":64,\"stream\":true,}" >"$STREAM_BODY_FILE"
ID_NUMBER=11010519491231002X   # in body.json: must be redacted in scenario 2
CARD_NUMBER=4111111111111111
make_keys
export LOAD_KEY="$TENANT_KEY"

# ---------------------------------------------------------------- mock upstream
start_mock
log "mock upstream on $MOCK_ADDR"

# ---------------------------------------------------------------- configurations
# sluice_conf SCENARIO PORT FILTERS(0|1) > file
sluice_conf() {
  local s=$1 port=$2 filters=$3
  sluice_conf_head "-$s" "$port" 5m
  if [ "$s" = 2 ]; then
    cat <<EOF
limits:
  max_body: 32MiB
  requests: { rate: 1000000/s, burst: 100000 }
logging:
  access: { path: $WORK/sluice-access-$s.log, format: json }
EOF
    if [ "$filters" = 1 ]; then
      echo 'filters: { request: { redact: [cn_id_card, bank_card] } }'
    fi
  else
    cat <<EOF
limits: { max_body: 32MiB }
logging:
  access: { path: "off" }
EOF
  fi
}

# nginx_conf SCENARIO PORT > file   (prefix = $WORK/nginx-SCENARIO)
nginx_conf() {
  local s=$1 port=$2 p="$WORK/nginx-$1"
  cat <<EOF
load_module $NDK_MODULE;
load_module $LUA_MODULE;
worker_processes 1;
daemon off;
pid $p/nginx.pid;
error_log $p/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $p/body;
    proxy_temp_path $p/proxy;
    fastcgi_temp_path $p/fastcgi;
    uwsgi_temp_path $p/uwsgi;
    scgi_temp_path $p/scgi;
    client_max_body_size 32m;
    client_body_buffer_size 64k;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    upstream mock {
        server $MOCK_ADDR;
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
EOF
  if [ "$s" = 2 ]; then
    cat <<EOF
    log_format json escape=json '{"ts":"\$time_iso8601","request_id":"\$request_id",'
        '"client_ip":"\$remote_addr","method":"\$request_method","path":"\$uri",'
        '"tenant":"\$tenant","status":\$status,"bytes_in":\$request_length,'
        '"bytes_out":\$bytes_sent,"duration_ms":\$request_time,'
        '"upstream":"\$upstream_addr","upstream_ms":"\$upstream_response_time"}';
    access_log $p/access.log json buffer=64k flush=1s;
    limit_req_zone \$http_x_api_key zone=tenants:10m rate=1000000r/s;
    init_by_lua_block {
        tenants = { ["$TENANT_KEY"] = "bench" }
    }
EOF
  else
    echo "    access_log off;"
  fi
  cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location = /v1/messages {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header x-api-key "$MOCK_KEY";
            proxy_set_header Authorization "";
EOF
  # SSE through nginx needs this (sluice never buffers streams).
  [ "$s" != 3 ] || echo "            proxy_buffering off;"
  if [ "$s" = 2 ]; then
    cat <<'EOF'
            set $tenant "";
            limit_req zone=tenants burst=100000 nodelay;
            access_by_lua_block {
                local key = ngx.var.http_x_api_key
                local tenant = key and tenants[key]
                if not tenant then
                    ngx.status = 401
                    ngx.header["content-type"] = "application/json"
                    ngx.say('{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}')
                    return ngx.exit(401)
                end
                ngx.var.tenant = tenant
                ngx.req.read_body()
                local body = ngx.req.get_body_data()
                if body then
                    local out, n = ngx.re.gsub(body, [[\d{17}[\dXx]|\d{16,19}]], "[REDACTED]", "jo")
                    if n and n > 0 then ngx.req.set_body_data(out) end
                end
            }
EOF
  fi
  cat <<EOF
        }
    }
}
EOF
}

# Does this sluice accept `filters` (being integrated)? Decided once, on scenario 2's file.
SLUICE_FILTERS=0
FILTERS_NOTE=""
if wants 2 || wants 4; then
  sluice_conf 2 1 1 >"$WORK/check.yaml"
  if "$SLUICE" -t -c "$WORK/check.yaml" >"$WORK/check.out" 2>&1; then
    SLUICE_FILTERS=1
  else
    sluice_conf 2 1 0 >"$WORK/check.yaml"
    "$SLUICE" -t -c "$WORK/check.yaml" >"$WORK/check2.out" 2>&1 \
      || die "scenario-2 sluice config rejected: $(cat "$WORK/check2.out")"
    FILTERS_NOTE="this sluice rejects \`filters\` ($(head -c 200 "$WORK/check.out" | tr '\n' ' ')): scenario 2 ran WITHOUT request redaction on the sluice side"
    log "WARNING: $FILTERS_NOTE"
  fi
fi

# ---------------------------------------------------------------- processes
# start_sluice SCENARIO -> sets SL_PID SL_PORT
start_sluice() {
  local s=$1
  SL_PORT="$(free_port)"
  sluice_conf "$s" "$SL_PORT" "$SLUICE_FILTERS" >"$WORK/sluice-$s.yaml"
  "$SLUICE" -t -c "$WORK/sluice-$s.yaml" >"$WORK/sluice-$s.t" 2>&1 \
    || die "sluice -t rejects scenario $s: $(cat "$WORK/sluice-$s.t")"
  RUST_LOG=warn "${PROXY_PIN[@]}" "$SLUICE" -c "$WORK/sluice-$s.yaml" \
    >"$WORK/sluice-$s.out" 2>>"$WORK/sluice-$s.err" &
  SL_PID=$!
  PIDS+=("$SL_PID")
}

# start_nginx SCENARIO -> sets NG_PID NG_PORT
start_nginx() {
  local s=$1 p="$WORK/nginx-$1"
  NG_PORT="$(free_port)"
  mkdir -p "$p"
  nginx_conf "$s" "$NG_PORT" >"$p/nginx.conf"
  "$NGINX_BIN" -t -q -p "$p" -e "$p/error.log" -c "$p/nginx.conf" 2>"$p/t.out" \
    || die "nginx -t rejects scenario $s: $(cat "$p/t.out" "$p/error.log" 2>/dev/null)"
  "${PROXY_PIN[@]}" "$NGINX_BIN" -p "$p" -e "$p/error.log" -c "$p/nginx.conf" \
    >"$p/stdout" 2>"$p/stderr" &
  NG_PID=$!
  PIDS+=("$NG_PID")
}

# nginx_worker MASTER_PID: the (single) worker's pid, once it exists.
nginx_worker() {
  local w=""
  for _ in $(seq 50); do
    w="$(ps -o pid= --ppid "$1" 2>/dev/null | head -1 | tr -d ' ')"
    [ -n "$w" ] && break
    sleep 0.1
  done
  echo "$w"
}

stop_pid() {
  local kids
  kids="$(ps -o pid= --ppid "$1" 2>/dev/null || true)"
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for k in $kids; do kill "$k" 2>/dev/null || true; done
}

# ready NAME PORT PID BODYFILE: wait until a request answers 200 with the upstream key
# injected (x-mock-require-key makes the mock refuse any other key), else fail.
ready() {
  local name=$1 port=$2 pid=$3 body=$4 code=""
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited at start-up (see $WORK; LOAD_KEEP=1 keeps it)"
    code="$(curl -s -o "$WORK/ready.body" -w '%{http_code}' --max-time 2 \
      -H "x-api-key: $TENANT_KEY" -H "x-mock-require-key: $MOCK_KEY" \
      -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
      --data-binary "@$body" "http://127.0.0.1:$port/v1/messages" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "$name on port $port does not answer 200 (last: ${code:-none}: $(head -c 300 "$WORK/ready.body" 2>/dev/null))"
}

# check_redacted NAME PORT: the mock must have received [REDACTED], not the numbers.
check_redacted() {
  local name=$1 port=$2
  curl -s -o /dev/null -X POST "http://$MOCK_ADDR/__mock/clear"
  curl -s -o /dev/null --max-time 2 -H "x-api-key: $TENANT_KEY" -H 'content-type: application/json' \
    --data-binary "@$BODY_FILE" "http://127.0.0.1:$port/v1/messages"
  curl -s "http://$MOCK_ADDR/__mock/requests" >"$WORK/seen.json"
  if grep -q "$ID_NUMBER\|$CARD_NUMBER" "$WORK/seen.json" || ! grep -q 'REDACTED' "$WORK/seen.json"; then
    die "$name did not redact the request body: $(head -c 600 "$WORK/seen.json")"
  fi
  curl -s -o /dev/null -X POST "http://$MOCK_ADDR/__mock/clear"
}

# CPU ticks (utime+stime, all threads) of a process and its children (nginx workers).
cpu_ticks() {
  local total=0 p f
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    f="${f##*) }" # fields from 3 on: state is $1, utime is field 14 → $12
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
TICK="$(getconf CLK_TCK)"

RAW="$WORK/raw.tsv"
: >"$RAW"
NON2XX_TOTAL=0

# measure SCENARIO PROXY PORT PID BODYFILE ROUND: warm-up + wrk; one TSV line.
measure() {
  local s=$1 proxy=$2 port=$3 pid=$4 body=$5 round=$6 out t0 t1 m0 m1
  LOAD_BODY_FILE="$body" "${LOAD_PIN_CMD[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" \
    -s "$HERE/post.lua" "http://127.0.0.1:$port" >/dev/null
  t0="$(cpu_ticks "$pid")"
  m0="$(cpu_ticks "$MOCK_PID")"
  out="$(LOAD_BODY_FILE="$body" "${LOAD_PIN_CMD[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" \
    --timeout 5s -s "$HERE/post.lua" "http://127.0.0.1:$port")"
  t1="$(cpu_ticks "$pid")"
  m1="$(cpu_ticks "$MOCK_PID")"
  local line
  line="$(grep '^RESULT' <<<"$out")" || die "wrk printed no RESULT for $proxy/$s: $out"
  local requests=0 duration_us=1 non2xx=0 sockerr=0 p50_us=0 p99_us=0 p999_us=0 kv
  for kv in ${line#RESULT }; do
    case "${kv%%=*}" in
      requests) requests="${kv#*=}" ;;
      duration_us) duration_us="${kv#*=}" ;;
      non2xx) non2xx="${kv#*=}" ;;
      sockerr) sockerr="${kv#*=}" ;;
      p50_us) p50_us="${kv#*=}" ;;
      p99_us) p99_us="${kv#*=}" ;;
      p999_us) p999_us="${kv#*=}" ;;
    esac
  done
  local rps cpu mcpu
  rps="$(python3 -c "print(f'{$requests / ($duration_us / 1e6):.0f}')")"
  cpu="$(python3 -c "print(f'{($t1 - $t0) / $TICK * 1e6 / max($requests, 1):.1f}')")"
  mcpu="$(python3 -c "print(f'{($m1 - $m0) / $TICK * 1e6 / max($requests, 1):.1f}')")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$proxy" "$round" "$rps" "$p50_us" \
    "$p99_us" "$p999_us" "$non2xx" "$sockerr" "$cpu" "$mcpu" >>"$RAW"
  log "scenario $s $proxy round $round: $rps req/s, p50 ${p50_us}µs, p99 ${p99_us}µs, non-2xx $non2xx, socket errors $sockerr, CPU ${cpu}µs/req (mock ${mcpu}µs/req)"
  if [ "$non2xx" != 0 ]; then NON2XX_TOTAL=$((NON2XX_TOTAL + non2xx)); fi
}

# oha_measure LABEL PORT ROUND: constant rate, latency corrected; one TSV line.
oha_measure() {
  local label=$1 port=$2 round=$3 pid=${4:-} url="http://127.0.0.1:$2/v1/messages" t0=0 t1=0 m0 m1
  local args=(-q "$RATE" -c "$CONNS" --latency-correction --no-tui -m POST
    -H "x-api-key: $TENANT_KEY" -H 'anthropic-version: 2023-06-01' -T application/json
    -D "$BODY_FILE" --output-format json)
  "${LOAD_PIN_CMD[@]}" oha -z "${WARMUP}s" "${args[@]}" "$url" >/dev/null
  [ -z "$pid" ] || t0="$(cpu_ticks "$pid")"
  m0="$(cpu_ticks "$MOCK_PID")"
  "${LOAD_PIN_CMD[@]}" oha -z "${DURATION}s" "${args[@]}" "$url" >"$WORK/oha-$label-$round.json"
  [ -z "$pid" ] || t1="$(cpu_ticks "$pid")"
  m1="$(cpu_ticks "$MOCK_PID")"
  python3 - "$WORK/oha-$label-$round.json" "$label" "$round" "$((t1 - t0))" "$((m1 - m0))" "$TICK" \
    "$pid" >>"$RAW" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
errs = sum(v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline")
us = lambda v: round(v * 1e6) if v is not None else 0
n = max(sum(codes.values()), 1)
tick = int(sys.argv[6])
cpu = f"{int(sys.argv[4]) / tick * 1e6 / n:.1f}" if sys.argv[7] else ""
mcpu = f"{int(sys.argv[5]) / tick * 1e6 / n:.1f}"
print("4", sys.argv[2], sys.argv[3], round(d["summary"]["requestsPerSec"]), us(p["p50"]), us(p["p99"]),
      us(p["p99.9"]), bad, errs, cpu, mcpu, sep="\t")
PY
  log "scenario 4 $label round $round: $(tail -1 "$RAW" | cut -f4-11 | tr '\t' ' ')"
}

# profile_pass SCENARIO BODYFILE: perf (DWARF call graphs) of sluice and of the nginx
# worker under the same wrk load, and syscalls per request (strace -f -c) of both.
PROFILE_MD="${LOAD_PROFILE_OUT:-$HERE/profile.md}"
PROFILE_SECS="${LOAD_PROFILE_SECS:-5}"
profile_pass() {
  local s=$1 body=$2 pdir="$WORK/profile-$1" proxy pid port wpid spid reqs
  mkdir -p "$pdir"
  local sections=() specs=()
  for proxy in sluice nginx; do
    if [ "$proxy" = sluice ]; then pid=$SL_PID; port=$SL_PORT; else pid=$NG_WORKER; port=$NG_PORT; fi
    log "profiling $proxy (scenario $s): perf record ${PROFILE_SECS}s"
    LOAD_BODY_FILE="$body" "${LOAD_PIN_CMD[@]}" wrk -t1 -c"$CONNS" -d"$((PROFILE_SECS + 3))s" \
      -s "$HERE/post.lua" "http://127.0.0.1:$port" >"$pdir/wrk-perf-$proxy.out" &
    wpid=$!
    PIDS+=("$wpid")
    sleep 1.5
    perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$pid" -o "$pdir/$proxy.data" \
      -- sleep "$PROFILE_SECS" >/dev/null 2>&1 || die "perf record failed"
    wait "$wpid"
    perf script -i "$pdir/$proxy.data" -F tid,ip,sym >"$pdir/$proxy.txt" 2>/dev/null
    reqs="$(sed -n 's/^RESULT requests=\([0-9]*\) duration_us=\([0-9]*\).*/\1 \2/p' "$pdir/wrk-perf-$proxy.out" |
      awk -v secs="$PROFILE_SECS" '{printf "about %d", $1 / ($2 / 1e6) * secs}')"
    sections+=("$(python3 "$HERE/profile.py" "$pdir/$proxy.txt" "$proxy, scenario $s" "$reqs")")
    log "profiling $proxy (scenario $s): strace -f -c over a 3s wrk run"
    strace -f -c -o "$pdir/strace-$proxy.txt" -p "$pid" 2>/dev/null &
    spid=$!
    PIDS+=("$spid")
    sleep 0.5
    reqs="$(LOAD_BODY_FILE="$body" "${LOAD_PIN_CMD[@]}" wrk -t1 -c"$CONNS" -d3s -s "$HERE/post.lua" \
      "http://127.0.0.1:$port" | sed -n 's/^RESULT requests=\([0-9]*\) .*/\1/p')"
    sleep 0.2
    kill -INT "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    specs+=("$proxy=$pdir/strace-$proxy.txt:$reqs")
  done
  {
    echo "## Scenario $s ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Syscalls per request (strace -f -c: sluice all threads, nginx the worker):"
    echo
    python3 "$HERE/profile.py" --strace "${specs[@]}"
    printf '%s\n\n' "${sections[@]}"
  } >>"$WORK/profile.md.tmp"
}

# ---------------------------------------------------------------- scenarios
for s in 1 2 3; do
  wants "$s" || continue
  cfg=$s
  body="$BODY_FILE"
  if [ "$s" = 3 ]; then body="$STREAM_BODY_FILE"; fi
  start_sluice "$cfg"
  start_nginx "$cfg"
  ready "sluice (scenario $s)" "$SL_PORT" "$SL_PID" "$body"
  ready "nginx (scenario $s)" "$NG_PORT" "$NG_PID" "$body"
  NG_WORKER="$(nginx_worker "$NG_PID")"
  NGINX_WORKERS+=("$NG_WORKER")
  if [ "$s" = 2 ]; then
    [ "$SLUICE_FILTERS" = 1 ] && check_redacted sluice "$SL_PORT"
    check_redacted nginx "$NG_PORT"
  fi
  for round in $(seq "$RUNS"); do
    if [ $((round % 2)) = 1 ]; then order="sluice nginx"; else order="nginx sluice"; fi
    for proxy in $order; do
      if [ "$proxy" = sluice ]; then
        measure "$s" sluice "$SL_PORT" "$SL_PID" "$body" "$round"
      else
        measure "$s" nginx "$NG_PORT" "$NG_PID" "$body" "$round"
      fi
    done
  done
  case " ${LOAD_PROFILE:-} " in *" $s "*) profile_pass "$s" "$body" ;; esac
  if [ "$s" = 2 ]; then
    [ -s "$WORK/sluice-access-2.log" ] || die "sluice wrote no access log in scenario 2"
    [ -s "$WORK/nginx-2/access.log" ] || die "nginx wrote no access log in scenario 2"
  fi
  stop_pid "$SL_PID"
  stop_pid "$NG_PID"
done

if wants 4; then
  start_sluice 2
  start_nginx 2
  ready "sluice (scenario 4)" "$SL_PORT" "$SL_PID" "$BODY_FILE"
  ready "nginx (scenario 4)" "$NG_PORT" "$NG_PID" "$BODY_FILE"
  NGINX_WORKERS+=("$(nginx_worker "$NG_PID")")
  MOCK_PORT="${MOCK_ADDR##*:}"
  for round in $(seq "$RUNS"); do
    oha_measure direct "$MOCK_PORT" "$round"
    if [ $((round % 2)) = 1 ]; then order="sluice nginx"; else order="nginx sluice"; fi
    for proxy in $order; do
      if [ "$proxy" = sluice ]; then oha_measure sluice "$SL_PORT" "$round" "$SL_PID"
      else oha_measure nginx "$NG_PORT" "$round" "$NG_PID"; fi
    done
  done
  stop_pid "$SL_PID"
  stop_pid "$NG_PID"
fi

# ---------------------------------------------------------------- report
if [ -s "$WORK/profile.md.tmp" ]; then
  {
    echo "# sluice profile under load (benches/load/run.sh, LOAD_PROFILE=\"${LOAD_PROFILE}\")"
    echo
    echo "perf record -e cpu-clock -F 999 --call-graph dwarf (hardware counters are unavailable"
    echo "here) on the proxy process while wrk -t1 -c$CONNS drives it; $PLACEMENT."
    echo "Shares are of the proxy's own samples; the loopback delivery of every byte it sends"
    echo "(the peer's TCP receive path and wake-up) is charged to the sender."
    echo
    cat "$WORK/profile.md.tmp"
  } >"$PROFILE_MD"
  rm -f "$WORK/profile.md.tmp"
  log "profile written to $PROFILE_MD"
fi
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
COMMAND="benches/load/run.sh"
[ "$RUNS" = 1 ] || COMMAND="LOAD_RUNS=$RUNS $COMMAND"
[ -z "${LOAD_RAW_OUT:-}" ] || cp "$RAW" "$LOAD_RAW_OUT"
python3 "$HERE/report.py" "$RAW" "$RESULTS" \
  "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
  "machine=$(nproc) CPUs, $CPU_MODEL, $(uname -sr)" \
  "command=$COMMAND" \
  "settings=wrk -t1 -c$CONNS -d${DURATION}s after a ${WARMUP}s warm-up, $RUNS round(s) (medians), one worker each; $PLACEMENT; oha -q $RATE -c $CONNS --latency-correction for scenario 4" \
  "versions=$("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(oha --version 2>/dev/null || echo 'oha n/a')" \
  "filters_note=$FILTERS_NOTE"
[ "$NON2XX_TOTAL" = 0 ] || die "$NON2XX_TOTAL non-2xx answers during measurement (see the table)"
