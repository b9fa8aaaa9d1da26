#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every test.
#   bash tests/run.sh
# Needs: Debian/Ubuntu (apt), Rust (cargo), python3 with pip. Runs as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Peers the tests run against: mosquitto (upstream broker) and nats-server.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)   # tests/tls_listeners.rs
command -v openssl >/dev/null 2>&1 || missing+=(openssl)   # tests/tls.rs makes its CA
command -v chromium >/dev/null 2>&1 || missing+=(chromium)   # tests/status_page.rs
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a system mosquitto on 1883 after install; the tests use their own
# brokers on free ports and do not need it, so it is left alone.

# Python clients (paho-mqtt, nats-py, pytest), when the Python tests exist.
if [ -f tests/python/requirements.txt ]; then
  echo "== installing Python test clients"
  python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt 2>&1 \
    | grep -v -i "running pip as the 'root' user" || true
fi

# Formatting and lints first: they take seconds once the tests are built, and a red
# lint is as much a failure as a red test. Skipped (said so) where the components are
# not installed.
echo "== cargo fmt --check"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "rustfmt not installed: skipped"
fi

echo "== cargo test"
cargo build --locked --bins
cargo test --locked --all-targets   # includes a 2 s per target run of the fuzz harness

echo "== cargo clippy"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --all-targets -- -D warnings
  # The build without TLS (a smaller binary for plain-TCP sites) must stay warning-free too.
  cargo clippy --locked --no-default-features --lib --bins -- -D warnings
else
  echo "clippy not installed: skipped"
fi

# The parser fuzzers (fuzz/README.md) for longer: 20 s per target, under two minutes in all.
echo "== fuzz"
FERRY_FUZZ_SECS=20 cargo test --locked --test fuzz

if [ -f tests/python/requirements.txt ]; then
  echo "== pytest"
  FERRY_BIN="$(pwd)/target/debug/ferry" python3 -m pytest -q tests/python
fi

# The Raspberry Pi build: cross-compile the aarch64 release binary with Debian's Rust 1.85
# (the MSRV), run its qemu-user smoke test (MQTT and NATS round trips, systemd
# notifications, SIGTERM) and package the arm64 .deb. Installs are skipped when present.
echo "== cross build: aarch64-unknown-linux-gnu"
bash cross/build.sh aarch64-unknown-linux-gnu
