#!/usr/bin/env bash
# The README's test command: set up .venv (first run only), then lint, type-check and test.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/venv.sh
ensure_venv "dev,interop,mnist1d"

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
# The docker testnet e2e (scripts/docker/e2e.sh) needs a Docker engine; say so when there is none.
echo "== e2e (docker-compose testnet)"
if [ "$#" -gt 0 ]; then
    echo "pytest arguments given: e2e testnet NOT run (scripts/docker/e2e.sh runs it alone)"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    scripts/docker/e2e.sh
else
    echo "docker engine not available: e2e testnet NOT run"
fi
