#!/bin/sh
# Starts one Redis node of a Sentinel set as what it must be now, for
# containers (docker-compose.yml, the Kubernetes StatefulSet): a replica of
# the master the Sentinels name; only when no Sentinel answers (the very
# first start of the set) the node FIRST_MASTER starts as master and the
# others as its replicas.  So a restarted node never comes back as a second
# master.  Environment:
#   SENTINELS     Sentinels to ask, "host:port host:port ..."
#   MASTER_NAME   the name they monitor                 default mymaster
#   FIRST_MASTER  host name of the node that is master on the first start
#   SELF          this node's address as the Sentinels report it (its IP);
#                 default: what its host name resolves to
#   REDIS_PORT    default 6379
# Further arguments go to redis-server.
set -eu
MASTER_NAME=${MASTER_NAME:-mymaster}
REDIS_PORT=${REDIS_PORT:-6379}
ip_of() { getent hosts "$1" | awk '{print $1; exit}'; }
SELF=${SELF:-$(ip_of "$(hostname)")}

master=
for s in $SENTINELS; do
    a=$(timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw \
        sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd' ' -) || continue
    case $a in *.*\ [0-9]*|*:*\ [0-9]*) master=$a; break ;; esac
done

if [ -n "$master" ]; then
    echo "redis-start: Sentinel names master ${master% *}:${master#* }"
    # itself (restarted before a failover): master again, with its data
    if [ "${master% *}" != "$SELF" ] || [ "${master#* }" != "$REDIS_PORT" ]; then
        set -- "$@" --replicaof "${master% *}" "${master#* }"
    fi
elif [ "$(ip_of "$FIRST_MASTER")" = "$SELF" ] || [ "${FIRST_MASTER%%.*}" = "$(hostname)" ]; then
    echo "redis-start: no Sentinel answers: first start, master"
else
    until m=$(ip_of "$FIRST_MASTER") && [ -n "$m" ]; do sleep 1; done
    echo "redis-start: no Sentinel answers: first start, replica of $FIRST_MASTER ($m)"
    set -- "$@" --replicaof "$m" "$REDIS_PORT"
fi
exec redis-server --port "$REDIS_PORT" "$@"
