"""Token dropping inside a tier (Length-Adaptive Transformer, Kim & Cho 2021; Dynamic-TinyBERT).

After each encoder layer a length configuration keeps only a share of each text's tokens,
those that received the most attention in that layer (summed over heads and over the real
query tokens), so later layers run on shorter sequences; [CLS], which the classifier reads,
is always kept. Shares are of the text's own token count, so one configuration fits texts of
any length. `length_sweep` measures accuracy and compute for a family of configurations on
labelled data, for `calibrate` to choose one within a compute budget.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from models.layerwise import TOKEN_DROPPING, LayerInputs, Layerwise

def forward_dropping_tokens(model, encoded: dict, keep: tuple[float, ...]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a classifier (models/layerwise.py) that keeps, after layer i (1-based), the
    share keep[i-1] of each text's tokens; and the number of token-layers each row cost.

    The layers run with the model's own attention (SDPA: fast, but it returns no attention
    probabilities); where tokens are dropped, the probabilities are recomputed from the
    queries and keys the layer computed anyway, captured by hooks: one small matrix product
    instead of the slower eager attention on every layer.
    """
    network = Layerwise(model, TOKEN_DROPPING)
    hidden, inputs = network.start(encoded)
    lengths = inputs.padding.sum(dim=1)
    cost = torch.zeros(len(lengths), dtype=torch.long, device=hidden.device)
    for number, layer in enumerate(network.layers, start=1):
        cost += inputs.padding.sum(dim=1)
        if number > len(keep) or keep[number - 1] >= 1.0:
            hidden = network.run(layer, hidden, inputs)
            continue
        with _captured_queries_and_keys(*network.query_and_key(layer)) as captured:
            hidden = network.run(layer, hidden, inputs)
        probs = _attention_probabilities(captured["query"], captured["key"], inputs,
                                         model.config.num_attention_heads)
        positions, valid = _most_attended(inputs.padding, probs, lengths, keep[number - 1])
        hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
        inputs = network.keep_tokens(hidden, inputs, positions, valid)
    return network.classify(hidden), cost


@contextmanager
def _captured_queries_and_keys(query: torch.nn.Module, key: torch.nn.Module
                               ) -> Iterator[dict[str, torch.Tensor]]:
    """The outputs of a self-attention's query and key projections while inside."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(
        lambda module, args, output, name=name: captured.__setitem__(name, output))
        for name, module in (("query", query), ("key", key))]
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()


def _attention_probabilities(query: torch.Tensor, key: torch.Tensor, inputs: LayerInputs,
                             heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + position bias) per head over the real (unpadded) keys:
    (batch, heads, queries, keys), as the layer's attention computed it."""
    batch, length, width = query.shape
    q = query.view(batch, length, heads, width // heads).transpose(1, 2)
    k = key.view(batch, length, heads, width // heads).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if inputs.position_bias is not None:  # MPNet's, added by its attention too
        scores = scores + inputs.position_bias
    scores = scores.masked_fill(~inputs.padding[:, None, None, :], -math.inf)
    return torch.softmax(scores.float(), dim=-1)


def _most_attended(padding: torch.Tensor, probs: torch.Tensor, lengths: torch.Tensor,
                   share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's most attended tokens' positions, in their original order ([CLS] first),
    and which of them are real (rows keeping fewer than the widest are padded)."""
    received = (probs * padding[:, None, :, None]).sum(dim=(1, 2))
    received = received.masked_fill(~padding, -math.inf)
    received[:, 0] = math.inf
    kept_per_row = torch.ceil(share * lengths).long().clamp(min=1)
    kept_per_row = torch.minimum(kept_per_row, padding.sum(dim=1))
    width = int(kept_per_row.max())
    chosen = received.topk(width, dim=1).indices
    valid = torch.arange(width, device=padding.device)[None, :] < kept_per_row[:, None]
    positions, order = chosen.sort(dim=1)
    return positions, valid.gather(1, order)


def length_family(layers: int) -> list[tuple[float, ...]]:
    """Length configurations to search: keep everything up to a start layer, then multiply
    the kept share by a decay after each later layer (none after the last layer, whose
    [CLS] is all the classifier reads)."""
    configs = []
    for start in range(1, layers):
        for decay in (0.9, 0.8, 0.7, 0.6, 0.5):
            configs.append(tuple(1.0 if i < start else round(decay ** (i - start + 1), 4)
                                 for i in range(1, layers)))
    return configs


@dataclass(frozen=True)
class LengthPoint:
    """One length configuration on labelled data: accuracy and the share of the full
    model's token-layers it ran (the compute that attention and feed-forward layers scale
    with)."""

    keep: tuple[float, ...]
    accuracy: float
    compute_share: float


def length_sweep(model, texts: list[str], text_pairs: list[str] | None, labels: torch.Tensor,
                 configs: list[tuple[float, ...]]) -> list[LengthPoint]:
    """Accuracy and compute share of each configuration on labelled texts; `model` is a
    TierModel (models/loading.py)."""
    full = model.logits_and_costs(texts, text_pairs, ())[1].sum().item()
    points = []
    for keep in configs:
        logits, cost = model.logits_and_costs(texts, text_pairs, keep)
        points.append(LengthPoint(keep, (logits.argmax(-1) == labels).double().mean().item(),
                                  cost.sum().item() / full))
    return points


def best_within_budget(points: list[LengthPoint], budget: float) -> LengthPoint:
    """The most accurate configuration using at most `budget` of the full compute (the
    cheapest among equals); the full model when none fits."""
    fitting = [p for p in points if p.compute_share <= budget + 1e-9]
    if not fitting:
        return max(points, key=lambda p: p.compute_share)
    return max(fitting, key=lambda p: (p.accuracy, -p.compute_share))
