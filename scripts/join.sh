#!/bin/sh
# Join this machine to a lab: write .env.join for its exporter, which samples this host into the
# central machine's InfluxDB over TLS (README, "A lab of machines").
#
#   scripts/join.sh CENTRAL TOKEN CA [HOST [OUT]]
#
# CENTRAL: https://host[:port] of the central machine; TOKEN: what `make token HOST=...` printed
# there; CA: the central machine's certs/ca.pem, copied here; HOST: this machine's name in the
# store (default: its hostname); OUT: default .env.join. OUT (mode 0600) holds TUBAI_STORE,
# TUBAI_HOST, TUBAI_INFLUXDB_TOKEN and TUBAI_INFLUXDB_CA: what docker-compose.join.yml and
# `python -m exporters run` both read. Bad input is one line and exit status 2.
set -eu

fail() { echo "make join: $*" >&2; exit 2; }
[ $# -ge 3 ] || fail "give CENTRAL=https://host:8086 TOKEN=... CA=ca.pem (make token on the" \
    "central machine prints the line)"
central=$1 token=$2 ca=$3 host=${4:-$(hostname)} out=${5:-.env.join}
bucket=${TUBAI_INFLUXDB_BUCKET:-tubai}

case $central in
    https://*) ;;
    *) fail "CENTRAL=$central is not https://host[:port]: the central store is reached over TLS" ;;
esac
authority=${central#https://}
authority=${authority%/}
case $authority in
    "" | */* | *[!A-Za-z0-9.:\[\]-]*) fail "CENTRAL=$central is not https://host[:port]" ;;
esac
case $token in
    "" | *[!A-Za-z0-9_=-]*) fail "TOKEN is empty or not a token: copy it as make token printed it" ;;
esac
case $host in
    "" | -* | *[!A-Za-z0-9._-]*) fail "HOST=$host is not a host name (letters, digits, . _ -)" ;;
esac
[ -r "$ca" ] || fail "CA=$ca cannot be read: copy the central machine's certs/ca.pem here"
if command -v openssl >/dev/null 2>&1; then
    openssl x509 -noout -in "$ca" 2>/dev/null \
        || fail "CA=$ca is not a PEM certificate: copy the central machine's certs/ca.pem"
fi
ca=$(cd "$(dirname "$ca")" && pwd)/$(basename "$ca")

umask 077
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
    echo "# Written by make join: this machine's exporter writes into the central store."
    echo "TUBAI_HOST=$host"
    echo "TUBAI_STORE=influxdb+https://$authority/$bucket"
    echo "TUBAI_INFLUXDB_CA=$ca"
    echo "TUBAI_INFLUXDB_TOKEN=$token"
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out: $host writes into influxdb+https://$authority/$bucket, verified against $ca"
