"""Difficulty-aware training (CascadeBERT, arXiv 2012.14682): teach a cheap tier to be less
confident on the instances it gets wrong, so that its confidence ranks difficulty and the
cascade escalates the right records.

Difficulty labels come from the model's own correctness on held-out folds: the training set
is split into k folds, a model trained on the other folds scores each fold, and an instance it
gets wrong is "hard". The final model then adds a margin ranking loss over every (easy, hard)
pair in a batch: the easy one's confidence should exceed the hard one's by `margin`.
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from models.datasets import LabelledTexts


def ranking_loss(logits: torch.Tensor, hard: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over the batch's (easy, hard) pairs of max(0, margin - (conf_easy - conf_hard)),
    with conf the largest class probability; 0 when the batch lacks easy or hard ones."""
    conf = torch.softmax(logits, dim=-1).max(dim=-1).values
    easy_conf, hard_conf = conf[~hard], conf[hard]
    if not len(easy_conf) or not len(hard_conf):
        return logits.new_zeros(())
    return torch.relu(margin - (easy_conf[:, None] - hard_conf[None, :])).mean()


Predictor = Callable[[LabelledTexts, LabelledTexts], list[int]]


def difficulty_labels(train: LabelledTexts, folds: int, seed: int,
                      fit_and_predict: Predictor) -> list[bool]:
    """hard[i]: the model fitted without i's fold mislabels example i.

    `fit_and_predict(train_part, held_out)` trains a model like the final one (without the
    regulariser) and returns its predicted label ids for `held_out`'s texts (and pairs).
    """
    if folds < 2:
        raise ValueError(f"difficulty-aware training needs at least 2 folds, got {folds}")
    order = list(range(len(train.texts)))
    random.Random(seed).shuffle(order)
    hard = [False] * len(order)
    for fold in range(folds):
        held_out = order[fold::folds]
        held = set(held_out)
        rest = [i for i in order if i not in held]
        predicted = fit_and_predict(train.subset(rest), train.subset(held_out))
        for i, label in zip(held_out, predicted):
            hard[i] = label != train.label_ids[i]
    return hard
