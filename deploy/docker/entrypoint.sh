#!/bin/sh
# entrypoint.sh - the images' entrypoint: a cookie passed in the environment
# (ECS `secrets` from Secrets Manager, compose) goes to a 0400 file and leaves
# the environment, so it is not visible in /proc/PID/environ of the service;
# then the service is exec'd (PID 1, gets SIGTERM/SIGHUP directly).
set -eu
if [ -n "${ONEBLOG_COOKIE:-}" ]; then
    umask 077
    f=${ONEBLOG_COOKIE_FILE:-/var/lib/oneblog/.cookie}
    mkdir -p "$(dirname "$f")"
    printf '%s\n' "$ONEBLOG_COOKIE" | tr ',' '\n' >"$f"
    chmod 0400 "$f"
    export ONEBLOG_COOKIE_FILE="$f"
    unset ONEBLOG_COOKIE
fi
# On ECS (awsvpc) a node's name is BASENAME@TASK_IP, which only the task knows:
# derive it when ONEBLOG_CLUSTER_BASENAME is set and no node name was given.
if [ -n "${ONEBLOG_CLUSTER_BASENAME:-}" ]; then
    ip=$(hostname -i 2>/dev/null | awk '{print $1}')
    name="$ONEBLOG_CLUSTER_BASENAME@$ip"
    : "${ONEBLOG_CMS_NODE:=$name}" "${ONEBLOG_CLIENT_NODE:=$name}" "${ONEBLOG_RECS_NODE:=$name}"
    export ONEBLOG_CMS_NODE ONEBLOG_CLIENT_NODE ONEBLOG_RECS_NODE
fi
exec "$@"
