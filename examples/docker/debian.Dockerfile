# syntax=docker/dockerfile:1
# nginx-scale on Debian's own nginx, from the package `make deb` builds.
#
#   make deb                                                  (repo root)
#   docker build -f examples/docker/debian.Dockerfile -t nginx-scale:debian .
#   podman --runtime runc build --network=host --format docker \
#       --ignorefile examples/docker/debian.Dockerfile.dockerignore \
#       --build-arg BASE_IMAGE=localhost/debian:bookworm \
#       -f examples/docker/debian.Dockerfile -t nginx-scale:debian .
#
# BASE_IMAGE is any Debian bookworm image: debian:bookworm from a registry,
# or one made locally with debootstrap (t/710-container-debian.t does that).
# The package depends on the exact nginx ABI it was built for
# (nginx-abi-1.22.1-7), so apt installs the matching Debian nginx with it, or
# refuses.  No compiler in the image: the .so is the package's.
#
# nginx.conf is the repository's template (examples/nginx/nginx.conf.template),
# rendered at every start from the ENV values below (override with -e); it
# loads the module itself, like the official-image Dockerfile.

ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}

# The package enables the module in Debian's stock nginx.conf layout
# (modules-enabled); `nginx -t` on that layout proves it loads before the
# image is committed.
COPY build/libnginx-mod-http-scale_*.deb /tmp/pkg/
RUN set -eux; \
    pkg=$(ls /tmp/pkg/libnginx-mod-http-scale_*.deb); \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx curl "$pkg"; \
    rm -rf /tmp/pkg /var/lib/apt/lists/*; \
    test -L /etc/nginx/modules-enabled/50-mod-http-scale.conf; \
    nginx -t; \
    mkdir -p /etc/nginx/templates /var/run/nginx-scale

COPY examples/nginx/render /usr/local/bin/nginx-scale-render
COPY examples/docker/debian-entrypoint.sh /usr/local/bin/nginx-scale-entrypoint
COPY examples/nginx/nginx.conf.template /etc/nginx/templates/nginx.conf.template
COPY examples/docker/session-secret.conf.template /etc/nginx/templates/session-secret.conf.template

# The same placeholders as the official-image Dockerfile.  Debian's nginx is
# 1.22: no `server ... resolve`, so app names are resolved once at start.
# REDIS_SERVER=HOST:PORT is the plain pool (`server HOST:PORT;`, rendered by
# examples/nginx/render); set REDIS_SERVERS instead for any other form, e.g.
# "sentinel s1:26379; sentinel s2:26379; sentinel s3:26379; master mymaster;".
ENV SCALE_MODULE=modules/ngx_http_scale_module.so \
    NGINX_WORKERS=auto \
    NGINX_PID=/run/nginx.pid \
    NGINX_ACCESS_LOG=/dev/stdout \
    NGINX_LISTEN=8080 \
    NGINX_INSTANCE=\$hostname \
    NGINX_RESOLVER="" \
    REDIS_SERVER=redis:6379 \
    APP_SERVERS="server app:3000 max_fails=1 fail_timeout=5s;" \
    TRUSTED_PROXY=172.16.0.0/12 \
    METRICS_ALLOW=127.0.0.1 \
    DRAIN_FILE=/var/run/nginx-scale/drain \
    SESSION_SECRET_CONF=/etc/nginx/session-secret.conf \
    SESSION_SECRET=change-me
EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=2s CMD curl -fsS http://127.0.0.1:8080/api/health || exit 1
ENTRYPOINT ["/usr/local/bin/nginx-scale-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]
