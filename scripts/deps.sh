#!/usr/bin/env bash
# Installs the Debian packages a step needs, only those that are missing.
#   scripts/deps.sh build|test|valgrind|bench|demo|fuzz|deb|container ...
set -eu

# make deb: debian/control's Build-Depends, the packaging tools, lintian
deb=(build-essential dpkg-dev debhelper fakeroot lintian nginx-dev
     libhiredis-dev libssl-dev)
# the container scenario: rootful podman with runc (host networking, so no
# network stack), buildah for builds, debootstrap for the local base image
container=(podman runc buildah debootstrap)

pkgs=()
for step in "$@"; do
    case $step in
    build)    pkgs+=(build-essential nginx nginx-dev libhiredis-dev libssl-dev
                     libpcre3-dev zlib1g-dev) ;;
    test)     pkgs+=(redis-server redis-tools curl libtest-base-perl libtext-diff-perl
                     liblist-moreutils-perl libtest-longstring-perl liburi-perl
                     libhttp-message-perl libipc-run-perl prometheus nodejs npm
                     libyaml-libyaml-perl redis-sentinel haproxy
                     libnginx-mod-http-upstream-fair
                     "${deb[@]}" "${container[@]}") ;;
    valgrind) pkgs+=(valgrind) ;;
    deb)      pkgs+=("${deb[@]}") ;;
    container) pkgs+=("${container[@]}") ;;
    bench)    pkgs+=(wrk redis-server redis-tools curl libnginx-mod-http-lua
                     lua-nginx-redis libnginx-mod-http-srcache-filter python3) ;;
    demo)     pkgs+=(redis-server redis-tools curl haproxy nodejs npm) ;;
    fuzz)     pkgs+=(clang libclang-rt-14-dev libjansson-dev) ;;
    *)        echo "deps.sh: unknown step $step" >&2; exit 2 ;;
    esac
done

# a virtual package an installed one provides counts (NodeSource's nodejs provides npm)
provided=$(dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null | sed -n 's/^install ok installed|//p' \
           | tr ',' '\n' | awk '{print $1}')
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        || grep -qxF "$p" <<<"$provided" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt_get update -qq >/dev/null
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
