#!/usr/bin/env bash
# THE test command: formatting, lints, unit tests, and integration tests that
# boot real unikernels under atoll-hvt, as unix processes and on QEMU,
# Firecracker and Cloud Hypervisor. On a fresh Debian machine (root, with
# rustup) it installs what it needs first: the pinned toolchain and its
# x86_64-unknown-none target, a C toolchain for linking host binaries, and
# the network tools the networking tests and the HTTP benchmark run inside
# their own network namespaces (ip, curl, ping, nc, dnsmasq, wrk, nginx,
# hping3 for the SYN-flood and fragment tests, prlimit for the memory ones),
# QEMU, which the virtio platform's tests boot the kernel on
# (Firecracker and Cloud Hypervisor are used from ../shared/vmm when there),
# and skopeo, umoci and containerd, which read the images `atoll pkg`
# writes (tests/tests/pkg.rs starts a containerd of its own).
# Packages that would start a system service are installed with services
# held off, so nothing ends up listening on the host.
#
# Usage: scripts/test.sh        (from anywhere; needs /dev/kvm)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }
fail() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}
trap 'fail "failed at line $LINENO: $BASH_COMMAND"' ERR

# Guest workspaces, checked for both platforms' targets. Their tests are the
# integration tests in tests/, which build and boot them on both.
GUEST_WORKSPACES=(examples tests/guests)
GUEST_TARGET=x86_64-unknown-none
# The cfgs `atoll build` passes for the guest target (crates/cli/src/build.rs):
# the RustCrypto crates under atoll::tls keep to portable code there.
GUEST_CONFIG='target.x86_64-unknown-none.rustflags=["--cfg","aes_force_soft","--cfg","polyval_force_soft","--cfg","poly1305_force_soft","--cfg","chacha20_force_soft","--cfg","curve25519_dalek_backend=\"serial\""]'
# The unix platform's target and flags, as `atoll build --target unix` gives
# them (crates/cli/src/build.rs).
UNIX_TARGET=x86_64-unknown-linux-gnu
UNIX_CONFIG='target.x86_64-unknown-linux-gnu.rustflags=["--cfg","atoll_platform=\"unix\"","-C","force-frame-pointers=yes","-C","target-feature=+crt-static"]'
# One target directory for both guest workspaces, as the integration tests
# build every app into it (tests/lib.rs, apps_target_dir): the workspaces
# pin the same dependencies, which are then compiled once, not once each.
APPS_TARGET_DIR=target/apps

