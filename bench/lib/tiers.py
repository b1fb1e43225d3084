"""The tiers the studies time and replay, each trained into bench/cache on first use and
reused after: the n-gram tier 1, the MiniLM tier 2, the n-gram tiers distilled from the
reference tier 2, and the tiers bench.heldout_sst2 retrains without its held-out sentences;
and the models/ loaders that turn a tier's folder into a model (with early exit, or exported
to ONNX), under the bench's names."""
from __future__ import annotations

import os
import sys

from models.early_exit import EarlyExit
from models.loading import TierModel, load_configured_tier, load_tier
from models.ngram import NgramTier
from models.onnx_export import exported_model
from models.training import default_base_model, fine_tune, train_ngram
from models.training_config import NgramTrainingConfig, TrainingConfig
from pipeline.train import main as train_main

from bench.lib.data import sst2_labelled
from bench.lib.paths import CACHE, LABELS, REFERENCE_TIER2, sst2_file

__all__ = ["EarlyExit", "NgramTier", "TierModel", "distilled_pair", "distilled_tier",
           "distilled_transformer", "exported_model", "heldout_folder", "heldout_tiers",
           "load_configured_tier", "load_tier", "sst2_training", "tier1_model", "tier2_model",
           "trained_tier"]


def tier1_model(given: str | None, data: str) -> str:
    """The given tier 1, else the cached n-gram tier, trained on train.tsv when absent."""
    if given:
        return given
    folder = os.path.join(CACHE, "sst2-ngram")
    if not os.path.isfile(os.path.join(folder, "TRAINING.json")):
        print(f"bench: training the n-gram tier 1 into {folder}", file=sys.stderr)
        train_ngram(sst2_labelled(data, "train.tsv"), folder, NgramTrainingConfig(),
                    sst2_labelled(data, "dev.tsv"))
    return folder


def tier2_model(given: str | None, data: str) -> str:
    """The given tier 2, else one trained by `beam-cascade train` in the cache, else the shared
    reference model, else train one now (about 70 minutes on 2 cores)."""
    if given:
        return given
    folder = os.path.join(CACHE, "sst2-minilm-l6")
    for candidate in (folder, REFERENCE_TIER2):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    print(f"bench: fine-tuning tier 2 into {folder} (2 epochs over SST-2 train: about 70 "
          "minutes on 2 cores)", file=sys.stderr)
    fine_tune(default_base_model(), sst2_labelled(data, "train.tsv"), folder, TrainingConfig(),
              sst2_labelled(data, "dev.tsv"))
    return folder


def trained_tier(folder: str, arguments: list[str]) -> str:
    """`folder`, trained first by `beam-cascade train` with `arguments` when it holds no
    finished training (TRAINING.json)."""
    if not os.path.isfile(os.path.join(folder, "TRAINING.json")):
        print(f"bench: training {folder}", file=sys.stderr, flush=True)
        if train_main([*arguments, "--output", folder, "--overwrite"]) != 0:
            sys.exit(f"bench: training {folder} failed (its error is above)")
    return folder


def sst2_training(train: str, data: str) -> list[str]:
    """`beam-cascade train`'s arguments for a tier trained on the TSV `train` (SST-2's columns
    and labels), scored on --data's dev.tsv."""
    return ["--train", train, "--text_field", "sentence", "--label_names", ",".join(LABELS),
            "--dev", sst2_file(data, "dev.tsv")]


def distilled_tier(data: str, temperature: float) -> str:
    """The n-gram tier distilled at `temperature`, trained into the cache when absent."""
    return _distilled_ngram(data, f"sst2-ngram-distilled-t{temperature:g}",
                            ["--teacher_temperature", f"{temperature:g}"])


def distilled_pair(data: str, width: int) -> str:
    """The n-gram tier with a word CNN of `width` beside it (models/word_cnn.py), both
    distilled as `distilled_tier` at temperature 1, the CNN's word vectors from the reference
    tier 2; trained into the cache when absent."""
    return _distilled_ngram(data, f"sst2-ngram-cnn{width}-distilled",
                            ["--word_vectors", REFERENCE_TIER2, "--cnn_width", str(width)])


def _distilled_ngram(data: str, name: str, options: list[str]) -> str:
    """bench/cache/`name`: an n-gram tier trained on the labelled train phrases and on the
    same phrases labelled by the reference tier 2, with `train`'s further `options`."""
    train = sst2_file(data, "train.tsv")
    return trained_tier(os.path.join(CACHE, name),
                        ["--kind", "ngram", *sst2_training(train, data), "--teacher",
                         REFERENCE_TIER2, "--unlabelled", train, *options])


def distilled_transformer(data: str) -> str:
    """The reference tier 2's first layer, distilled from it over the train phrases (2,000
    of them with their gold labels too), trained into the cache when absent."""
    train = sst2_file(data, "train.tsv")
    return trained_tier(os.path.join(CACHE, "sst2-minilm-l1-distilled"),
                        ["--base", REFERENCE_TIER2, "--keep_layers", "1", "--limit", "2000",
                         *sst2_training(train, data), "--teacher", REFERENCE_TIER2,
                         "--unlabelled", train, "--epochs", "1", "--lr", "1e-4"])


def heldout_folder(seed: int) -> str:
    """bench.heldout_sst2's folder for `seed`: pool.tsv, train_rest.tsv and its tiers."""
    return os.path.join(CACHE, f"heldout-{seed}")


def heldout_tiers(seed: int, study: str) -> str:
    """heldout_folder(seed), once bench.heldout_sst2 has trained its tiers there; exits with
    the command to run first otherwise."""
    folder = heldout_folder(seed)
    if not os.path.isfile(os.path.join(folder, "ngram-cnn32", "TRAINING.json")):
        sys.exit(f"{study}: {folder} lacks the retrained tiers: run "
                 f"python -m bench.heldout_sst2 --seed {seed} first")
    return folder
