"""Shared fixtures: tiny checkpoint folders and a helper that runs the whole job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import FIRST_WORD_ID, make_tiny_classifier, make_tiny_encoder  # noqa: E402

from models.routing_stats import RoutingStats  # noqa: E402
from pipeline.job import run  # noqa: E402

RUNNER = ["--runner", "FnApiRunner"]  # pinned: the DirectRunner would first try Prism
ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def built(script: str) -> str:
    """The path a scripts/ build script prints (it builds once, then caches)."""
    done = subprocess.run([str(SCRIPTS / script)], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHON": sys.executable})
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, str]:
    """Three tiers with one label set, a two-layer one, one with other labels, one without a
    head, one whose tokenizer does not fit its embedding table."""
    root = tmp_path_factory.mktemp("models")
    folders = {name: make_tiny_classifier(root / name, seed=i)
               for i, name in enumerate(("small", "medium", "large"))}
    folders["three_labels"] = make_tiny_classifier(
        root / "three_labels", seed=7, labels=("neg", "neu", "pos"))
    folders["deep"] = make_tiny_classifier(root / "deep", seed=5, layers=2)
    folders["encoder"] = make_tiny_encoder(root / "encoder")
    folders["vocab_mismatch"] = make_tiny_classifier(
        root / "vocab_mismatch", seed=3, vocab_size=FIRST_WORD_ID)
    return folders


@pytest.fixture()
def two_tier_config(tmp_path, models) -> str:
    """A config file of the tiny tiers small (threshold 0.9) and large."""
    path = tmp_path / "cascade.yaml"
    path.write_text("tiers:\n"
                    f"  - {{name: small, model: {models['small']}, threshold: 0.9}}\n"
                    f"  - {{name: large, model: {models['large']}}}\n")
    return str(path)


def run_job(args: list[str]) -> RoutingStats:
    """Runs the cascade job on the pinned runner; returns its routing statistics."""
    return run(args + RUNNER)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def labelled_rows(count: int, words: str, step: int, max_words: int, period: int
                  ) -> list[dict]:
    """Synthetic labelled texts from `words`, lengths 1 to max_words, labels alternating
    every `period` rows: a dev file for calibrate on tiny models."""
    vocabulary = words.split()
    return [{"text": " ".join(vocabulary[(i * step + j) % len(vocabulary)]
                              for j in range(1 + i % max_words)),
             "label": ["neg", "pos"][(i // period) % 2]} for i in range(count)]


def read_predictions(output: Path) -> list[dict]:
    """All prediction rows under `output`, from Parquet or JSON Lines shards."""
    rows = []
    for shard in sorted(output.glob("predictions-*")):
        if shard.suffix == ".parquet":
            rows += pq.read_table(shard).to_pylist()
        else:
            rows += [json.loads(line) for line in shard.read_text().splitlines()]
    return rows


def upload(local_folder: str) -> str:
    """Copies a local folder to a fresh memory:// URL."""
    url = f"memory://models/{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    for path in Path(local_folder).rglob("*"):
        if path.is_file():
            fs.pipe(f"{url}/{path.relative_to(local_folder)}", path.read_bytes())
    return url


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden staging folders included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def read_errors(output: Path) -> list[dict]:
    return [json.loads(line) for shard in sorted(output.glob("errors-*.jsonl"))
            for line in shard.read_text().splitlines()]
