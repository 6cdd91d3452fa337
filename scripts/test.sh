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

. "$repo/scripts/lib/redis.sh"     # free_port, redis_start, redis_stop

work=$(mktemp -d /tmp/nginx-scale-test.XXXXXX)
redis_port=$(free_port) || exit 1

cleanup() {
    redis_stop "$redis_port" "$work"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_start "$redis_port" "$work" --enable-debug-command yes || exit 1

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

[ $# -gt 0 ] || set -- -r t/
prove "${inc[@]}" "$@" 2>&1 | tee "$work/prove.log"
rc=${PIPESTATUS[0]}

# A long run's failures scroll away (and CI keeps only the end of its
# output): repeat each failed check with its first lines of explanation.
if [ "$rc" != 0 ]; then
    echo "--- failed checks, again:"
    awk '/#   Failed test/ { n = 5 }
         n > 0 { print "  " substr($0, 1, 1000); n-- }' "$work/prove.log" | head -n 60
fi
exit "$rc"
