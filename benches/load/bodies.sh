#!/usr/bin/env bash
# Scenario 5 of issue #8: large request bodies (1, 4, 16 MiB) with request redaction on.
#
#   benches/load/bodies.sh                          # 1/4/16 MiB, 3 rounds, ≈ 3 min
#   BODIES_SIZES="4" BODIES_RUNS=1 benches/load/bodies.sh    # quick look
#
# For each size a Messages body is generated: a conversation whose user turns hold
# mixed Chinese/English prompt text with `\n` escapes (so the redactor decodes the JSON
# strings) and an 18-digit ID-card number and a 16-digit card number every ~4 KiB.
# For each size and round a fresh sluice (pinned to CPU 1, one worker) runs with
# `filters.request.redact: [cn_id_card, bank_card]` (scenario 2 of run.sh) and
# `limits.max_body: 64MiB`, in front of the mock upstream (CPU 0), and:
#   1. reads the idle RSS (VmRSS) after a small warm-up request;
#   2. sends BODIES_SEQ requests one at a time (oha -c 1) and reads VmHWM: peak RSS over
#      idle with one body in flight, as a multiple of the body size (target ≤ 3×);
#   3. drives it with BODIES_CONNS concurrent clients for BODIES_DURATION s (oha -c N -z):
#      requests/s, MB/s of request body, p50/p99, proxy CPU per MiB, and VmHWM again
#      (peak over idle with N bodies in flight, per body);
#   4. (first round) checks one request end to end: 200, and the mock received the body
#      with every number replaced by [REDACTED] and still valid JSON.
# CPU per MiB staying flat from 1 to 16 MiB is the "no quadratic behaviour" check.
# The mock does not record these requests (x-mock-no-record) except the check in step 4.
#
# Knobs: BODIES_SIZES (MiB, default "1 4 16"), BODIES_RUNS (3), BODIES_CONNS (4),
# BODIES_DURATION (10), BODIES_SEQ (20), BODIES_RESULTS (benches/load/results-bodies.md),
# BODIES_RAW_OUT=FILE, LOAD_NO_BUILD=1, LOAD_KEEP=1, LOAD_PIN (1). Run it under
# `flock /tmp/sluice-bench.lock` when others measure on the same machine.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

SIZES="${BODIES_SIZES:-1 4 16}"
RUNS="${BODIES_RUNS:-3}"
CONNS="${BODIES_CONNS:-4}"
DURATION="${BODIES_DURATION:-10}"
SEQ="${BODIES_SEQ:-20}"
RESULTS="${BODIES_RESULTS:-$HERE/results-bodies.md}"

SCRIPT=bodies.sh
# shellcheck source=common.sh
. "$HERE/common.sh"

need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
apt_install "${need[@]}"
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
  log "installing oha (cargo install oha --locked; once)"
  cargo install oha --locked >&2
fi
build_release sluice mock-upstream

setup_work bodies oha sluice mock-upstream

make_keys
ID_NUMBER=11010519491231002X
CARD_NUMBER=4111111111111111
SMALL='{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
printf '%s' "$SMALL" >"$WORK/small.json"

start_mock
log "mock upstream on $MOCK_ADDR"

