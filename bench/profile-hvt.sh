#!/usr/bin/env bash
# Where atoll-hvt's time goes while it serves the slides: `perf record` on
# the tender (all its threads, with call graphs) under wrk at 1 and at 16
# connections, in a network namespace of its own (TAP device, guest
# 10.77.0.2). Prints wrk's figures and the top symbols by self time.
#
# The guest's own code is not visible to the host's perf here (under PVM it
# shows as `pvm_do_event_irqoff`: time spent in the guest); what is visible
# is the cost of entering and leaving it and of moving the frames.
#
# Usage (root, after `cargo build --release -p atoll-hvt` and
# `target/release/atoll build --release examples/slides`):
#   bench/profile-hvt.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-8}
for tool in perf wrk ip; do
    command -v $tool >/dev/null || { echo "bench/profile-hvt.sh: $tool is missing" >&2; exit 1; }
done
kernel=examples/target/x86_64-unknown-none/release/slides
tender=target/release/atoll-hvt
[ -x "$tender" ] && [ -f "$kernel" ] || { echo "bench/profile-hvt.sh: build $tender and $kernel first" >&2; exit 1; }
ns=atoll-profile-$$
out=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=bench/netns.sh
. bench/netns.sh
tap_namespace "$ns"
ip netns exec "$ns" "$tender" --net:service=tap0 "$kernel" -- --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1 \
    >"$out/guest.log" 2>&1 &
pid=$!
sleep 2
for connections in 1 16; do
    echo "== $connections connection(s), $seconds s"
    perf record -q -F 500 -g -p "$pid" -o "$out/perf-$connections.data" -- sleep "$seconds" >/dev/null 2>&1 &
    perf_pid=$!
    ip netns exec "$ns" wrk -t1 -c"$connections" -d"${seconds}s" http://10.77.0.2/ | grep -E "Requests/sec|Latency"
    wait "$perf_pid" || true
    # head ends the pipe early: not a failure.
    perf report -i "$out/perf-$connections.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -12 || true
done
echo "(perf data in $out)"
