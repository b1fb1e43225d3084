"""Builds what ./run_local.sh runs on: a generated sample input and three demo tiers.

The sample is synthetic movie-review sentences (written by this script, so no third-party
data is shipped): plain, negated and contrastive ("X, but Y") statements, the last two being
the hard cases a cheap tier should escalate. A few malformed lines show the dead letters.
The tiers are all-MiniLM-L6-v2 fine-tuned on another draw of the same generator, keeping
3, 4 and 6 encoder layers (fewer than 3 do not learn
this task in one epoch). Everything is cached: a second run only checks it is there.
"""
from __future__ import annotations

import argparse
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq

from models.datasets import LabelledTexts
from models.training import default_base_model, fine_tune
from models.training_config import TrainingConfig

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the script", "the score",
            "the ending", "the cast", "the direction", "the dialogue"]
POSITIVE = ["wonderful", "moving", "brilliant", "charming", "gripping", "funny", "beautiful",
            "sharp", "delightful", "superb"]
NEGATIVE = ["dull", "tedious", "clumsy", "lifeless", "predictable", "bland", "messy",
            "painful", "forgettable", "awful"]
INTENSIFIERS = ["", "very ", "truly ", "rather ", "remarkably "]
LABELS = ("negative", "positive")
# (name, encoder layers, epochs, threshold). Thresholds read off the demo tiers'
# confidences on their dev draw (until `calibrate`): the 4-layer tier is confident on nearly
# everything, so only its least sure ~15% go on. The 3-layer tier trains two epochs: with
# one it barely leaves its initial 50/50 and decides one class only.
TIERS = (("small", 3, 2, 0.7), ("medium", 4, 1, 0.9958), ("large", 6, 1, None))
MALFORMED = ['{"text": null, "label": "positive"}', '{"text": 42}', "{broken json",
             '["a", "list"]', '{"review": "no text field"}']


def sentence(rng: random.Random) -> tuple[str, str]:
    """One review sentence and its sentiment."""
    polarity = rng.randint(0, 1)
    words = lambda p: POSITIVE if p else NEGATIVE  # noqa: E731
    subject = rng.choice(SUBJECTS)
    form = rng.random()
    if form < 0.5:
        text = f"{subject} is {rng.choice(INTENSIFIERS)}{rng.choice(words(polarity))} ."
    elif form < 0.75:
        text = f"{subject} is not {rng.choice(words(1 - polarity))} ."
    else:
        other = rng.choice(SUBJECTS)
        text = (f"{subject} is {rng.choice(words(1 - polarity))} , but {other} is "
                f"{rng.choice(INTENSIFIERS)}{rng.choice(words(polarity))} .")
    return text, LABELS[polarity]


def draw(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [dict(zip(("text", "label"), sentence(rng)), review_id=f"r{seed}-{i}")
            for i in range(n)]


def write_sample(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    rows = draw(1500, seed=2)
    pq.write_table(pa.Table.from_pylist(rows[:1000]), os.path.join(folder, "reviews.parquet"))
    lines = [json.dumps(r) for r in rows[1000:]]
    for i, bad in enumerate(MALFORMED):
        lines.insert(50 * (i + 1), bad)
    with open(os.path.join(folder, "reviews.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def train_tiers(cache: str) -> None:
    rows = draw(3000, seed=1)
    train = LabelledTexts([r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows],
                          LABELS)
    dev_rows = draw(500, seed=3)
    dev = LabelledTexts([r["text"] for r in dev_rows],
                        [LABELS.index(r["label"]) for r in dev_rows], LABELS)
    base = default_base_model()
    for name, layers, epochs, _ in TIERS:
        folder = os.path.join(cache, "models", name)
        if os.path.exists(os.path.join(folder, "TRAINING.json")):
            continue
        print(f"== fine-tuning demo tier {name!r} ({layers} layers)", flush=True)
        report = fine_tune(base, train, folder, TrainingConfig(
            epochs=epochs, batch_size=32, lr=1e-4, max_length=32, keep_layers=layers,
            warmup_steps=10), dev)
        print(f"   dev accuracy {report['dev_accuracy']:.3f} in {report['train_seconds']} s")


def write_config(cache: str) -> None:
    tiers = [{"name": name, "model": os.path.abspath(os.path.join(cache, "models", name)),
              **({"threshold": threshold} if threshold else {}), "max_length": 32}
             for name, _, _, threshold in TIERS]
    config = {"text_field": "text", "id_field": "review_id", "label_field": "label",
              "passthrough_fields": ["label"], "tiers": tiers}
    with open(os.path.join(cache, "cascade.yaml"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)  # JSON is valid YAML


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="demo/cache")
    cache = parser.parse_args().cache
    if not os.path.exists(os.path.join(cache, "sample", "reviews.jsonl")):
        write_sample(os.path.join(cache, "sample"))
    train_tiers(cache)
    write_config(cache)


if __name__ == "__main__":
    main()
