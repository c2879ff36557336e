#!/bin/bash
# Map the v1 database name to the bucket, so that tubai's v1 client (`/write?db=BUCKET`,
# `/query?db=BUCKET`: see exporters/stores/influxdb.py) finds it with its retention policy
# `autogen`. An explicit mapping does not depend on any implicit bucket lookup of the server
# version, and `influx v1 dbrp list` shows it.
#
# The official influxdb:2.x image runs this once, right after its first-start setup
# (DOCKER_INFLUXDB_INIT_MODE=setup), against a temporary server, with the CLI already
# configured (host, org, admin token) and DOCKER_INFLUXDB_INIT_BUCKET_ID exported. It runs
# only files that are executable and end in "sh": keep this file's mode 0755.
set -euo pipefail

for var in DOCKER_INFLUXDB_INIT_ORG DOCKER_INFLUXDB_INIT_BUCKET DOCKER_INFLUXDB_INIT_BUCKET_ID; do
    if [ -z "${!var:-}" ]; then
        echo "tubai: $var is not set: run by the influxdb image's first-start setup" >&2
        exit 1
    fi
done

influx v1 dbrp create \
    --org "${DOCKER_INFLUXDB_INIT_ORG}" \
    --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
    --rp autogen \
    --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
    --default
echo "tubai: v1 database ${DOCKER_INFLUXDB_INIT_BUCKET} (rp autogen) maps to its bucket"
