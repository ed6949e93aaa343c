#!/usr/bin/env bash
# The README's main command: a local fedchain testnet of real processes on loopback.
# 4 validators + 8 FL clients (2 attackers) train softmax regression on sklearn's digits; progress
# (height, FL round, accuracy) is printed until the rounds are done, then everything stops.
# Extra arguments go to `fedchain demo`, e.g. `scripts/demo.sh --rounds 5 --attack alie`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/venv.sh
ensure_venv "dev"
exec .venv/bin/python -m node.cli demo "$@"
