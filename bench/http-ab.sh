#!/usr/bin/env bash
# Interleaved A/B of atoll-hvt builds (or kernels) against nginx, with each
# thread's CPU: for ROUNDS rounds, nginx (one worker, behind a veth pair, as
# `atoll-bench http` runs it) and then every SERVER, each under wrk for
# SECONDS at CONNECTIONS (threads = min(2, connections)). Prints requests/s,
# the CPU each of the server's threads used (cores, from /proc/PID/task),
# wrk's CPU, and the tender's VM exits.
#
# A SERVER is a tender executable, optionally with options after a colon
# (`target/release/atoll-hvt:--net-poll-us=500`); it is run as
#   SERVER [OPTIONS] --stats --net:service=tap0 KERNEL -- --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1
# with KERNEL from the environment (default: the release slides), so a
# wrapper script that swaps the kernel argument compares kernels too.
# WRK_THREADS overrides wrk's thread count; MTU sets the TAP device's and the
# veth pair's MTU alike (the guest takes its TAP device's, up to 9000).
# `atoll-spt` with KERNEL a unix build runs the unix platform the same way
# (`KERNEL=examples/target/x86_64-unknown-linux-gnu/release/slides`).
#
# Usage (root; after `cargo build-tender` and
# `target/release/atoll build --release examples/slides`):
#   bench/http-ab.sh SECONDS CONNECTIONS ROUNDS SERVER...
# e.g. bench/http-ab.sh 5 16 3 /tmp/before/atoll-hvt target/x86_64-unknown-linux-musl/release/atoll-hvt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 4 ] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
seconds=$1 connections=$2 rounds=$3
shift 3
for tool in wrk nginx ip curl; do
    command -v $tool >/dev/null || { echo "bench/http-ab.sh: $tool is missing" >&2; exit 1; }
done
# GNU time, for wrk's CPU (the shell's `time` keyword cannot write a file).
[ -x /usr/bin/time ] || { echo "bench/http-ab.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
kernel=${KERNEL:-examples/target/x86_64-unknown-none/release/slides}
[ -f "$kernel" ] || { echo "bench/http-ab.sh: build $kernel first" >&2; exit 1; }
tap_ns=atoll-ab-$$ server_ns=atoll-ab-srv-$$ client_ns=atoll-ab-cli-$$
work=$(mktemp -d)
pid= nginx_pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    for ns in "$tap_ns" "$server_ns" "$client_ns"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/netns.sh
. bench/netns.sh
tap_namespace "$tap_ns"
ip netns add "$server_ns"
ip netns add "$client_ns"
ip link add "ab$$a" type veth peer name "ab$$b"
ip link set "ab$$a" netns "$server_ns"
ip link set "ab$$b" netns "$client_ns"
ip netns exec "$server_ns" ip addr add 10.88.0.1/24 dev "ab$$a"
ip netns exec "$server_ns" ip link set "ab$$a" up
ip netns exec "$server_ns" ip link set lo up
ip netns exec "$client_ns" ip addr add 10.88.0.2/24 dev "ab$$b"
ip netns exec "$client_ns" ip link set "ab$$b" up
if [ -n "${MTU:-}" ]; then
    ip netns exec "$tap_ns" ip link set tap0 mtu "$MTU"
    ip netns exec "$server_ns" ip link set "ab$$a" mtu "$MTU"
    ip netns exec "$client_ns" ip link set "ab$$b" mtu "$MTU"
fi

threads=${WRK_THREADS:-$(( connections < 2 ? connections : 2 ))}
ticks=$(getconf CLK_TCK)
boot() { # tender [options] -> sets pid, waits for the site
    local tender=${1%%:*} options=
    [[ $1 == *:* ]] && options=${1#*:}
    # shellcheck disable=SC2086 # options are words
    ip netns exec "$tap_ns" "$tender" $options --stats --net:service=tap0 "$kernel" -- \
        --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1 >"$work/guest.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$work/guest.log" && return; sleep 0.05; done
    echo "bench/http-ab.sh: $1 did not start: $(tail -n 3 "$work/guest.log")" >&2
    exit 1
}
thread_ticks() { # pid -> "tid name ticks" lines, its children's threads too (atoll-spt's unikernel)
    for task in /proc/"$1"/task/* $(for child in $(pgrep -P "$1"); do echo /proc/"$child"/task/*; done); do
        printf '%s %s %s\n' "${task##*/}" "$(cat "$task/comm")" "$(awk '{print $14 + $15}' "$task/stat")"
    done
}
load() { # namespace url -> "requests/s wrk-cores"
    ip netns exec "$1" /usr/bin/time -f "%U %S" -o "$work/wrk.time" \
        wrk -t"$threads" -c"$connections" -d"${seconds}s" "$2" >"$work/wrk.out"
    printf '%s %s\n' "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")" \
        "$(awk -v s="$seconds" '{printf "%.2f", ($1 + $2) / s}' "$work/wrk.time")"
}

# The page the unikernel serves, for nginx to serve the same bytes.
boot "$1"
ip netns exec "$tap_ns" curl -sf -o "$work/index.html" http://10.77.0.2/
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
mkdir -p "$work/www" && mv "$work/index.html" "$work/www/"
cat >"$work/nginx.conf" <<CONF
daemon off; user root; worker_processes 1; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; types { text/html html; }
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server { listen 10.88.0.1:80; root $work/www; } }
CONF
ip netns exec "$server_ns" nginx -e "$work/error.log" -c "$work/nginx.conf" &
nginx_pid=$!
for _ in $(seq 100); do ip netns exec "$client_ns" curl -sf -o /dev/null http://10.88.0.1/ && break; sleep 0.05; done

echo "| round | server | connections | requests/s | server threads (cores) | wrk (cores) | VM exits |"
echo "| ---: | --- | ---: | ---: | --- | ---: | ---: |"
for round in $(seq "$rounds"); do
    worker=$(pgrep -P "$nginx_pid" | head -n 1)
    before=$(awk '{print $14 + $15}' "/proc/$worker/stat")
    read -r rate wrk_cores < <(load "$client_ns" http://10.88.0.1/)
    after=$(awk '{print $14 + $15}' "/proc/$worker/stat")
    cores=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v s="$seconds" 'BEGIN {printf "%.2f", (a - b) / t / s}')
    echo "| $round | nginx (1 worker) | $connections | $rate | worker $cores | $wrk_cores | — |"
    for server in "$@"; do
        boot "$server"
        thread_ticks "$pid" >"$work/before"
        read -r rate wrk_cores < <(load "$tap_ns" http://10.77.0.2/)
        thread_ticks "$pid" >"$work/after"
        threads_cpu=$(join "$work/before" "$work/after" |
            awk -v t="$ticks" -v s="$seconds" '{printf "%s%s %.2f", sep, $2, ($5 - $3) / t / s; sep = ", "}')
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
        # A unix executable (under atoll-spt) has no VM exits.
        exits=$( (grep -o 'exits=[0-9]*' "$work/guest.log" || echo =—) | head -n 1 | cut -d= -f2)
        echo "| $round | $server | $connections | $rate | $threads_cpu | $wrk_cores | $exits |"
    done
done
