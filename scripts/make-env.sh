#!/bin/sh
# Write the lab-machine stack's .env from .env.example, with fresh random secrets.
#
#   scripts/make-env.sh [OUT [EXAMPLE]]      (defaults: .env and .env.example beside this repo)
#
# Never overwrites: where OUT exists it says so and leaves it alone. The secrets go straight into
# OUT (mode 0600) and are never printed. COMPOSE_PROFILES becomes gpu where this machine has an
# NVIDIA GPU (nvidia-smi) and the NVIDIA Container Toolkit, cpu otherwise; a COMPOSE_PROFILES
# already in the environment is kept as it is.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.env}
example=${2:-$root/.env.example}

if [ -e "$out" ]; then
    echo "$out exists: left as it is (delete it to have a new one written)"
    exit 0
fi
[ -r "$example" ] || { echo "cannot read $example" >&2; exit 1; }

secret() {  # N random bytes as hex
    openssl rand -hex "$1" 2>/dev/null || od -An -vtx1 -N"$1" /dev/urandom | tr -d ' \n'
}

if [ -n "${COMPOSE_PROFILES:-}" ]; then
    profile=$COMPOSE_PROFILES why="from the environment"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    if command -v nvidia-ctk >/dev/null 2>&1 || command -v nvidia-container-cli >/dev/null 2>&1
    then
        profile=gpu why="nvidia-smi sees a GPU and the NVIDIA Container Toolkit is installed"
    else
        profile=cpu why="nvidia-smi sees a GPU, but the NVIDIA Container Toolkit is missing"
    fi
else
    profile=cpu why="nvidia-smi finds no NVIDIA GPU"
fi

# Every key whose example value starts with "replace-me" gets its own fresh secret: 32 random
# bytes for a token (*_TOKEN), 24 for a password. Values travel in the environment (export is
# a shell builtin), never on a command line that `ps` would show.
umask 077
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
keys=$(sed -n 's/^\([A-Z_][A-Z0-9_]*\)=replace-me.*/\1/p' "$example")
for key in $keys; do
    case $key in
        *_TOKEN) bytes=32 ;;
        *) bytes=24 ;;
    esac
    value=$(secret "$bytes")
    export "TUBAI_SECRET_$key=$value"
done
unset value
PROFILE=$profile awk -F= '
    $2 ~ /^replace-me/          { print $1 "=" ENVIRON["TUBAI_SECRET_" $1]; next }
    $1 == "COMPOSE_PROFILES"    { print $1 "=" ENVIRON["PROFILE"]; next }
    { print }
' "$example" >"$tmp"
for key in $keys; do  # each one hex, of its length: openssl or /dev/urandom worked
    case $key in
        *_TOKEN) digits=64 ;;
        *) digits=48 ;;
    esac
    grep -q "^$key=[0-9a-f]\{$digits\}\$" "$tmp" \
        || { echo "could not generate the secrets (openssl or /dev/urandom)" >&2; exit 1; }
done
# Neither overwrites an OUT that appeared meanwhile (ln: atomic; cat under set -C: where the
# filesystem has no hard links).
ln "$tmp" "$out" 2>/dev/null || (set -C && cat "$tmp" >"$out")
echo "wrote $out: a fresh InfluxDB admin token, admin passwords and one InfluxDB password per" \
    "role (kept there, not shown); COMPOSE_PROFILES=$profile: $why"
