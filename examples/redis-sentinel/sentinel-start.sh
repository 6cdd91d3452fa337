#!/bin/sh
# Starts one Sentinel for containers (docker-compose.yml, Kubernetes):
# writes its configuration (Sentinel rewrites it at run time, so it is made
# fresh at each start) monitoring the master the other Sentinels name, or
# FIRST_MASTER on the very first start, then runs redis-sentinel.
# Environment:
#   SENTINELS      the Sentinels to ask, "host:port ..." (itself may be one)
#   MASTER_NAME    default mymaster
#   FIRST_MASTER   host name of the node that is master on the first start
#   REDIS_PORT     the Redis nodes' port            default 6379
#   SENTINEL_PORT  default 26379
#   QUORUM         default 2
#   DOWN_AFTER_MS  down-after-milliseconds          default 1000
#   CONF           where the file goes              default /tmp/sentinel.conf
#   SENTINEL_ID    its run id (40 hex digits)       default: from its host name
# A stable id (a StatefulSet pod keeps its name) means a restarted Sentinel
# is the same voter to the others, not one more: stale entries would raise
# the majority a failover needs until none is reachable.
set -eu
MASTER_NAME=${MASTER_NAME:-mymaster}
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
CONF=${CONF:-/tmp/sentinel.conf}
SENTINEL_ID=${SENTINEL_ID:-$(hostname | sha1sum | cut -c1-40)}
ip_of() { getent hosts "$1" | awk '{print $1; exit}'; }

master=
for s in $SENTINELS; do
    a=$(timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw \
        sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd' ' -) || continue
    case $a in *.*\ [0-9]*|*:*\ [0-9]*) master=$a; break ;; esac
done
if [ -z "$master" ]; then
    until m=$(ip_of "$FIRST_MASTER") && [ -n "$m" ]; do sleep 1; done
    master="$m $REDIS_PORT"
fi
echo "sentinel-start: monitoring $MASTER_NAME at ${master% *}:${master#* }"
cat >"$CONF" <<CONF
port $SENTINEL_PORT
sentinel myid $SENTINEL_ID
sentinel monitor $MASTER_NAME ${master% *} ${master#* } ${QUORUM:-2}
sentinel down-after-milliseconds $MASTER_NAME ${DOWN_AFTER_MS:-1000}
sentinel failover-timeout $MASTER_NAME 5000
sentinel parallel-syncs $MASTER_NAME 1
CONF
exec redis-sentinel "$CONF"
