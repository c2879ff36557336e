#!/bin/bash
# One least-privilege InfluxDB credential per role, so that no tubai service, Grafana or
# host-side command holds the admin token (README, "A lab machine"):
#
#   role      permissions on the bucket   used by
#   exporter  write                       the exporter (exporter / exporter-gpu)
#   bench     read, write                 host-side `make bench` (writes run events, then reads
#                                         the exporter's samples to measure its windows)
#   scoring   read, write                 the scoring service, and host-side `make score`,
#                                         `make report` and `make energy`
#   grafana   read                        Grafana's datasource
#
# They are InfluxDB 1.x-compatible authorizations (`influx v1 auth create`), scoped to the one
# bucket, because their passwords can be chosen: scripts/make-env.sh writes a fresh one per
# role into .env before the first start, and docker-compose.yml hands each service only its
# own. (An API token's value cannot be chosen in InfluxDB 2.7: `influx auth create` always
# generates it.) tubai and Grafana send them as HTTP basic auth to the v1 API (/write, /query),
# the API they use.
#
# The official influxdb:2.x image runs this once, after its first-start setup and after
# 10-v1-dbrp.sh, with the CLI configured (host, org, admin token) and
# DOCKER_INFLUXDB_INIT_BUCKET_ID exported. On a database set up before this script existed,
# run it by hand once (it looks the bucket up, and leaves a username that exists as it is):
#   docker compose exec influxdb /docker-entrypoint-initdb.d/20-tubai-credentials.sh
# Keep the mode 0755: the image runs only executable files ending in "sh".
set -euo pipefail

fail() {
    echo "tubai: $*" >&2
    exit 1
}

for var in DOCKER_INFLUXDB_INIT_ORG DOCKER_INFLUXDB_INIT_BUCKET; do
    [ -n "${!var:-}" ] || fail "$var is not set: run by the influxdb service of docker-compose.yml"
done
org=$DOCKER_INFLUXDB_INIT_ORG
bucket=$DOCKER_INFLUXDB_INIT_BUCKET

# Every credential is checked before any is created: all four, or none.
roles=(EXPORTER BENCH SCORING GRAFANA)
for role in "${roles[@]}"; do
    for part in USER PASSWORD; do
        var=TUBAI_INFLUXDB_${role}_${part}
        [ -n "${!var:-}" ] || fail "$var is not set: make up writes it into .env"
    done
done

bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then  # run by hand: ask the server
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f 1)
    [ -n "$bucket_id" ] || fail "no bucket $bucket in org $org"
fi

# grant ROLE PERMISSION...: a v1 authorization for the role's username and password with
# exactly PERMISSION (read, write) on the bucket and nothing else.
grant() {
    local role=$1 user_var=TUBAI_INFLUXDB_${1}_USER password_var=TUBAI_INFLUXDB_${1}_PASSWORD
    shift
    local user=${!user_var} args=() permission
    for permission in "$@"; do
        args+=("--${permission}-bucket" "$bucket_id")
    done
    if [ -n "$(influx v1 auth list --org "$org" --username "$user" --hide-headers || true)" ]; then
        echo "tubai: InfluxDB v1 user $user exists: left as it is"
        return
    fi
    # The password travels on the command line of the CLI, inside this container, for the
    # moment of the call; it is never printed.
    influx v1 auth create --org "$org" --username "$user" --password "${!password_var}" \
        --description "tubai ${role,,}: $* on bucket $bucket" "${args[@]}" >/dev/null
    echo "tubai: InfluxDB v1 user $user (${role,,}): $* on bucket $bucket"
}

grant EXPORTER write
grant BENCH read write
grant SCORING read write
grant GRAFANA read