if [ -d "$HOME/.cargo/bin" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

step "toolchain (rust-toolchain.toml)"
command -v rustup >/dev/null || fail "rustup not found; install Rust with rustup first"
# With no argument, installs the toolchain rust-toolchain.toml names, with
# its components and the guest target (a no-op when they are there).
rustup toolchain install
rustup target list --installed | grep -qx "$GUEST_TARGET" ||
    fail "the $GUEST_TARGET target is missing after rustup toolchain install"
cargo --version

step "system packages"
missing=()
need() { # need COMMAND PACKAGE...: install the packages if COMMAND is missing
    command -v "$1" >/dev/null || missing+=("${@:2}")
}
need cc gcc libc6-dev
need git git
need ip iproute2
need curl curl
need ping iputils-ping
need nc netcat-openbsd
# Test certificates and a TLS client (tests/tls.rs).
need openssl openssl
# dnsmasq-base is the binary alone: no system service grabbing ports 53/67.
need dnsmasq dnsmasq-base
need wrk wrk
# Crafted SYNs from a forged address, and fragmented segments (tests/tests/floods.rs).
need hping3 hping3
need nginx nginx-light
# The unix platform's promise that a unikernel debugs like any process.
need valgrind valgrind
need gdb gdb
need unshare util-linux
# `atoll run --target virtio` boots kernels on QEMU's microvm and q35
# machines (tests/tests/virtio.rs); without recommends it leaves out the GUI
# and the extra block drivers.
need qemu-system-x86_64 qemu-system-x86
# The OCI images of `atoll pkg`: inspected and copied by skopeo, unpacked by
# umoci, imported by a private containerd with ctr (tests/tests/pkg.rs); the
# containerd package's own service is held off like nginx's.
need skopeo skopeo
need umoci umoci
need containerd containerd
need ctr containerd
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    command -v apt-get >/dev/null || fail "need ${missing[*]} and there is no apt-get to install them"
    export DEBIAN_FRONTEND=noninteractive
    # nginx's package starts a server on port 80 unless services are held
    # off; the tests run their own nginx inside a namespace.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all present"
fi
[ -e /dev/kvm ] || fail "/dev/kvm is missing: the integration tests boot unikernels and need KVM"

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (host workspace)"
cargo clippy --workspace --all-targets -- -D warnings

# Broken intra-doc links and the like: the API docs are part of the product.
step "cargo doc (host workspace)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

for ws in "${GUEST_WORKSPACES[@]}"; do
    step "clippy ($ws, $GUEST_TARGET)"
    [ -f "$ws/Cargo.toml" ] || fail "$ws/Cargo.toml is missing"
    cargo fmt --manifest-path "$ws/Cargo.toml" --all -- --check
    cargo clippy --manifest-path "$ws/Cargo.toml" --workspace --target-dir "$APPS_TARGET_DIR" \
        --target "$GUEST_TARGET" --config "$GUEST_CONFIG" -- -D warnings
    step "clippy ($ws, unix platform, $UNIX_TARGET)"
    cargo clippy --manifest-path "$ws/Cargo.toml" --workspace --target-dir "$APPS_TARGET_DIR" \
        --target "$UNIX_TARGET" --config "$UNIX_CONFIG" -- -D warnings
    step "cargo doc ($ws, $GUEST_TARGET)"
    RUSTDOCFLAGS="-D warnings" cargo doc --manifest-path "$ws/Cargo.toml" --workspace --no-deps \
        --target-dir "$APPS_TARGET_DIR" --target "$GUEST_TARGET" --config "$GUEST_CONFIG"
done

# The guest crates themselves, as the guests compile them: clippy lints only
# a workspace's members, so neither pass above reaches their bare-metal and
# unix-platform code (`atoll-rt`'s hvt and virtio platforms, say). The
# apps' target directory already holds their dependencies.
step "clippy (the guest crates, $GUEST_TARGET and unix platform)"
GUEST_CRATES=(-p atoll-abi -p atoll-rt -p atoll-net -p atoll-http -p atoll-kv -p atoll-tls -p atoll)
cargo clippy "${GUEST_CRATES[@]}" --target-dir "$APPS_TARGET_DIR" --target "$GUEST_TARGET" --config "$GUEST_CONFIG" \
    -- -D warnings
cargo clippy "${GUEST_CRATES[@]}" --target-dir "$APPS_TARGET_DIR" --target "$UNIX_TARGET" --config "$UNIX_CONFIG" \
    -- -D warnings

step "cargo test: unit tests of every crate"
cargo test --workspace --exclude atoll-tests
cargo test -p atoll-tests --lib

# The integration tests (tests/tests/*.rs: unikernels booted under atoll-hvt,
# as unix processes, and on QEMU, Firecracker and Cloud Hypervisor) in two
# halves at once: many of them mostly wait (for boots, timeouts, peers), so
# two cores do both in less time than one after the other. Every test that
# runs `atoll run` is in the first half: a run removes the namespaces of runs
# that were killed, and one test kills a run to see that it does.
RUN_USERS=(cli debug_tools gdb network optional_devices virtio)
# Light, mostly waiting suites join them, to even out the halves (in a CI
# run on two cores the first half took 707 s with tls and dns, the second
# 611 s without them; they took 18 and 24 s).
FIRST_HALF=("${RUN_USERS[@]}" floods urunc kv)
first=() second=()
for file in tests/tests/*.rs; do
    suite=$(basename "$file" .rs)
    if [[ " ${FIRST_HALF[*]} " == *" $suite "* ]]; then
        first+=(--test "$suite")
    else
        second+=(--test "$suite")
    fi
done
step "cargo test: integration tests, built once"
cargo test -p atoll-tests --no-run "${first[@]}" "${second[@]}"
step "cargo test: integration tests, two halves at once (each half's output follows when both are done)"
logs=$(mktemp -d)
first_status=0 second_status=0
# `|| status=$?`: a failing half must not end the script (errexit, the ERR
# trap) before both halves are done and their output is shown.
cargo test -p atoll-tests "${first[@]}" >"$logs/first" 2>&1 &
first_pid=$!
cargo test -p atoll-tests "${second[@]}" >"$logs/second" 2>&1 || second_status=$?
wait "$first_pid" || first_status=$?
echo "--- first half (${FIRST_HALF[*]}): status $first_status"
cat "$logs/first"
echo "--- second half: status $second_status"
cat "$logs/second"
rm -rf "$logs"
[ "$first_status" -eq 0 ] || fail "integration tests, first half: failed (its output is above)"
[ "$second_status" -eq 0 ] || fail "integration tests, second half: failed (its output is above)"

step "all checks passed"
