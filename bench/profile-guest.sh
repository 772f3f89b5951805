#!/usr/bin/env bash
# Where the guest's own time goes while it serves the slides: the slides
# built with the cycle profiler on (`atoll build --features atoll/profile`,
# crates/rt/src/profile.rs), served to wrk at 1 and at 16 connections in a
# network namespace of its own (TAP device, guest 10.77.0.2), on hvt and on
# the unix platform (under atoll-spt). After each load the guest prints one
# table on its console (once it has seen no input for a second); this
# prints wrk's figures and that table.
#
# The host's perf cannot see guest code under PVM (bench/profile-hvt.sh
# profiles the tender); this is the other half. The profiled build goes to
# examples/target/profile, so the ordinary slides build is left alone.
#
# Usage (root, after `cargo build --release -p atoll-cli -p atoll-hvt -p atoll-spt`):
#   bench/profile-guest.sh [SECONDS] [PLATFORMS] [CONNECTIONS]   # default: 8 "hvt unix" "1 16"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-8}
platforms=${2:-hvt unix}
levels=${3:-1 16}
for tool in wrk ip; do
    command -v $tool >/dev/null || { echo "bench/profile-guest.sh: $tool is missing" >&2; exit 1; }
done
for tool in atoll atoll-hvt atoll-spt; do
    [ -x "target/release/$tool" ] || {
        echo "bench/profile-guest.sh: build target/release/$tool first (cargo build --release -p atoll-cli -p atoll-hvt -p atoll-spt)" >&2
        exit 1
    }
done
ns=atoll-gprofile-$$
out=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=bench/netns.sh
. bench/netns.sh
tap_namespace "$ns"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) cores; $(uname -sr)"
echo "commit: $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- crates examples || echo ' (with uncommitted changes)')"
for platform in $platforms; do
    case $platform in
        hvt) tender=target/release/atoll-hvt ;;
        unix) tender=target/release/atoll-spt ;;
        *) echo "bench/profile-guest.sh: unknown platform $platform (hvt or unix)" >&2; exit 1 ;;
    esac
    kernel=$(CARGO_TARGET_DIR="$PWD/examples/target/profile" target/release/atoll build --release --target "$platform" \
        --features atoll/profile examples/slides | tail -n1)
    log=$out/guest-$platform.log
    ip netns exec "$ns" "$tender" --net:service=tap0 "$kernel" -- --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1 \
        >"$log" 2>&1 &
    pid=$!
    # Long enough for the table of whatever came in while booting (the
    # host's own traffic on the TAP) to be out of the way.
    sleep 3
    for connections in $levels; do
        echo
        echo "== $platform, $connections connection(s), $seconds s"
        mark=$(wc -l <"$log")
        ip netns exec "$ns" wrk -t1 -c"$connections" -d"${seconds}s" http://10.77.0.2/ | grep -E "Requests/sec|Latency"
        # The guest reports once it has seen no input for a second.
        sleep 2.5
        # Only the tables of windows that served requests: a stray frame
        # after the load (a late segment, the host's own traffic on the TAP)
        # makes a window of its own.
        tail -n +"$((mark + 1))" "$log" | grep '^profile:' |
            awk '/^profile: window/ { keep = ($0 !~ / 0 requests/) } keep' | grep . ||
            echo "(no profile printed: see $log)"
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done
echo
echo "(guest consoles in $out)"
