"""The settings of `beam-cascade train`: plain dataclasses, no torch, so the command can
print its help and check its arguments before the training code loads."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 64
    eval_max_length: int = 128
    seed: int = 0
    keep_layers: int | None = None
    exits: tuple[int, ...] | None = None  # encoder layers with a classifier head
    exits_only: bool = False  # train only the inner exits of a fine-tuned base (DeeBERT)
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    device: str = "auto"  # CUDA when a GPU is visible
    precision: str = "fp32"  # or "bf16": mixed precision, the weights kept in fp32

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: give one of "
                             f"{', '.join(PRECISIONS)}")


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class WordCnnTrainingConfig:
    """The word CNN an n-gram tier can carry (models/word_cnn.py), its word pieces and their
    embeddings borrowed from the transformer checkpoint `vectors_from`. Defaults from the
    probe on SST-2 (docs/benchmarks.md): width 32 kept the tier over 50x cheaper than the
    reference tier 2; 64 routed better at about 33x."""

    vectors_from: str
    width: int = 32
    max_words: int = 128
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    seed: int = 0


@dataclass(frozen=True)
class NgramTrainingConfig:
    """Defaults chosen on SST-2 for routing, not accuracy alone: the L2 penalty keeps rare
    n-grams from making tier 1 confidently wrong. Without it (5 epochs): 80.3% dev alone and
    87.2% for a cascade escalating 30% to the reference tier 2; with it (10 epochs): 81.2%
    and 89.5%."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.05
    weight_decay: float = 3e-6
    seed: int = 0
    num_buckets: int = 2 ** 20
    max_n: int = 2
    word_cnn: WordCnnTrainingConfig | None = None  # a word CNN beside the linear model


@dataclass(frozen=True)
class DifficultyAware:
    """The regulariser's weight and margin (the paper's defaults) and the folds that label
    difficulty."""

    weight: float = 0.5
    margin: float = 0.5
    folds: int = 2
