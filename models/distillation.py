"""Distillation: a cheap tier trained on a teacher tier's answers over unlabelled text.

A cascade is only as fast as its first tier is good at knowing which records it gets right.
Trained on gold labels alone, the n-gram tier learns the labels' hard edges; trained also on
the teacher's probabilities (Hinton et al. 2015) it learns where the teacher itself is unsure,
so its confidence ranks records more like the tier it escalates to. Unlabelled text is
plentiful (a job's own nightly input), so the teacher labels as much of it as one gives.

The teacher runs once over the unlabelled texts in sorted passes; its probabilities (softened
by `temperature`) become the soft targets of those texts, and labelled examples, when given,
keep their gold labels as one-hot targets (models/training.py fits both alike).
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from models.batching import batches
from models.datasets import LabelledTexts, UnlabelledTexts
from models.tier import Tier

TEACHER_PASS = 1024  # texts per teacher call: sorted by length inside (models/batching.py)


def teacher_probabilities(teacher: Tier, texts: UnlabelledTexts,
                          temperature: float = 1.0) -> torch.Tensor:
    """The teacher's probabilities over `texts` (texts x labels), at `temperature`."""
    chunks = list(batches(len(texts.texts), TEACHER_PASS))
    logits = [teacher.logits([texts.texts[i] for i in chunk],
                             [texts.text_pairs[i] for i in chunk] if texts.text_pairs else None)
              for chunk in tqdm(chunks, desc="teacher: labelling unlabelled texts",
                                unit="call", disable=None)]
    return torch.softmax(torch.cat(logits) / temperature, dim=-1)


def distillation_set(unlabelled: UnlabelledTexts, probabilities: torch.Tensor,
                     label_names: tuple[str, ...],
                     labelled: LabelledTexts | None = None) -> LabelledTexts:
    """The training set: the unlabelled texts with the teacher's probabilities as targets,
    then the labelled ones (if any) with one-hot targets of their gold labels (or the soft
    targets they already have)."""
    if probabilities.shape != (len(unlabelled.texts), len(label_names)):
        raise ValueError(f"the teacher gives {tuple(probabilities.shape)} probabilities for "
                         f"{len(unlabelled.texts)} texts and {len(label_names)} labels")
    texts, pairs = list(unlabelled.texts), unlabelled.text_pairs
    targets = probabilities.tolist()
    ids = probabilities.argmax(-1).tolist()
    if labelled is not None:
        if (labelled.text_pairs is None) != (pairs is None):
            raise ValueError("the labelled and unlabelled texts must both be pairs, or both "
                             "single texts")
        texts += labelled.texts
        pairs = pairs + labelled.text_pairs if pairs is not None else None
        targets += (labelled.soft_targets if labelled.soft_targets is not None
                    else torch.eye(len(label_names))[labelled.label_ids].tolist())
        ids += labelled.label_ids
    return LabelledTexts(texts, ids, label_names, pairs, targets)
