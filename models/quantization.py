"""Dynamic int8 quantisation of a tier's Linear layers, for CPU inference.

Weights are stored in int8 and activations are quantised on the fly per batch (PyTorch's
dynamic quantisation), so no calibration data is needed. On SST-2 with the reference MiniLM
tier 2 (bench/results/mechanisms.md) quantising every Linear layer roughly doubles CPU
throughput but costs about a point of accuracy; quantising only the attention projections
costs nothing measurable and gains less. Only CPU kernels exist for these layers.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from models.names import QUANTIZATION_SCHEMES

SCHEMES = QUANTIZATION_SCHEMES


def quantize(model: nn.Module, scheme: str) -> nn.Module:
    """A copy of `model` whose Linear layers (all of them for "int8", the self-attention's
    query/key/value/output ones for "int8_attention") run in int8."""
    if scheme == "int8":
        targets: set = {nn.Linear}
    elif scheme == "int8_attention":
        targets = {name for name, module in model.named_modules()
                   if isinstance(module, nn.Linear) and ".attention." in name}
    else:
        raise ValueError(f"unknown quantisation {scheme!r}; use one of {SCHEMES}")
    with warnings.catch_warnings():  # torch.ao's deprecation and per-layer notices
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, targets, dtype=torch.qint8)
