#!/usr/bin/env bash
# How the length of atoll-hvt's network poll (`--net-poll-us`) trades CPU
# for requests: for each poll length, boots the slides under atoll-hvt in a
# network namespace of its own (TAP device, guest 10.77.0.2), runs wrk at
# the given number of connections (threads = min(2, connections), as
# `atoll-bench http` does) and prints requests/s, the tender's CPU use in
# cores (all its threads, from /proc/PID/stat) and its VM exits.
#
# Usage (root, after `cargo build-tender` and
# `target/release/atoll build --release examples/slides`):
#   bench/net-poll-sweep.sh [SECONDS] [CONNECTIONS] [POLL_US...]
# e.g. bench/net-poll-sweep.sh 4 16 0 50 200 500 1000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-4}
connections=${2:-16}
shift 2 2>/dev/null || shift $#
polls=("$@")
[ ${#polls[@]} -gt 0 ] || polls=(0 50 200 500)
for tool in wrk ip; do
    command -v $tool >/dev/null || { echo "bench/net-poll-sweep.sh: $tool is missing" >&2; exit 1; }
done
kernel=examples/target/x86_64-unknown-none/release/slides
tender=target/x86_64-unknown-linux-musl/release/atoll-hvt
[ -x "$tender" ] && [ -f "$kernel" ] || { echo "bench/net-poll-sweep.sh: build $tender and $kernel first" >&2; exit 1; }
ns=atoll-sweep-$$
log=$(mktemp)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT
# shellcheck source=bench/netns.sh
. bench/netns.sh
tap_namespace "$ns"
threads=$(( connections < 2 ? connections : 2 ))
ticks=$(getconf CLK_TCK)
echo "| --net-poll-us | connections | requests/s | tender CPU (cores) | VM exits |"
echo "| ---: | ---: | ---: | ---: | ---: |"
for poll in "${polls[@]}"; do
    ip netns exec "$ns" "$tender" --stats --net-poll-us="$poll" --net:service=tap0 "$kernel" -- \
        --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    rate=$(ip netns exec "$ns" wrk -t"$threads" -c"$connections" -d"${seconds}s" http://10.77.0.2/ |
        awk '/Requests\/sec/ {print $2}')
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    exits=$(grep -o 'exits=[0-9]*' "$log" | head -1 | cut -d= -f2)
    cores=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v s="$seconds" 'BEGIN {printf "%.2f", (a - b) / t / s}')
    printf '| %s | %s | %.0f | %s | %s |\n' "$poll" "$connections" "$rate" "$cores" "$exits"
done
