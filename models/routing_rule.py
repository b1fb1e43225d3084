"""The routing rule, the one place it is written: a tier decides a record when its confidence
is at least the tier's threshold; otherwise the record goes on to the next tier. The last
tier (no threshold) decides everything it receives.

The pipeline's routing, the escalation budget, calibrate's replay of the cascade and the
benchmark all call these, so a threshold means the same everywhere (a record exactly at the
threshold is decided). No torch import: commands check their input before torch loads.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

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
