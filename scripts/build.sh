#!/usr/bin/env bash
# Builds build/modules/ngx_http_scale_module.so.
#   NGINX_SRC unset: against Debian's nginx, through nginx-dev and its conf_flags
#   NGINX_SRC=/path: against that source tree, --with-compat
# WERROR=1 (CI) turns compiler warnings into errors.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$repo/build}
src=${NGINX_SRC:-}
flags=()

if [ -z "$src" ]; then
    src=/usr/share/nginx/src
    . "$src/conf_flags"
    flags=("${NGX_CONF_FLAGS[@]}")
else
    flags=(--with-compat)
fi

cc_opt="-Wall -Wextra -Wno-unused-parameter"
[ "${WERROR:-0}" = 1 ] && cc_opt="$cc_opt -Werror"
[ -n "${EXTRA_CC_OPT:-}" ] && cc_opt="$cc_opt $EXTRA_CC_OPT"

obj=$build/obj
mkdir -p "$obj" "$build/modules"
stamp="$obj/.configured"
want="$src ${flags[*]} $cc_opt"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ "$repo/config" -nt "$stamp" ]; then
    (cd "$src" && ./configure "${flags[@]}" --with-cc-opt="$cc_opt" \
         --with-ld-opt="${EXTRA_LD_OPT:-}" \
         --add-dynamic-module="$repo" --builddir="$obj") >"$obj/configure.log" 2>&1 \
        || { tail -20 "$obj/configure.log"; exit 1; }
    echo "$want" >"$stamp"
fi

make -s -f "$obj/Makefile" -C "$src" modules
cp "$obj/ngx_http_scale_module.so" "$build/modules/ngx_http_scale_module.so.tmp"
mv "$build/modules/ngx_http_scale_module.so.tmp" "$build/modules/ngx_http_scale_module.so"
ls -l "$build/modules/ngx_http_scale_module.so"
