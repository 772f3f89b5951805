#!/usr/bin/env bash
# The demo: build the flagship unikernel (examples/slides, the talk as a
# website) and serve it on http://127.0.0.1:8080/ and, over TLS, on
# https://127.0.0.1:8443/ until Ctrl-C.
#
# On a fresh Debian machine (as root, with /dev/kvm) it first installs what
# is missing: the Rust toolchain rust-toolchain.toml pins (with rustup),
# iproute2 (`atoll run` puts the unikernel in a network namespace of its
# own, behind a TAP device, and publishes its ports on the loopback) and
# openssl. The certificate is the demo's own (scripts/demo-tls.sh): a
# private CA made once and kept in target/demo-tls/ with a certificate it
# signs for localhost, 127.0.0.1 and ::1, packed (cert.pem, key.pem) as the
# tar image the app reads from its `tls` block device. A client trusts that
# CA, not the system's ones: `curl --cacert target/demo-tls/ca.pem
# https://127.0.0.1:8443/` (or `https://[::1]:8443/`).
#
# Usage: scripts/demo.sh [ATOLL RUN OPTIONS...]   e.g. --publish 9000:80
# (any --publish replaces both defaults, 8080:80 and 8443:443).
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
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || fail "need ${missing[*]} and there is no apt-get to install them"
    echo "scripts/demo.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The demo's CA and certificate, made once (and again when they expire
# within a day, or the certificate leaves out a name it is served on).
tls=$PWD/target/demo-tls
scripts/demo-tls.sh "$tls"

# Any --publish of the user's replaces ours, and a --block-ro:tls= ours.
# Options end at `--` (boot arguments follow).
publish=(--publish 8080:80 --publish 8443:443)
block=("--block-ro:tls=$tls/tls.tar")
ports=()
previous=
for arg in "$@"; do
    [ "$arg" = -- ] && break
    case $arg in
    --publish=*) ports+=("${arg#--publish=}") ;;
    --block-ro:tls=*) block=() ;;
    esac
    [ "$previous" = --publish ] && ports+=("$arg")
    previous=$arg
done
if [ ${#ports[@]} -gt 0 ]; then
    publish=()
else
    ports=(8080:80 8443:443)
fi

cargo build --release -p atoll-cli >&2

# Where to look, said before the app is built and booted (atoll says
# `serving on` once each port answers).
trust=()
for port in "${ports[@]}"; do
    case $port in
    *:443)
        echo "scripts/demo.sh: HTTPS: https://127.0.0.1:${port%%:*}/" >&2
        trust+=("curl --cacert $tls/ca.pem https://127.0.0.1:${port%%:*}/")
        ;;
    *:*) echo "scripts/demo.sh: HTTP:  http://127.0.0.1:${port%%:*}/" >&2 ;;
    esac
done
if [ ${#block[@]} -gt 0 ] && [ ${#trust[@]} -gt 0 ]; then
    echo "scripts/demo.sh: the certificate is the demo CA's, $tls/ca.pem; trust it with" >&2
    printf 'scripts/demo.sh:   %s\n' "${trust[@]}" >&2
fi
# Plain HTTP redirects to HTTPS: tell the guest which host port its 443 is
# published on, so that the redirect names it (a boot argument, after `--`).
boot=()
for port in "${ports[@]}"; do
    case $port in *:443) boot=("--redirect-port=${port%%:*}") ;; esac
done
for arg in "$@"; do
    [ "$arg" = -- ] && dashes=1
done
[ ${#boot[@]} -gt 0 ] && [ -z "${dashes:-}" ] && boot=(-- "${boot[@]}")
# The app first: boot arguments after a `--` of the user's come last.
exec target/release/atoll run --release "${publish[@]}" "${block[@]}" examples/slides "$@" "${boot[@]}"
