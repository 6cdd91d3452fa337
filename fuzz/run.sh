#!/usr/bin/env bash
# Builds and runs the session_redis fuzzer: cookies, signed ids, stored
# sessions (JSON), numbers.
#   fuzz/run.sh [SECONDS]          default 600
# BUILD: the module's build directory (make BUILD=...), for the nginx
# headers that configure generates; built first when missing.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build}
src=${NGINX_SRC:-/usr/share/nginx/src}
seconds=${1:-600}
out=${FUZZ_OUT:-$build/fuzz}

if [ ! -f "$build/obj/ngx_auto_config.h" ]; then
    make -C "$repo" BUILD="$build"
fi

mkdir -p "$out/corpus"
cp -n "$repo"/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true

clang -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined \
    -I "$src/src/core" -I "$src/src/event" -I "$src/src/event/modules" \
    -I "$src/src/os/unix" -I "$build/obj" -I "$repo" -I "$repo/src" \
    "$repo/fuzz/session_cookie_fuzz.c" \
    "$repo/src/ngx_http_session_redis_cookie.c" \
    "$repo/src/ngx_http_session_redis_json.c" \
    -lcrypto -ljansson -lm -o "$out/session_cookie_fuzz"

cd "$out"
./session_cookie_fuzz -max_total_time="$seconds" -max_len=16384 \
    -dict="$repo/fuzz/session_cookie.dict" -print_final_stats=1 \
    corpus 2>&1 | tee fuzz.log | grep -v '^#[0-9]*\s*\(NEW\|REDUCE\|pulse\)' \
    || { tail -40 fuzz.log; exit 1; }
