#!/usr/bin/env bash
# THE test command: formatting, lints, unit tests, and integration tests that
# boot real unikernels under atoll-hvt. On a fresh Debian machine (root, with
# rustup) it installs what it needs first: the pinned toolchain and its
# x86_64-unknown-none target, and a C toolchain for linking host binaries.
#
# Usage: scripts/test.sh        (from anywhere; needs /dev/kvm)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}
trap 'fail "failed at line $LINENO: $BASH_COMMAND"' ERR

# Guest workspaces, checked for the guest target. Their tests are the
# integration tests in tests/, which build and boot them.
GUEST_WORKSPACES=(examples tests/guests)
GUEST_TARGET=x86_64-unknown-none

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
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    command -v apt-get >/dev/null || fail "need ${missing[*]} and there is no apt-get to install them"
    export DEBIAN_FRONTEND=noninteractive
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

for ws in "${GUEST_WORKSPACES[@]}"; do
    step "clippy ($ws, $GUEST_TARGET)"
    [ -f "$ws/Cargo.toml" ] || fail "$ws/Cargo.toml is missing"
    cargo fmt --manifest-path "$ws/Cargo.toml" --all -- --check
    cargo clippy --manifest-path "$ws/Cargo.toml" --workspace --target "$GUEST_TARGET" -- -D warnings
done

step "cargo test (unit tests, then unikernels booted under atoll-hvt)"
cargo test --workspace

step "all checks passed"
