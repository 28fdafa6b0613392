#!/usr/bin/env bash
# Install the system packages sluice needs, only those missing. Debian/Ubuntu.
#   scripts/setup-system.sh build   # what building needs (cmake for zlib-ng, OpenSSL headers)
#   scripts/setup-system.sh test    # + what the tests need (python venv for the SDK tests,
#                                   #   headless chromium for the status page test)
set -euo pipefail
want=(cmake pkg-config libssl-dev gcc g++ make curl ca-certificates)
if [ "${1:-build}" = test ]; then
  want+=(python3 python3-venv python3-pip openssl redis-server nginx-light chromium)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
