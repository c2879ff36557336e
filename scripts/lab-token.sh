#!/bin/sh
# Credentials for the machines that join a lab, minted on the central machine (README, "A lab of
# machines"). The stack's InfluxDB 2 makes them; the admin token never leaves its container.
#
#   scripts/lab-token.sh token HOST [bench]   mint a token that may only write the bucket (with
#                                            `bench`: read it too, for benchmarks on HOST),
#                                            and print the `make join` line to run on HOST
#   scripts/lab-token.sh revoke HOST          delete every token minted for HOST: the server
#                                            refuses it at once; HOST's points wait in its spool
#
# Run by `make token HOST=...` and `make revoke HOST=...` beside .env. INFLUX is the influx CLI
# in the InfluxDB container (default: `docker compose exec -T influxdb influx`); over TLS
# (docker-compose.tls.yml in .env's COMPOSE_FILE) it talks to https://127.0.0.1:8086 inside
# the container, where --skip-verify crosses no network.
set -eu

usage() { echo "usage: $0 token HOST [bench] | revoke HOST" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 host=$2 role=${3:-exporter}
case $host in
    "" | -* | *[!A-Za-z0-9._-]*)
        echo "HOST=$host is not a host name: give the joining machine's name (letters, digits," \
            ". _ -), as its exporter tags its points (make token HOST=lab-2)" >&2
        exit 2 ;;
esac
case $role in exporter | bench) ;; *) usage ;; esac

env_file=${ENV_FILE:-.env}
[ -r "$env_file" ] || { echo "$env_file not found: run make token on the central machine," \
    "beside the .env that make up wrote" >&2; exit 2; }
dotenv() { sed -n "s/^$1=//p" "$env_file" | tail -n 1; }
org=$(dotenv TUBAI_INFLUXDB_ORG)
bucket=$(dotenv TUBAI_INFLUXDB_BUCKET)
port=$(dotenv INFLUXDB_PORT)
org=${org:-tubai} bucket=${bucket:-tubai} port=${port:-8086}
influx=${INFLUX:-docker compose exec -T influxdb influx}
flags=""
case $(dotenv COMPOSE_FILE) in
    *docker-compose.tls.yml*) flags="--host https://127.0.0.1:8086 --skip-verify" ;;
esac
description="tubai join: $host"

# shellcheck disable=SC2086  # $influx and $flags are words on purpose
case $action in
token)
    bucket_id=$($influx bucket list $flags --org "$org" --name "$bucket" --hide-headers | cut -f 1)
    [ -n "$bucket_id" ] || { echo "no bucket $bucket in org $org: is the stack up (make up)?" >&2
        exit 1; }
    rights="--write-bucket $bucket_id"
    [ "$role" = bench ] && rights="$rights --read-bucket $bucket_id"
    # columns: ID, Description, Token, User Name, User ID, Permissions
    token=$($influx auth create $flags --org "$org" $rights --description "$description" \
        --hide-headers | cut -f 3)
    [ -n "$token" ] || { echo "influx auth create gave no token" >&2; exit 1; }
    names=$(dotenv TUBAI_TLS_NAMES)
    central=${names%%,*}
    central=${central:-$(hostname)}
    echo "minted a token for $host ($role: ${rights#--}); on $host, from its tubai checkout:"
    echo "  make join CENTRAL=https://$central:$port TOKEN=$token CA=ca.pem HOST=$host"
    ca_file=$(dotenv TUBAI_TLS_CA)
    echo "with ca.pem a copy of this machine's ${ca_file:-certs/ca.pem};" \
        "make revoke HOST=$host withdraws it"
    ;;
revoke)
    ids=$($influx auth list $flags --org "$org" --hide-headers \
        | awk -F '\t' -v d="$description" '$2 == d { print $1 }')
    [ -n "$ids" ] || { echo "no token minted for $host (make token HOST=$host mints one)" >&2
        exit 1; }
    for id in $ids; do
        $influx auth delete $flags --id "$id" >/dev/null
    done
    echo "revoked $(echo "$ids" | wc -w) token(s) of $host: its exporter now keeps its points" \
        "in its spool until it joins again with a new one"
    ;;
*) usage ;;
esac
