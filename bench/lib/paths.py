"""Where the benchmark's inputs, cached tiers and results live; imports no torch, so that a
study which only downloads or assembles (bench/big_model.py) stays light."""
from __future__ import annotations

import os
import sys

LABELS = ("negative", "positive")  # SST-2's label ids 0 and 1
DEFAULT_DATA = "../shared/data/sst2"
REFERENCE_TIER2 = "../shared/models/sst2-minilm-l6"
CACHE = os.path.join("bench", "cache")
RESULTS = os.path.join("bench", "results")


def sst2_file(data: str, name: str) -> str:
    """A GLUE SST-2 file of the --data folder; exits with what to pass when it is missing."""
    path = os.path.join(data, name)
    if not os.path.isfile(path):
        sys.exit(f"bench: {path} is missing. Pass --data FOLDER holding GLUE SST-2's train.tsv, "
                 "dev.tsv and test_unlabeled.tsv (tab-separated, with header lines).")
    return path
