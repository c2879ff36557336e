#!/bin/sh
# A local certificate authority and a server certificate signed by it, for the stack's TLS
# (InfluxDB and Grafana on the central machine; README, "A lab of machines").
#
#   scripts/make-certs.sh [DIR [NAME...]]      (default DIR: certs/ beside this repo)
#
# Writes, in DIR:
#   ca.pem      the CA certificate: copy it to every joining machine (make join CA=...), where
#               the exporter verifies the server against it (?ca= / TUBAI_INFLUXDB_CA)
#   ca.key      the CA's private key (mode 0600); never mounted into a container
#   server.pem  the server certificate, for every NAME as a subjectAltName (DNS name or IP)
#   server.key  its private key, mode 0644: the InfluxDB (uid 1000) and Grafana (uid 472)
#               containers read it through a read-only mount; keep DIR itself private (0711)
#
# NAMEs: those given, else TUBAI_TLS_NAMES (comma-separated, from .env), always with localhost,
# 127.0.0.1, influxdb (the stack's own services reach it by that name) and this machine's
# hostname. Never overwrites: where DIR/server.pem exists it says so and leaves DIR alone
# (delete DIR to have new ones made; joining machines then need the new ca.pem).
# Certificates a real CA issued need none of this: put them in .env (TUBAI_TLS_CERT, ...).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/certs}
[ $# -gt 0 ] && shift
days=${TUBAI_TLS_DAYS:-825}  # what browsers still accept for a server certificate

if [ -e "$dir/server.pem" ]; then
    echo "$dir/server.pem exists: left as it is (delete $dir to have new certificates made)"
    exit 0
fi
command -v openssl >/dev/null 2>&1 || { echo "openssl not found: install it" >&2; exit 1; }

names=${*:-$(echo "${TUBAI_TLS_NAMES:-}" | tr ',' ' ')}
names="$names localhost 127.0.0.1 influxdb $(hostname 2>/dev/null || true)"
san=""
seen=" "
for name in $names; do
    case "$seen" in *" $name "*) continue ;; esac
    seen="$seen$name "
    case $name in
        *[!0-9.]*) case $name in *:*) kind=IP ;; *) kind=DNS ;; esac ;;
        *) kind=IP ;;
    esac
    san="${san:+$san,}$kind:$name"
done

mkdir -p "$dir"
chmod 0711 "$dir"
umask 077
tmp=$(mktemp -d "$dir/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
subject="/O=tubai lab/CN=tubai local CA $(date -u +%Y%m%dT%H%M%SZ)"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days "$days" -subj "$subject" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/O=tubai lab/CN=tubai server" \
    2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$san" >"$tmp/server.ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -out "$tmp/server.pem" -days "$days" -extfile "$tmp/server.ext" 2>/dev/null
chmod 0644 "$tmp/ca.pem" "$tmp/server.pem" "$tmp/server.key"
chmod 0600 "$tmp/ca.key"
for file in ca.key ca.pem server.key server.pem; do  # server.pem last: it marks DIR complete
    mv "$tmp/$file" "$dir/$file"
done
echo "wrote $dir: a local CA (ca.pem, ca.key) and a server certificate for $san"
