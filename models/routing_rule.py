"""The routing rule, the one place it is written: a tier decides a record when its confidence
is at least the tier's threshold; otherwise the record goes on to the next tier. The last
tier (no threshold) decides everything it receives.

The pipeline's routing, the escalation budget, calibrate's replay of the cascade and the
benchmark all call these, so a threshold means the same everywhere (a record exactly at the
threshold is decided). No torch import: commands check their input before torch loads.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch


def decides(confidence: float, threshold: float | None) -> bool:
    """Whether a tier with `threshold` keeps a record of this confidence."""
    return threshold is None or confidence >= threshold


def decided_mask(confidences: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """`decides` for a tensor of confidences: True where the tier keeps the record."""
    if threshold is None:
        return confidences.new_ones(confidences.shape).bool()
    return confidences >= threshold


def escalated_indices(confidences: Sequence[float], threshold: float | None) -> list[int]:
    """The positions of the records the tier sends on."""
    return [i for i, c in enumerate(confidences) if not decides(c, threshold)]


def confidence_bin(confidence: float, bins: int) -> int:
    """A confidence's bin of width 1/bins (a confidence of 1 gets bin `bins`): how the
    escalation budget and the shift test count confidences in bounded memory."""
    return min(bins, max(0, int(confidence * bins)))


def audited(tier: str, record_id: Any, rate: float | None) -> bool:
    """Whether a record a tier decides also goes to the last tier for the audit: a hash of
    tier and id below `rate`, so the sample is the same on every runner, retry and rerun,
    and independent of the record's confidence (a uniform sample of the tier's decisions)."""
    if not rate:
        return False
    digest = hashlib.blake2b(json.dumps([tier, record_id]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2 ** 64
