#!/usr/bin/env bash
# Set up and run sluice:  ./scripts/run.sh [CONFIG]   (default conf/sluice.yaml)
# Installs missing build packages, builds release, and starts the gateway in the
# foreground. With conf/local.yaml it also starts the bundled mock upstream on
# 127.0.0.1:8081, so everything works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
conf="${1:-conf/sluice.yaml}"
scripts/setup-system.sh build
cargo build --release --bins
if [ "$(basename "$conf")" = local.yaml ]; then
  export MOCK_UPSTREAM_KEY="${MOCK_UPSTREAM_KEY:-mock-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  if [ -z "${SLUICE_TENANT_KEY:-}" ]; then
    SLUICE_TENANT_KEY="$(target/release/sluice keygen --tenant local-demo | sed -n 2p)"
    export SLUICE_TENANT_KEY
    echo "gateway key for this run (tenant local-demo): $SLUICE_TENANT_KEY"
  fi
  target/release/mock-upstream --addr 127.0.0.1:8081 &
  mock=$!
  trap 'kill $mock 2>/dev/null || true' EXIT
else
  if [ -z "${ANTHROPIC_API_KEY:-}" ]; then
    echo "ANTHROPIC_API_KEY is not set: conf/sluice.yaml injects it upstream." >&2
    echo "(Try the offline demo instead: ./scripts/run.sh conf/local.yaml)" >&2
    exit 1
  fi
  if [ -z "${SLUICE_TENANT_KEY:-}" ]; then
    SLUICE_TENANT_KEY="$(target/release/sluice keygen --tenant default | sed -n 2p)"
    export SLUICE_TENANT_KEY
    echo "gateway key for this run (tenant default): $SLUICE_TENANT_KEY"
  fi
fi
target/release/sluice -t -c "$conf"
exec target/release/sluice -c "$conf"
