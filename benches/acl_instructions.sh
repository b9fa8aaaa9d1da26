#!/usr/bin/env bash
# Instructions ferry spends on a fixed pub/sub workload, counted by callgrind (exact and
# repeatable on a noisy machine, unlike timings), with and without [[acl]]:
#
#   cargo build --release && bash benches/acl_instructions.sh [FERRY_BINARY...]
#
# For each binary (default: target/release/ferry) and each case, ferry runs under
# `valgrind --tool=callgrind`; mosquitto_sub (QoS 1) subscribes, mosquitto_pub -l
# publishes 20,000 QoS 1 messages, and the run counts only when all 20,000 arrived.
# Queues are made large enough that nothing is dropped, so every run does the same work.
# Cases: no [[acl]]; a subscription the rules wholly allow (no check per message); one
# they allow only in part (each delivery checked). Needs valgrind and mosquitto-clients;
# loopback only; every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/ferry)
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
seq -f 'm%05g' 0 19999 > "$work/lines"
rules='[auth]\nallow_anonymous = true\n[[acl]]\nfilter = "bench/secret"\naction = "subscribe"\nallow = false\n'

run() { # BIN NAME EXTRA FILTER
  local bin="$1" name="$2" extra="$3" filter="$4" port vg sub got total
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf '[mqtt]\nlisten = "127.0.0.1:%s"\nmax_queued = 1000000\nmax_queued_bytes = "1GiB"\n[limits]\nmemory = "4GiB"\n[nats]\nenabled = false\n[store]\ndir = "%s/store-%s"\n[log]\nlevel = "warn"\n%b' \
    "$port" "$work" "$name" "$extra" > "$work/$name.toml"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name" "$bin" --config "$work/$name.toml" 2> "$work/vg.$name" &
  vg=$!
  for _ in $(seq 150); do mosquitto_pub -p "$port" -t x -m y 2>/dev/null && break; sleep 0.2; done
  mosquitto_sub -p "$port" -t "$filter" -q 1 -i "sub-$name" > "$work/sub.$name" &
  sub=$!
  until grep -q probe "$work/sub.$name"; do mosquitto_pub -p "$port" -t bench/t -m probe -q 1; sleep 0.3; done
  timeout 600 mosquitto_pub -p "$port" -t bench/t -q 1 -l -i "pub-$name" < "$work/lines"
  for _ in $(seq 3000); do [ "$(grep -c '^m' "$work/sub.$name")" -ge 20000 ] && break; sleep 0.2; done
  kill "$sub"; kill -TERM "$vg"; wait "$vg" || true
  got=$(grep -c '^m' "$work/sub.$name" || true)
  total=$(grep -o 'Collected : [0-9]*' "$work/vg.$name" | grep -o '[0-9]*')
  [ "$got" -eq 20000 ] || { echo "$name: only $got of 20000 arrived: not counted" >&2; return 1; }
  printf '%-40s %12d instructions  %6d per message\n' "$name" "$total" $((total / 20000))
}

for bin in "${bins[@]}"; do
  tag="$(basename "$bin")"
  run "$bin" "$tag no-acl" "" "bench/t"
  if "$bin" defaults | grep -q '^\[auth\]'; then
    run "$bin" "$tag acl-wholly-allowed" "$rules" "bench/t"
    run "$bin" "$tag acl-partly-allowed" "$rules" "bench/+"
  fi
done