# make_body MIB FILE: a Messages body of exactly MIB MiB.
make_body() {
  python3 - "$1" "$2" "$ID_NUMBER" "$CARD_NUMBER" <<'PY'
import json, sys
size = int(sys.argv[1]) << 20
idn, card = sys.argv[3], sys.argv[4]
para = ("请帮我检查下面这段日志并总结问题。The service returned an error after the retry "
        "window; 用户反馈订单状态没有更新。 Customer record: name Zhang San, ID " + idn +
        ", card " + card + ", phone 13800138000.\n" +
        "Stack trace line: at handler (src/orders/update.rs:214) — timeout after 30s\n")
def body(n_paras):  # four user turns of n_paras/4 paragraphs each
    turns = []
    per = max(1, n_paras // 4)
    left = n_paras
    while left > 0:
        k = min(per, left)
        turns.append({"role": "user", "content": [{"type": "text", "text": para * k}]})
        turns.append({"role": "assistant", "content": "Noted, continuing."})
        left -= k
    turns.append({"role": "user", "content": "Summarise all of the above."})
    return {"model": "claude-sonnet-4-5", "max_tokens": 64,
            "system": "You are a log analyst.", "messages": turns}
n = size // len(json.dumps(para, ensure_ascii=False).encode())
raw = json.dumps(body(n), ensure_ascii=False).encode()
while len(raw) > size:
    n -= max(1, (len(raw) - size) // len(json.dumps(para, ensure_ascii=False).encode()) + 1)
    raw = json.dumps(body(n), ensure_ascii=False).encode()
# pad the system prompt to hit the size exactly
d = body(n)
d["system"] += " " * (size - len(raw))
raw = json.dumps(d, ensure_ascii=False).encode()
assert len(raw) == size, (len(raw), size)
open(sys.argv[2], "wb").write(raw)
PY
}

sluice_conf() {
  sluice_conf_head "" "$1" 5m
  cat <<EOF
limits: { max_body: 64MiB }
filters: { request: { redact: [cn_id_card, bank_card] } }
logging:
  access: { path: "off" }
EOF
}

status_kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }
cpu_ticks() {
  local f
  f="$(cat "/proc/$1/stat")"
  f="${f##*) }"
  set -- $f
  echo $((${12} + ${13}))
}
TICK="$(getconf CLK_TCK)"

start_sluice() {
  PORT="$(free_port)"
  sluice_conf "$PORT" >"$WORK/sluice.yaml"
  "$SLUICE" -t -c "$WORK/sluice.yaml" >"$WORK/sluice.t" 2>&1 || die "sluice -t: $(cat "$WORK/sluice.t")"
  RUST_LOG=warn "${PROXY_PIN[@]}" "$SLUICE" -c "$WORK/sluice.yaml" >"$WORK/sluice.out" 2>>"$WORK/sluice.err" &
  SL_PID=$!
  PIDS+=("$SL_PID")
  local code=""
  for _ in $(seq 100); do
    kill -0 "$SL_PID" 2>/dev/null || die "sluice exited at start-up: $(tail -5 "$WORK/sluice.err")"
    code="$(curl -s -o "$WORK/ready.body" -w '%{http_code}' --max-time 2 -H "x-api-key: $TENANT_KEY" \
      -H "x-mock-require-key: $MOCK_KEY" -H 'x-mock-no-record: 1' -H 'content-type: application/json' \
      --data-binary "@$WORK/small.json" "http://127.0.0.1:$PORT/v1/messages" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "sluice does not answer 200 (last: $code $(head -c 300 "$WORK/ready.body"))"
}

stop_sluice() {
  kill "$SL_PID" 2>/dev/null || true
  wait "$SL_PID" 2>/dev/null || true
}

# check_redacted FILE: one request through sluice; the mock must get valid JSON with
# every number replaced.
check_redacted() {
  local file=$1 code
  curl -s -o /dev/null -X POST "http://$MOCK_ADDR/__mock/clear"
  code="$(curl -s -o "$WORK/check.body" -w '%{http_code}' --max-time 60 -H "x-api-key: $TENANT_KEY" \
    -H "x-mock-require-key: $MOCK_KEY" -H 'content-type: application/json' \
    --data-binary "@$file" "http://127.0.0.1:$PORT/v1/messages")"
  [ "$code" = 200 ] || die "large body not answered 200: $code $(head -c 300 "$WORK/check.body")"
  curl -s "http://$MOCK_ADDR/__mock/requests" >"$WORK/seen.json"
  curl -s -o /dev/null -X POST "http://$MOCK_ADDR/__mock/clear"
  python3 - "$WORK/seen.json" "$file" "$ID_NUMBER" "$CARD_NUMBER" <<'PY' || die "redaction check failed"
import json, sys
seen = json.load(open(sys.argv[1]))
assert len(seen) == 1, f"mock saw {len(seen)} requests"
body = seen[0]["body"]
sent = open(sys.argv[2], encoding="utf-8").read()
json.loads(body)  # still valid JSON
assert sys.argv[3] not in body and sys.argv[4] not in body, "numbers reached the upstream"
n = sent.count(sys.argv[3]) + sent.count(sys.argv[4])
assert body.count("[REDACTED]") == n, (body.count("[REDACTED]"), n)
print(f"redaction ok: {n} numbers replaced", file=sys.stderr)
PY
}

oha_run() { # oha_run OUT.json ARGS...
  local out=$1
  shift
  "${LOAD_PIN_CMD[@]}" oha --no-tui --output-format json -m POST -H "x-api-key: $TENANT_KEY" \
    -H 'x-mock-no-record: 1' -H 'anthropic-version: 2023-06-01' -T application/json "$@" \
    "http://127.0.0.1:$PORT/v1/messages" >"$out"
}

RAW="$WORK/raw.tsv"
: >"$RAW"
for mib in $SIZES; do
  body="$WORK/body-$mib.json"
  make_body "$mib" "$body"
  for round in $(seq "$RUNS"); do
    start_sluice
    idle="$(status_kib "$SL_PID" VmRSS)"
    hwm0="$(status_kib "$SL_PID" VmHWM)"
    oha_run "$WORK/seq.json" -n "$SEQ" -c 1 -D "$body"
    hwm1="$(status_kib "$SL_PID" VmHWM)"
    t0="$(cpu_ticks "$SL_PID")"
    oha_run "$WORK/conc.json" -z "${DURATION}s" -c "$CONNS" -D "$body"
    t1="$(cpu_ticks "$SL_PID")"
    hwm2="$(status_kib "$SL_PID" VmHWM)"
    rss_end="$(status_kib "$SL_PID" VmRSS)"
    # Checked after the measurement, so the idle RSS above is that of a fresh process.
    [ "$round" != 1 ] || check_redacted "$body"
    stop_sluice
    python3 - "$WORK/seq.json" "$WORK/conc.json" "$mib" "$round" "$idle" "$hwm0" "$hwm1" "$hwm2" \
      "$rss_end" "$((t1 - t0))" "$TICK" "$CONNS" >>"$RAW" <<'PY'
import json, sys
seq, conc = (json.load(open(p)) for p in sys.argv[1:3])
mib, rnd, idle, hwm0, hwm1, hwm2, rss_end, ticks, tick, conns = sys.argv[3:13]
mib, idle, hwm1, hwm2, conns = int(mib), int(idle), int(hwm1), int(hwm2), int(conns)
def bad(d):
    codes = d.get("statusCodeDistribution", {})
    return sum(v for k, v in codes.items() if not k.startswith("2")) + sum(
        v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline")
ok = sum(v for k, v in conc.get("statusCodeDistribution", {}).items() if k.startswith("2"))
rps = conc["summary"]["requestsPerSec"]
cpu_s = int(ticks) / int(tick)
p = conc["latencyPercentiles"]
print("\t".join(str(x) for x in [
    mib, rnd, f"{rps:.2f}", f"{rps * mib * 1.048576:.1f}", round(p["p50"] * 1e3, 1), round(p["p99"] * 1e3, 1),
    idle, hwm1, hwm2, f"{(hwm1 - idle) / 1024 / mib:.2f}", f"{(hwm2 - idle) / 1024 / mib / conns:.2f}",
    f"{cpu_s * 1e3 / max(ok * mib, 1):.2f}", bad(seq) + bad(conc), rss_end,
    round(seq["latencyPercentiles"]["p50"] * 1e3, 1)]))
PY
    log "$mib MiB round $round: $(tail -1 "$RAW" | tr '\t' ' ')"
  done
done

[ -z "${BODIES_RAW_OUT:-}" ] || cp "$RAW" "$BODIES_RAW_OUT"
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
python3 - "$RAW" "$RESULTS" "$CONNS" "$(date -u +%Y-%m-%dT%H:%MZ)" \
  "$(nproc) CPUs, $CPU_MODEL, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
  "benches/load/bodies.sh (BODIES_SIZES=\"$SIZES\" BODIES_RUNS=$RUNS)" \
  "oha -c 1 -n $SEQ, then oha -c $CONNS -z ${DURATION}s; $RUNS round(s) (medians), a fresh sluice each; one worker; $PLACEMENT; $(oha --version 2>/dev/null)" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
c = sys.argv[3]
sys.argv = sys.argv[:3] + sys.argv[4:]
by = {}
for r in rows:
    by.setdefault(int(r[0]), []).append(r)
med = lambda rs, i: statistics.median(float(r[i]) for r in rs)
lines = [
    f"| body | req/s (c={c}) | request MB/s | p50 / p99 (c={c}) | p50 (c=1) | RSS idle | peak over idle, 1 in flight | peak over idle per body, {c} in flight | sluice CPU per MiB | errors |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for mib in sorted(by):
    rs = by[mib]
    lines.append(
        f"| {mib} MiB | {med(rs, 2):.1f} | {med(rs, 3):.0f} | {med(rs, 4):.0f} / {med(rs, 5):.0f} ms | {med(rs, 14):.0f} ms"
        f" | {med(rs, 6) / 1024:.1f} MiB | {(med(rs, 7) - med(rs, 6)) / 1024:.1f} MiB = {med(rs, 9):.2f}× body"
        f" | {med(rs, 10):.2f}× body | {med(rs, 11):.1f} ms | {sum(int(r[12]) for r in rs)} |")
table = "\n".join(lines)
print(table)
with open(sys.argv[2], "w") as f:
    f.write("# Scenario 5: large request bodies with redaction (benches/load/bodies.sh)\n\n")
    f.write(f"- date: {sys.argv[3]}\n- machine: {sys.argv[4]}\n- command: {sys.argv[5]}\n- settings: {sys.argv[6]}\n\n")
    f.write(table + "\n\n")
    f.write("Peak over idle = VmHWM − VmRSS after one small warm-up request (fresh process per round);"
            f" with {c} in flight it is divided by {c}. Target (issue #8): peak ≤ 3× the body size over idle,"
            " no quadratic behaviour (CPU per MiB flat from 1 to 16 MiB).\n")
PY
