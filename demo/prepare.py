"""Builds what ./run_local.sh runs on: a sample input, three demo tiers and their calibration.

The sentences are synthetic movie reviews (demo/reviews.py: no third-party data is shipped),
easy ones and the hard cases a small tier should escalate. The tiers, a hashed word n-gram
model and two cuts of all-MiniLM-L6-v2 (4 and 6 layers), are trained on one draw of them; `beam-cascade calibrate` then tunes the cascade on another,
labelled draw, under an accuracy guarantee, measuring the disagreements with the last tier on
the sample the job will classify; the job itself classifies a third draw, with a few
malformed lines to show the dead letters. Everything is cached in --cache under the recipe
it was built by: a second run only checks it is there, a changed recipe rebuilds it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from demo import reviews
from models.datasets import LabelledTexts


@dataclass(frozen=True)
class DemoTier:
    """How one demo tier is trained: a transformer keeps `layers` encoder layers, reads
    `max_length` tokens (in training and in the cascade) and may start from another tier's
    fine-tuned layers; an n-gram tier (`kind: ngram`) is the project's hashed word n-gram
    model, which reads every word and costs a few hundredths of a millisecond a record."""

    name: str
    layers: int
    max_length: int
    epochs: int
    lr: float
    start_from: str | None = None
    kind: str = "transformer"


# In training order; the cascade runs them small -> medium -> large. The small tier is the
# n-gram model: nearly free (0.01 ms a record against the large tier's 2), sure of the plain
# verdicts, unsure of negation, contrast, sarcasm and rare words, which go on. The medium
# tier is the fine-tuned large tier's first 4 layers, one more epoch at 32 tokens. Measured
# on the 500 dev sentences: large 95.4%, medium 93.4%, small (n-gram) 88.6%.
TIERS = (DemoTier("large", 6, 64, 1, 1e-4), DemoTier("medium", 4, 32, 1, 1e-4, "large"),
         DemoTier("small", 0, 0, 10, 0.05, kind="ngram"))
CASCADE_ORDER = ("small", "medium", "large")
# (seed, records) of each draw; the sample's 1,500 records are split into Parquet and JSONL.
TRAIN, DEV, CALIBRATION, SAMPLE = (1, 2400), (3, 500), (4, 2000), (2, 1500)
MAX_ACCURACY_DROP = 1.0  # points against the large tier alone, at calibrate's 90% confidence
MALFORMED = ['{"text": null, "label": "positive"}', '{"text": 42}', "{broken json",
             '["a", "list"]', '{"review": "no text field"}']
GENERATED = ("sample", "calibration.jsonl", "models", "cascade.yaml", "tuned.yaml",
             "calibration")


def recipe() -> dict:
    """What the cache is built from: when any of it changes, the cache is rebuilt."""
    with open(reviews.__file__, "rb") as f:
        generator = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"generator": generator, "tiers": [asdict(t) for t in TIERS],
            "draws": {"train": TRAIN, "dev": DEV, "calibration": CALIBRATION, "sample": SAMPLE},
            "max_accuracy_drop": MAX_ACCURACY_DROP}


def clear_if_stale(cache: str) -> None:
    """Removes what an earlier recipe generated (the demo's own files only)."""
    path = os.path.join(cache, "recipe.json")
    current = json.loads(json.dumps(recipe()))  # tuples as the file holds them: lists
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if json.load(f) == current:
                return
    for name in GENERATED:
        target = os.path.join(cache, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
    os.makedirs(cache, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(current, f, indent=1)


def write_sample(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    rows = reviews.rows(SAMPLE[1], seed=SAMPLE[0])
    half = len(rows) * 2 // 3
    pq.write_table(pa.Table.from_pylist(rows[:half]), os.path.join(folder, "reviews.parquet"))
    lines = [json.dumps(r) for r in rows[half:]]
    for i, bad in enumerate(MALFORMED):
        lines.insert(50 * (i + 1), bad)
    write_lines(os.path.join(folder, "reviews.jsonl"), lines)


def write_lines(path: str, lines: list[str]) -> None:
    """Written whole or not at all: an interrupted run must not leave a file the cache
    check would take as done."""
    with open(path + ".partial", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".partial", path)


def labelled(seed_and_size: tuple[int, int]) -> LabelledTexts:
    drawn = reviews.draw(seed_and_size[1], seed_and_size[0])
    return LabelledTexts([r.text for r in drawn],
                         [reviews.LABELS.index(r.label) for r in drawn], reviews.LABELS)


def train_tiers(cache: str) -> bool:
    """Fine-tunes the tiers not yet in the cache; True when any was. torch loads only then,
    so a cached run starts in a second."""
    missing = [t for t in TIERS if not os.path.exists(tier_folder(cache, t.name, "TRAINING.json"))]
    if not missing:
        return False
    from transformers.utils import logging as transformers_logging

    from models.training import default_base_model, fine_tune, train_ngram
    from models.training_config import NgramTrainingConfig, TrainingConfig
    # the classification head starts untrained on purpose: transformers' report of it (a
    # table of "MISSING" weights) would only worry a newcomer
    transformers_logging.set_verbosity_error()
    train, dev = labelled(TRAIN), labelled(DEV)
    for tier in missing:
        folder = tier_folder(cache, tier.name)
        if tier.kind == "ngram":
            print(f"== training demo tier {tier.name!r}: word n-grams, {tier.epochs} epochs "
                  f"on {TRAIN[1]} sentences", flush=True)
            report = train_ngram(train, folder, NgramTrainingConfig(epochs=tier.epochs,
                                                                    lr=tier.lr), dev)
        else:
            print(f"== fine-tuning demo tier {tier.name!r}: {tier.layers} layers, "
                  f"{tier.max_length} tokens, {tier.epochs} epoch(s) on {TRAIN[1]} sentences",
                  flush=True)
            base = tier_folder(cache, tier.start_from) if tier.start_from \
                else default_base_model()
            report = fine_tune(base, train, folder, TrainingConfig(
                epochs=tier.epochs, batch_size=32, lr=tier.lr, max_length=tier.max_length,
                eval_max_length=tier.max_length, keep_layers=tier.layers, warmup_steps=10),
                dev)
        print(f"   dev accuracy {report['dev_accuracy']:.1%} on {DEV[1]} held-out sentences, "
              f"trained in {report['train_seconds']} s", flush=True)
    return True


def tier_folder(cache: str, name: str, *inside: str) -> str:
    return os.path.abspath(os.path.join(cache, "models", name, *inside))


def write_config(cache: str) -> None:
    """The cascade before calibration: its thresholds are placeholders calibrate replaces."""
    lengths = {t.name: t.max_length for t in TIERS if t.kind == "transformer"}
    tiers = [{"name": name, "model": tier_folder(cache, name),
              **({"max_length": lengths[name]} if name in lengths else {}),
              **({"threshold": 0.9} if name != CASCADE_ORDER[-1] else {})}
             for name in CASCADE_ORDER]
    config = {"text_field": "text", "id_field": "review_id", "label_field": "label",
              "passthrough_fields": ["label", "kind"], "tiers": tiers}
    with open(os.path.join(cache, "cascade.yaml"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)  # JSON is valid YAML


def calibrate(cache: str) -> None:
    """`beam-cascade calibrate` on the held-out labelled draw, the job's sample as its
    unlabelled records; one timing round at one batch size keeps it to seconds."""
    from pipeline.calibrate import main as calibrate_main
    argv = ["--config", os.path.join(cache, "cascade.yaml"),
            "--dev", os.path.join(cache, "calibration.jsonl"),
            "--unlabelled", os.path.join(cache, "sample", "*"),
            "--max_accuracy_drop", str(MAX_ACCURACY_DROP),
            "--batch_sizes", "64", "--repeats", "1",
            "--output", os.path.join(cache, "tuned.yaml"),
            "--report", os.path.join(cache, "calibration")]
    print("== beam-cascade calibrate " + " ".join(argv), flush=True)
    if calibrate_main(argv) != 0:
        raise SystemExit("demo: calibrate failed (its message is above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="demo/cache")
    cache = parser.parse_args().cache
    clear_if_stale(cache)
    if not os.path.exists(os.path.join(cache, "sample", "reviews.jsonl")):
        write_sample(os.path.join(cache, "sample"))
    if not os.path.exists(os.path.join(cache, "calibration.jsonl")):
        write_lines(os.path.join(cache, "calibration.jsonl"),
                    [json.dumps(r) for r in reviews.rows(CALIBRATION[1], CALIBRATION[0])])
    if train_tiers(cache) and os.path.exists(os.path.join(cache, "tuned.yaml")):
        os.remove(os.path.join(cache, "tuned.yaml"))  # tuned for the tiers just replaced
    write_config(cache)
    if not os.path.exists(os.path.join(cache, "tuned.yaml")):
        calibrate(cache)


if __name__ == "__main__":
    main()
