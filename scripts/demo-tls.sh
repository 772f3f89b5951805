#!/usr/bin/env bash
# The demo's TLS files, which scripts/demo.sh makes with this script (and
# which it can make alone, needing only openssl): in DIR, a private CA
# (ca.pem, ca-key.pem) and a server certificate it signs (cert.pem,
# key.pem) for every name `atoll run` publishes the demo on: localhost,
# 127.0.0.1 and ::1. The certificate and key are packed as DIR/tls.tar, the
# image the app reads from its `tls` block device.
#
# Files already there are kept while they serve: the CA until it expires
# within a day (a client that trusts ca.pem goes on trusting the demo), the
# server certificate until it expires within a day, is not the CA's, or
# leaves out one of the names (one made before ::1 was published).
#
# Usage: scripts/demo-tls.sh DIR
set -euo pipefail

fail() {
    echo "scripts/demo-tls.sh: $*" >&2
    exit 1
}

[ $# = 1 ] || fail "usage: scripts/demo-tls.sh DIR (where to keep the demo's CA and certificate)"
command -v openssl >/dev/null || fail "needs openssl (apt-get install openssl)"
tls=$1

# The names the server certificate is for.
dns_names=(localhost)
ip_addresses=(127.0.0.1 ::1)
san=$(printf 'DNS:%s, ' "${dns_names[@]}")$(printf 'IP:%s, ' "${ip_addresses[@]}")
san=${san%, }
names="${dns_names[*]} ${ip_addresses[*]}"

# Whether certificate $1 is there and does not expire within a day.
lasts() {
    openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1
}

# Whether cert.pem is for every name. openssl's -checkhost and -checkip say
# so in words (its status is 0 either way), and take one name each.
covers_names() {
    local name
    for name in "${dns_names[@]}"; do
        openssl x509 -noout -checkhost "$name" -in "$tls/cert.pem" 2>/dev/null | grep -q ' does match ' || return 1
    done
    for name in "${ip_addresses[@]}"; do
        openssl x509 -noout -checkip "$name" -in "$tls/cert.pem" 2>/dev/null | grep -q ' does match ' || return 1
    done
}

mkdir -p "$tls"

if ! [ -s "$tls/ca-key.pem" ] || ! lasts "$tls/ca.pem"; then
    echo "scripts/demo-tls.sh: making a demo CA in $tls" >&2
    # A new CA: the old certificate is not its, and is made again below.
    rm -f "$tls/tls.tar"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/ca-key.pem"
    openssl req -x509 -new -key "$tls/ca-key.pem" -subj "/CN=Atoll demo CA" -days 3650 -sha256 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$tls/ca.pem"
fi

if [ -s "$tls/tls.tar" ] && lasts "$tls/cert.pem" && covers_names &&
    openssl verify -CAfile "$tls/ca.pem" "$tls/cert.pem" >/dev/null 2>&1; then
    exit 0
fi

# The server certificate is valid 825 days, the most macOS and iOS accept
# even from a private CA.
echo "scripts/demo-tls.sh: making a certificate for ${names// /, } in $tls" >&2
rm -f "$tls/tls.tar"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/key.pem"
openssl req -new -key "$tls/key.pem" -subj "/CN=${dns_names[0]}" -out "$tls/cert.csr"
# The extensions from a file of our own: nothing comes from the system's
# openssl.cnf (whose defaults would make it a CA).
printf '%s\n' '[v3]' \
    'basicConstraints = critical, CA:FALSE' \
    'keyUsage = critical, digitalSignature' \
    'extendedKeyUsage = serverAuth' \
    "subjectAltName = $san" \
    'subjectKeyIdentifier = hash' \
    'authorityKeyIdentifier = keyid' >"$tls/cert.ext"
# Quiet unless it fails: it reports the request's signature on success.
signed=$(openssl x509 -req -in "$tls/cert.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -days 825 \
    -sha256 -extfile "$tls/cert.ext" -extensions v3 -out "$tls/cert.pem" 2>&1) || fail "openssl x509: $signed"
rm -f "$tls/cert.csr" "$tls/cert.ext"
covers_names || fail "the new certificate $tls/cert.pem is not for all of $names (openssl x509 -noout -text -in it shows what it is for)"
# Plain ustar, which tar pads to whole 10240-byte records: whole 512-byte
# sectors for the block device.
tar --format=ustar -cf "$tls/tls.tar" -C "$tls" cert.pem key.pem
