"""What a transformer tier does the same on every runtime, given once: PyTorch's `TierModel`
(models/loading.py) and the exported graph's `OnnxTier` (models/onnx_tier.py) both hold the
model's fast tokenizer, labels, token limit, batch size and depth, cut a call into the same
sorted passes (models/batching.py) and measure a text's unfamiliar words with the same
tokenizer, so that a tier answers, costs and routes alike whichever runtime runs it.
"""
from __future__ import annotations

from typing import Callable

import torch

from models.batching import pass_count, sorted_passes
from models.early_exit import EarlyExit
from models.learned_deferral import unfamiliar_word_share


class TransformerTier:
    """The shared part of a transformer tier (models/tier.py `Tier`); a runtime adds its
    forward pass."""

    early_exit: EarlyExit | None = None  # set by a multi-exit tier on PyTorch

    def __init__(self, tokenizer, labels: tuple[str, ...], max_length: int, batch_size: int,
                 depth: int):
        self.tokenizer = tokenizer
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self.depth = depth

    def forward_passes(self, texts: int) -> int:
        """Passes of at most batch_size texts (models/batching.py)."""
        return pass_count(texts, self.batch_size)

    def unfamiliar_share(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> torch.Tensor:
        """Per text, the share of its words the tokenizer splits or does not know."""
        return unfamiliar_word_share(self.tokenizer, texts, text_pairs)

    def _tokenized_passes(self, texts: list[str], text_pairs: list[str] | None,
                          forward: Callable[[dict], tuple[torch.Tensor, ...]],
                          tensors: str = "pt") -> tuple[torch.Tensor, ...]:
        """`forward` over the texts in sorted passes of batch_size, tokenized into `tensors`
        ("pt" or "np") as every runtime tokenizes them; outputs in the texts' order."""
        return sorted_passes(self.tokenizer, texts, text_pairs, self.batch_size,
                             self.max_length, forward, tensors)
