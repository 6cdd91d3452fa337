#!/bin/sh
# debian.Dockerfile's entrypoint: renders /etc/nginx/templates/*.template
# into /etc/nginx (as the official image does with
# NGINX_ENVSUBST_OUTPUT_DIR=/etc/nginx), then runs the command.  An unset
# placeholder stops the container rather than start a half-configured nginx.
set -eu

for t in /etc/nginx/templates/*.template; do
    [ -e "$t" ] || continue
    out=/etc/nginx/$(basename "$t" .template)
    nginx-scale-render "$t" >"$out.tmp"
    mv "$out.tmp" "$out"
done

exec "$@"
