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

import os
import random
import sys

from bench.lib.cli import study_parser
from bench.lib.data import read_tsv, write_tsv
from bench.lib.paths import sst2_file
from bench.lib.tiers import heldout_folder, sst2_training, trained_tier

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


def main(argv: list[str] | None = None) -> None:
    p = study_parser("bench.heldout_sst2", __doc__.split("\n\n")[0],
                     writes_results=False)
    p.add_argument("--sentences", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = heldout_folder(args.seed)
    os.makedirs(work, exist_ok=True)
    pool_path, rest_path = os.path.join(work, "pool.tsv"), os.path.join(work, "train_rest.tsv")
    if not os.path.isfile(rest_path):
        pool, rest = split(read_tsv(sst2_file(args.data, "train.tsv")), args.sentences, args.seed)
        write_tsv(pool_path, pool)
        write_tsv(rest_path, rest)
        print(f"heldout: {len(pool)} sentences held out, {len(rest)} phrases left to train on",
              file=sys.stderr)
    common = sst2_training(rest_path, args.data)
    tier2 = trained_tier(os.path.join(work, "tier2"), [*common, "--epochs", "1"])
    trained_tier(os.path.join(work, "ngram"), ["--kind", "ngram", *common])
    trained_tier(os.path.join(work, "ngram-cnn32"),
                 ["--kind", "ngram", *common, "--teacher", tier2, "--unlabelled", rest_path,
                  "--word_vectors", tier2, "--cnn_width", "32"])


if __name__ == "__main__":
    main()
