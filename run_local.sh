#!/usr/bin/env bash
# The main job in one command: a 3-tier cascade over the demo sample with the DirectRunner.
# First run: builds the virtual environment (if absent), writes the sample input and
# fine-tunes the three demo tiers from all-MiniLM-L6-v2 (cached in demo/cache/).
# Later runs reuse all of it. Extra arguments go to `beam-cascade run` (e.g. --runner).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
python demo/prepare.py --cache demo/cache
beam-cascade run --config demo/cache/cascade.yaml \
  --input 'demo/cache/sample/*.parquet' --input 'demo/cache/sample/*.jsonl' \
  --output demo/out "$@"
