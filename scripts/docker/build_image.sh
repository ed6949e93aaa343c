#!/usr/bin/env bash
# Build the fedchain image on a machine with a Docker engine but no image registry (and, as on
# our CI machines, no way for a build container to verify PyPI's TLS): the base image comes from
# build_base_image.sh (debootstrap), and every wheel the image installs is downloaded on the host
# into build/docker-wheels, so `docker build` runs without network.  Users with a registry can
# simply run `docker compose build` (python:3.11-slim-bookworm + PyPI).
#
#   scripts/docker/build_image.sh            -> image fedchain:latest (FEDCHAIN_IMAGE overrides)
set -euo pipefail
cd "$(dirname "$0")/../.."

image="${FEDCHAIN_IMAGE:-fedchain:latest}"
base="${FEDCHAIN_BASE_IMAGE:-fedchain-base:bookworm}"
wheels="build/docker-wheels"

scripts/docker/build_base_image.sh

# The wheelhouse depends only on pyproject.toml's dependencies: refetch when it changed.
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
stamp="$wheels/.stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== downloading wheels for the image into $wheels"
    rm -rf "$wheels"
    mkdir -p "$wheels"
    arch="$(uname -m)"
    mapfile -t deps < <("$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    build_reqs=("setuptools>=77" "wheel")
    # The image's interpreter is CPython 3.11 on glibc 2.36 (bookworm), whatever the host runs.
    "$py" -m pip download -q -d "$wheels" --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform "manylinux_2_36_$arch" --platform "manylinux_2_28_$arch" \
        --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
        --platform "manylinux_2_5_$arch" --platform any \
        "${deps[@]}" "${build_reqs[@]}"
    touch "$stamp"
else
    echo "== wheels for the image up to date in $wheels"
fi

echo "== docker build -> $image (base $base)"
# The classic builder: BuildKit (buildx) is not installed on every engine, and the classic
# builder caches layers just as well for this Dockerfile.  The deps stage is tagged too, so
# pruning untagged leftovers of earlier builds never throws away the layer cache.
log="build/docker-build.log"
: >"$log"
for target in build final; do
    tag="$image"
    target_args=()
    if [ "$target" = build ]; then tag="${image%%:*}:build-cache"; target_args=(--target deps); fi
    if ! DOCKER_BUILDKIT=0 docker build --force-rm -t "$tag" "${target_args[@]}" \
        --build-arg "BASE_IMAGE=$base" \
        --build-arg "WHEELHOUSE=$wheels" \
        --network none \
        . >>"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "docker build failed; full log in $log" >&2
        exit 1
    fi
done
docker run --rm "$image" --help >/dev/null
docker image prune -f --filter label=io.fedchain.image >/dev/null
echo "== built $image"
