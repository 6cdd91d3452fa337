#!/usr/bin/env bash
# make test: a private Redis on a free loopback port, then prove -r t/.
#   scripts/test.sh [t/file.t ...]
# Honours TEST_NGINX_USE_VALGRIND; uses the real Test::Nginx when installed,
# the compatible runner in t/lib otherwise.
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

NGINX=${NGINX_BIN:-/usr/sbin/nginx}
SO=${SO:-$repo/build/modules/ngx_http_scale_module.so}
# never export NGINX: nginx reads it as inherited listening sockets
export -n NGINX

# below the kernel's ephemeral range: no outgoing connection holds the port
read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null \
    || { eph_lo=32768; eph_hi=60999; }
if [ "$eph_lo" -gt 22000 ]; then port_lo=20000; port_n=$((eph_lo - 20000))
else port_lo=$((eph_hi + 1)); port_n=$((65000 - eph_hi)); fi

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((port_lo + (RANDOM * 32768 + RANDOM) % port_n))
        ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo $p; return; }
    done
    return 1
}

work=$(mktemp -d /tmp/nginx-scale-test.XXXXXX)
redis_port=$(free_port)

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" --enable-debug-command yes --daemonize yes \
    --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

cleanup() {
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1
    [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export TEST_NGINX_BINARY=$NGINX
export TEST_NGINX_LOAD_MODULES=$SO
export TEST_NGINX_REDIS_PORT=$redis_port
export TEST_NGINX_SERVER_PORT=${TEST_NGINX_SERVER_PORT:-$(free_port)}
export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$work/servroot}
export TEST_NGINX_WORK=$work
# under valgrind nginx listens long before its Redis handshake is done, so a
# block's first request would fail open: give the start more time
[ -n "${TEST_NGINX_USE_VALGRIND:-}" ] && export TEST_NGINX_SLEEP=${TEST_NGINX_SLEEP:-0.5}

inc=()
perl -MTest::Nginx::Socket -e1 2>/dev/null || inc=(-I "$repo/t/lib")

if [ $# -gt 0 ]; then
    prove "${inc[@]}" "$@"
else
    prove "${inc[@]}" -r t/
fi
