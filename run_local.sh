#!/usr/bin/env bash
# The whole loop in one command, on generated movie reviews with the DirectRunner:
#   1. train:     three demo tiers: a word n-gram model and all-MiniLM-L6-v2 cut to 4 and 6
#                 layers, fine-tuned;
#   2. calibrate: `beam-cascade calibrate` chooses their thresholds on a held-out labelled
#                 draw, promising at most 1 point of accuracy below the large tier alone;
#   3. run:       `beam-cascade run` classifies the sample with the tuned config.
# Steps 1-2 are demo/prepare.py, cached in demo/cache/ (the first time: a few minutes; later
# runs reuse it). The virtual environment is built first if absent. Extra arguments go to
# `beam-cascade run` (e.g. --runner).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
python demo/prepare.py --cache demo/cache
echo "== beam-cascade run --config demo/cache/tuned.yaml"
beam-cascade run --config demo/cache/tuned.yaml \
  --input 'demo/cache/sample/*.parquet' --input 'demo/cache/sample/*.jsonl' \
  --output demo/out "$@"
echo "calibration report: demo/cache/calibration/report.md;" \
  "its accuracy/cost frontier: demo/cache/calibration/frontier.png"
