#!/usr/bin/env bash
# The demo: build the flagship unikernel (examples/slides, the talk as a
# website) and serve it on http://127.0.0.1:8080/ until Ctrl-C.
#
# On a fresh Debian machine (as root, with /dev/kvm) it first installs what
# is missing: the Rust toolchain rust-toolchain.toml pins (with rustup) and
# iproute2 (`atoll run` puts the unikernel in a network namespace of its
# own, behind a TAP device, and publishes its port on the loopback).
#
# Usage: scripts/demo.sh [ATOLL RUN OPTIONS...]   e.g. --publish 9000:80
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    echo "scripts/demo.sh: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root: the demo creates a network namespace and a TAP device"
[ -e /dev/kvm ] || fail "/dev/kvm is missing: the unikernel runs under KVM"

if [ -d "$HOME/.cargo/bin" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v rustup >/dev/null; then
    command -v curl >/dev/null || fail "need rustup (https://rustup.rs), and curl to install it"
    echo "scripts/demo.sh: installing rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain none
    PATH="$HOME/.cargo/bin:$PATH"
fi
# With no argument, installs what rust-toolchain.toml names (a no-op when
# it is there).
rustup toolchain install >&2

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || fail "need ${missing[*]} and there is no apt-get to install them"
    echo "scripts/demo.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

cargo build --release -p atoll-cli >&2
exec target/release/atoll run --release "$@" examples/slides
