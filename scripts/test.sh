#!/usr/bin/env bash
# Set up and run every test:  ./scripts/test.sh
# Installs missing system packages and a Python venv with the official `anthropic` SDK,
# then runs formatting and lint checks, the Rust unit and integration tests, and the
# SDK tests against the real gateway binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh test

echo "== cargo fmt / clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

echo "== cargo test"
cargo build --bins
cargo test
# every criterion bench once, in test mode (proves it runs; timing is cargo bench's job)
for b in benches/*.rs; do cargo test -q --bench "$(basename "$b" .rs)"; done


echo "== SDK tests (official anthropic Python SDK)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
SLUICE_BIN="$PWD/target/debug/sluice" MOCK_BIN="$PWD/target/debug/mock-upstream" \
  .venv/bin/python -m pytest -q tests/sdk
echo "== all tests passed"
