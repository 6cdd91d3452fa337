# shellcheck shell=bash
# Loopback ports and private Redis servers: one rule for scripts/test.sh and
# bench/lib.sh (which source this file) and t/helpers/scale.pl (which runs
# it: bash scripts/lib/redis.sh free_port PID, redis_start PORT DIR ...).
#
#   free_port [OWNER]           print a free port, reserved for the process
#                               OWNER (default: this shell)
#   redis_start PORT DIR [FLAG ...]
#                               a Redis that keeps nothing on disk, on
#                               127.0.0.1:PORT, in the background: pid in
#                               DIR/redis-PORT.pid, log DIR/redis-PORT.log;
#                               returns once it answers PING
#   redis_stop PORT DIR         SHUTDOWN NOSAVE, KILL if it lingers
#
# A free port is one below the kernel's ephemeral range, so that no
# outgoing connection (wrk's, nginx's) takes it before its server listens;
# that no TCP socket uses; and that no other live run has reserved.  The
# reservations are files named by port in $ports_dir, holding the owner's
# pid, written under flock; one whose owner has gone counts as free.

ports_dir=/tmp/nginx-scale-ports.$(id -u)

read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null \
    || { eph_lo=32768; eph_hi=60999; }
if [ "$eph_lo" -gt 22000 ]; then port_lo=20000; port_n=$((eph_lo - 20000))
else port_lo=$((eph_hi + 1)); port_n=$((65000 - eph_hi)); fi

free_port() {
    local owner=${1:-$$}

    mkdir -p "$ports_dir" || return 1
    (
        local p o
        flock 9 || exit 1
        for _ in $(seq 100); do
            p=$((port_lo + (RANDOM * 32768 + RANDOM) % port_n))
            o=$(cat "$ports_dir/$p" 2>/dev/null) \
                && [ -n "$o" ] && [ -d "/proc/$o" ] && continue
            ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
            echo "$owner" >"$ports_dir/$p" || exit 1
            echo "$p"
            exit 0
        done
        echo "free_port: no free port in $port_lo-$((port_lo + port_n - 1))" >&2
        exit 1
    ) 9>>"$ports_dir/lock"
}

redis_start() {
    local port=$1 dir=$2
    shift 2

    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis-$port.pid" \
        --logfile "$dir/redis-$port.log" "$@" >/dev/null || return 1
    for _ in $(seq 50); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    echo "redis on port $port did not start: see $dir/redis-$port.log" >&2
    return 1
}

redis_stop() {
    local port=$1 pid

    pid=$(cat "$2/redis-$port.pid" 2>/dev/null) || pid=
    timeout 5 redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    [ -n "$pid" ] || return 0
    # gone, or a zombie that nobody reaps yet: its port is closed
    for _ in $(seq 50); do
        grep -qs '^State:[[:space:]]*[^Z]' "/proc/$pid/status" || return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-} in
    free_port|redis_start|redis_stop) "$@" ;;
    *) echo "usage: $0 free_port [OWNER] | redis_start PORT DIR [FLAG ...]" \
            "| redis_stop PORT DIR" >&2
       exit 2 ;;
    esac
fi
