#!/usr/bin/env bash
# Build the image (no registry needed) and run the e2e perturbation runner against the
# docker-compose testnet: scripts/docker/e2e.sh [runner options, see --help].
# Ends with the plain line `e2e: N passed, M failed`; exit status 0 only when none failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "scripts/docker/e2e.sh needs a running Docker engine" >&2
    exit 1
fi
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
scripts/docker/build_image.sh
exec "$py" -m tests.e2e.runner "$@"
