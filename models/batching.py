"""Model passes over many texts: which texts go into each pass.

Every loop over texts in this project (the tiers' own passes, timing, training, calibration)
chunks indices here, so "sorted by length, then in passes of batch_size" means one thing.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from models.long_texts import cut_long_texts


def text_lengths(texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[int]:
    """Each text's length with its pair's, in characters: they stand in for tokens wherever
    texts are grouped by length, which saves tokenizing twice."""
    return [len(t) + (len(text_pairs[i]) if text_pairs else 0) for i, t in enumerate(texts)]


def length_order(texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[int]:
    """Indices of `texts`, shortest first. Each pass then pads its texts to similar lengths:
    on SST-2's dev and test sentences a loop sorted by length ran 1.55x faster than one in
    input order (bench/results/sst2.md)."""
    return sorted(range(len(texts)), key=text_lengths(texts, text_pairs).__getitem__)


def batches(count: int, batch_size: int, order: Sequence[int] | None = None
            ) -> Iterator[list[int]]:
    """Indices 0..count-1 in chunks of at most `batch_size`, taken in `order` (default: as
    they come)."""
    indices = list(order) if order is not None else list(range(count))
    for start in range(0, count, batch_size):
        yield indices[start:start + batch_size]


def pass_count(count: int, batch_size: int) -> int:
    """How many passes `batches` makes over `count` texts."""
    return -(-count // batch_size)


def sorted_passes(tokenizer, texts: list[str], text_pairs: list[str] | None, batch_size: int,
                  max_length: int, forward: Callable[[dict], tuple[torch.Tensor, ...]],
                  tensors: str = "pt") -> tuple[torch.Tensor, ...]:
    """Runs `forward` over `texts` (in their order) in passes of at most `batch_size` and
    puts its outputs (batch dimension first) back in input order.

    The texts are sorted by length first and each pass is padded only to its own longest
    text, so little compute goes to padding. Every runtime of a transformer tier
    (models/loading.py, models/onnx_tier.py) tokenizes here, with `tensors` its array kind
    ("pt" for torch, "np" for ONNX Runtime and OpenVINO), so all of them see the same token
    ids; a long text is first cut to what its `max_length` tokens need (models/long_texts.py).
    """
    outputs: list[torch.Tensor] = []
    for chunk in batches(len(texts), batch_size, length_order(texts, text_pairs)):
        encoded = tokenizer(
            *cut_long_texts(tokenizer, [texts[i] for i in chunk],
                            [text_pairs[i] for i in chunk] if text_pairs else None, max_length),
            truncation=True, max_length=max_length, padding="longest", return_tensors=tensors)
        results = forward(encoded)
        outputs = outputs or [
            torch.empty(len(texts), *r.shape[1:],
                        dtype=torch.float32 if r.is_floating_point() else r.dtype)
            for r in results]
        for output, result in zip(outputs, results):
            output[chunk] = result.cpu().to(output.dtype)
    return tuple(outputs)
