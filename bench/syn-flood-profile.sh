#!/usr/bin/env bash
# What a SYN flood costs the guest, and what a real client sees meanwhile:
# the slides built with the cycle profiler on (`--features atoll/profile`,
# crates/rt/src/profile.rs) boot on hvt in a network namespace of their own
# (bench/netns.sh); hping3 sends 6000 SYNs at 5000 a second from a forged
# address (as tests/tests/floods.rs does), while curl asks for /healthz
# every 50 ms and prints the status, connect and total seconds of each. Then
# the guest's console: its flood warnings and its profile table.
#
# BUSY=1 keeps one core busy with `yes` during the flood, as a second test
# or VM on a two-core host would: the guest then falls behind the flood.
# SYNS (default 6000) and INTERVAL_US (default 200, 5000 a second) change
# the flood; hping3 cannot always keep up with short intervals, so the
# script prints the rate it reached.
#
# Usage (root, after `cargo build --release -p atoll-cli` and `cargo build-tender`
# with target/x86_64-unknown-linux-musl/release/atoll-hvt copied to target/release):
#   [BUSY=1] [SYNS=N] [INTERVAL_US=N] bench/syn-flood-profile.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in hping3 curl ip; do
    command -v $tool >/dev/null || { echo "bench/syn-flood-profile.sh: $tool is missing" >&2; exit 1; }
done
for tool in atoll atoll-hvt; do
    [ -x "target/release/$tool" ] || {
        echo "bench/syn-flood-profile.sh: build target/release/$tool first" >&2
        exit 1
    }
done
ns=atoll-synflood-$$
log=$(mktemp)
pid= busy= flood=
cleanup() {
    for p in $pid $busy $flood; do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=bench/netns.sh
. bench/netns.sh
tap_namespace "$ns"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) cores; $(uname -sr)"
echo "commit: $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- crates examples || echo ' (with uncommitted changes)'); BUSY=${BUSY:-0}; SYNS=${SYNS:-6000}; INTERVAL_US=${INTERVAL_US:-200}"
# The profiled build goes to a target directory of its own.
kernel=$(CARGO_TARGET_DIR="$PWD/target/apps-profile" target/release/atoll build --release --target hvt \
    --features atoll/profile examples/slides | tail -n1)
ip netns exec "$ns" target/release/atoll-hvt --net:service=tap0 "$kernel" -- --ipv4=10.77.0.2/24 \
    --ipv4-gateway=10.77.0.1 >"$log" 2>&1 &
pid=$!
sleep 1.5
if [ "${BUSY:-0}" = 1 ]; then
    (exec yes >/dev/null) &
    busy=$!
fi
syns=${SYNS:-6000} interval_us=${INTERVAL_US:-200}
start=$(date +%s%N)
(
    ip netns exec "$ns" hping3 -q -S -p 80 -a 198.18.0.1 -i "u$interval_us" -c "$syns" 10.77.0.2 >/dev/null 2>&1 || true
    echo "flood: $syns SYNs in $(( ($(date +%s%N) - start) / 1000000 )) ms"
) &
flood=$!
echo "seconds into the flood, status, connect s, total s (curl)"
for _ in $(seq 30); do
    result=$(ip netns exec "$ns" curl -sS -o /dev/null --max-time 5 \
        -w "%{http_code} %{time_connect} %{time_total}" http://10.77.0.2/healthz 2>&1 | tr '\n' ' ')
    printf '%.3f %s\n' "$(( $(date +%s%N) - start ))e-9" "$result"
    sleep 0.05
done
wait "$flood" || true
flood=
# The guest prints its profile once it has seen no input for a second.
sleep 2.5
echo
# The flood's warnings, and the profile of the window that served curl
# (the boot's own window, before it, served nothing).
grep WARN "$log" || true
grep '^profile:' "$log" | awk '/^profile: window/ { keep = ($0 !~ / 0 requests/) } keep'
