#!/usr/bin/env bash
# Build the local base image fedchain-base:bookworm without any image registry:
# debootstrap a minimal Debian bookworm (python3 3.11, venv, ca-certificates) from Debian's
# package mirror and `docker import` it.  Machines that can pull images never need this: the
# Dockerfile defaults to a public python image.  Idempotent: an existing image is kept unless
# --force is given.
#
#   scripts/docker/build_base_image.sh [--force]
#   env: FEDCHAIN_BASE_IMAGE (default fedchain-base:bookworm), DEBIAN_MIRROR
set -euo pipefail

image="${FEDCHAIN_BASE_IMAGE:-fedchain-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "== base image $image already present"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "debootstrap is missing; install it (apt-get install debootstrap) or run as root" >&2
        exit 1
    fi
    echo "== installing debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    echo "debootstrap needs root (it creates device nodes and chroots)" >&2
    exit 1
fi

rootfs="$(mktemp -d /var/tmp/fedchain-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "== debootstrap bookworm (minbase + python3) into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"

# Nothing in the image needs apt's caches, docs or locales; they only cost size and import time.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
# deb.debian.org is what a user of the image would reach; keep sources usable.
printf 'deb %s bookworm main\n' "$mirror" >"$rootfs/etc/apt/sources.list"

echo "== docker import -> $image"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "fedchain base: debootstrap bookworm minbase + python3" \
    - "$image" >/dev/null
docker run --rm "$image" python3 -c 'import sys, venv, ssl; print("== base image python", sys.version.split()[0])'
