#!/usr/bin/env bash
# The SST-2 benchmark in one command, on a fresh machine too: builds or reuses the project's
# environment (scripts/venv.sh), then runs `python -m bench.sst2` with the arguments given
# (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/venv.sh
exec python -m bench.sst2 "$@"
