"""Labelled SST-2 sentences no tier has seen, and tiers trained without them.

    python -m bench.heldout_sst2 [--data ../shared/data/sst2] [--sentences 3000] [--seed 0]

SST-2 dev (872) is too small to hold the few hundred disagreements a guarantee study needs,
and the reference tier 2 saw all of train. So: train.tsv's full sentences are its phrases
that occur in no longer phrase; --sentences of them, drawn at random, are held out together
with every train phrase that occurs in one of them (word-bounded), and the tiers are
retrained on what is left:

- tier 2: all-MiniLM-L6-v2 fine-tuned by `beam-cascade train` (1 epoch, to keep this
  under an hour on 2 cores; the reference is 2 epochs);
- tier 1, plain: `train --kind ngram`;
- tier 1, n-gram + word CNN (width 32): distilled from the retrained tier 2 (its
  probabilities on the remaining phrases), the CNN's word pieces from that tier 2.

Everything lands in bench/cache/heldout-<seed>/: pool.tsv (the held-out sentences with
labels), train_rest.tsv, tier2/, ngram/, ngram-cnn32/. Each step is skipped when its output
exists.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import sys

from bench.sst2 import CACHE, DEFAULT_DATA, LABELS, sst2_file
from pipeline.train import main as train_main

HEADER = ("sentence", "label")


def read_tsv(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0].strip(), r[1]) for r in rows[1:]]


def write_tsv(path: str, rows: list[tuple[str, str]]) -> None:
    with open(path + ".part", "w", newline="", encoding="utf-8") as f:
        f.write("\t".join(HEADER) + "\n")
        f.writelines(f"{text}\t{label}\n" for text, label in rows)
    os.replace(path + ".part", path)


def full_sentences(phrases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The phrases that occur in no longer phrase (word-bounded): SST's sentences."""
    unique = dict(phrases)
    joined = "\n".join(f" {p} " for p in unique)
    return [(p, label) for p, label in unique.items() if joined.count(f" {p} ") == 1]


def split(phrases: list[tuple[str, str]], held_out: int, seed: int
          ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(held-out sentences, the phrases that occur in none of them)."""
    sentences = full_sentences(phrases)
    if len(sentences) < 2 * held_out:
        sys.exit(f"heldout: only {len(sentences)} full sentences in train.tsv; "
                 f"pass --sentences below {len(sentences) // 2}")
    pool = random.Random(seed).sample(sorted(sentences), held_out)
    joined = "\n".join(f" {s} " for s, _ in pool)
    rest = [(p, label) for p, label in phrases if f" {p} " not in joined]
    return pool, rest


def train(folder: str, arguments: list[str]) -> str:
    if not os.path.isfile(os.path.join(folder, "TRAINING.json")):
        print(f"heldout: training {folder}", file=sys.stderr, flush=True)
        if train_main([*arguments, "--output", folder, "--overwrite"]) != 0:
            sys.exit(f"heldout: training {folder} failed")
    return folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--sentences", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = os.path.join(CACHE, f"heldout-{args.seed}")
    os.makedirs(work, exist_ok=True)
    pool_path, rest_path = os.path.join(work, "pool.tsv"), os.path.join(work, "train_rest.tsv")
    if not os.path.isfile(rest_path):
        pool, rest = split(read_tsv(sst2_file(args.data, "train.tsv")), args.sentences, args.seed)
        write_tsv(pool_path, pool)
        write_tsv(rest_path, rest)
        print(f"heldout: {len(pool)} sentences held out, {len(rest)} phrases left to train on",
              file=sys.stderr)
    common = ["--train", rest_path, "--text_field", "sentence", "--label_names",
              ",".join(LABELS), "--dev", sst2_file(args.data, "dev.tsv")]
    tier2 = train(os.path.join(work, "tier2"), [*common, "--epochs", "1"])
    train(os.path.join(work, "ngram"), ["--kind", "ngram", *common])
    train(os.path.join(work, "ngram-cnn32"),
          ["--kind", "ngram", *common, "--teacher", tier2, "--unlabelled", rest_path,
           "--word_vectors", tier2, "--cnn_width", "32"])


if __name__ == "__main__":
    main()
