"""What every kind of loaded tier offers, so that no caller needs to know which kind it has.

A transformer tier on PyTorch (models/loading.py `TierModel`) or on ONNX Runtime or OpenVINO
(models/onnx_tier.py `OnnxTier`) and an n-gram tier (models/ngram.py `NgramTier`) all
satisfy `Tier`; the pipeline's ModelHandler, calibrate and the benchmarks
use only this.
"""
from __future__ import annotations

from typing import Protocol

import torch

from models.early_exit import EarlyExit


class Tier(Protocol):
    """A loaded tier model, ready for batched inference on the CPU or GPU."""

    labels: tuple[str, ...]
    early_exit: EarlyExit | None  # set when records may leave at an inner exit

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        """Each text's logits (texts x labels), in the texts' order."""

    def logits_and_exits(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits and, per text, the layer it left the model at."""

    def exit_logits(self, texts: list[str], text_pairs: list[str] | None = None
                    ) -> torch.Tensor:
        """Every exit's raw logits (exits x texts x labels; one exit for most tiers)."""

    def forward_passes(self, texts: int) -> int:
        """The model's forward passes for one call over `texts` texts."""

    def unfamiliar_share(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> torch.Tensor:
        """Per text, the share of it the model never learnt (a learned router's feature,
        models/learned_deferral.py)."""
