#!/bin/sh
# Writes a fleet's Redis ACL file: the users of redis-acl.conf (scssq-client,
# scssq-worker) and redis-acl-ops.conf (default = admin, scssq-flower,
# scssq-keda), adapted to SCSSQ_PREFIX / SCSSQ_QUEUE by
# `python -m compiler_tasks.coordination.acl`, each with the sha256 of its password taken
# from the environment (the file never holds a password in clear):
#
#   default       REDIS_PASSWORD (required: the admin, redis-cli, probes)
#   scssq-worker  REDIS_WORKER_PASSWORD
#   scssq-client  REDIS_CLIENT_PASSWORD
#   scssq-flower  REDIS_FLOWER_PASSWORD
#   scssq-keda    REDIS_KEDA_PASSWORD
#
# A user whose variable is unset or empty gets no password: nobody can log in
# as it. Redis ignores --requirepass once it loads an ACL file, which is why
# the default user is in the file.
#
# Run by docker compose's redis-acl step and by the Kubernetes Redis pod's
# init container, both with the scssq image:
#
#   sh redis-acl-render.sh SOURCE_DIR OUTPUT_FILE
set -eu
src=$1
out=$2
: "${REDIS_PASSWORD:?REDIS_PASSWORD (the default user) is required}"
args=""
for pair in default=REDIS_PASSWORD scssq-worker=REDIS_WORKER_PASSWORD \
    scssq-client=REDIS_CLIENT_PASSWORD scssq-flower=REDIS_FLOWER_PASSWORD \
    scssq-keda=REDIS_KEDA_PASSWORD; do
    var=${pair#*=}
    eval "value=\${$var:-}"
    if [ -n "$value" ]; then
        args="$args --password-from-env $pair"
    else
        echo "redis-acl: $var is empty: ${pair%%=*} gets no password (nobody can log in as it)"
    fi
done
umask 022
# shellcheck disable=SC2086  # $args is a list of words
{
    python -m compiler_tasks.coordination.acl $args "$src/redis-acl-ops.conf"
    python -m compiler_tasks.coordination.acl $args "$src/redis-acl.conf"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "redis-acl: wrote $(wc -l < "$out") users to $out"
