"""Learned deferral: a small post-hoc router that scores how likely a tier's answer is to
differ from the last tier's (Jitkrittum et al., NeurIPS 2023, "When Does Confidence-Based
Cascade Deferral Suffice?").

Max-softmax confidence ranks records only by the tier's own probabilities. The router also
sees what those miss: how long the text is, and how much of it the tier has never seen (the
share of unseen n-grams for the n-gram tier, of words broken into several word pieces or
unknown for a transformer), besides the probabilities, margin and entropy, and for a
multi-exit transformer how sure each inner exit is and whether it already gives the final
answer (a record the model settles early is an easy one). It is a logistic
regression on standardised features, fitted on the last tier's answers over unlabelled texts
(the target is "the last tier answers otherwise": no labels needed, and what the accuracy
guarantee counts). Its confidence is 1 - that probability, so `confidence: learned` routes
by the same rule and threshold semantics as the other measures (models/routing_rule.py).

The features use the tier's logits at temperature 1, so a temperature fitted later does not
move the router's scores. Saved as JSON (`save_router`): a dozen
numbers, no pickle, read by every worker with the tier's model.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import fsspec
import torch

ROUTER_FORMAT = "beam-cascade-router/1"
L2_PENALTY = 0.01  # on the standardised weights: a dozen features, a thousand records
MIN_FIT_RECORDS = 100
MIN_DISAGREEMENTS = 10
PROBABILITY_FLOOR = 1e-6


class UnfamiliarText(Protocol):
    """What a tier tells the router of its input: the share of each text it has not seen."""

    def unfamiliar_share(self, texts: list[str], text_pairs: list[str] | None = None
                         ) -> torch.Tensor:
        """Per text, a share in [0, 1] of its pieces the model never learnt (texts)."""


class RouterError(ValueError):
    """A router that cannot be fitted or read; the message says what to do."""


def feature_names(labels: tuple[str, ...], inner_exits: tuple[int, ...] = ()
                  ) -> tuple[str, ...]:
    """The router's inputs, in order: per-class probabilities catch a tier that is surer of
    one class than it should be (all but the last class: they sum to one); then, per inner
    exit (the encoder layers of a multi-exit model's exits before its last), its largest
    probability and whether its answer is the final one."""
    return ("max_prob_logit", "margin", "entropy", "log_words", "unfamiliar_share",
            *(f"probability_{label}" for label in labels[:-1]),
            *(f"exit{layer}_{what}" for layer in inner_exits for what in ("max_prob", "agrees")))


def deferral_inputs(model: UnfamiliarText, logits: torch.Tensor, texts: list[str],
                    text_pairs: list[str] | None = None,
                    inner_exit_logits: torch.Tensor | None = None) -> torch.Tensor:
    """The router's features (texts x features) from the tier's raw logits, its inner exits'
    (exits x texts x labels, for a multi-exit tier) and the texts: the same function on the
    worker and in calibrate, so both score alike."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.max(-1).values.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    top2 = probs.topk(2, dim=-1).values
    plogp = torch.where(probs > 0, probs * probs.log(), torch.zeros_like(probs))
    words = [len(text.split()) + (len(pair.split()) if text_pairs else 0)
             for text, pair in zip(texts, text_pairs or texts)]
    return torch.stack([
        torch.log(top / (1 - top)),
        top2[:, 0] - top2[:, 1],
        1.0 + plogp.sum(-1) / math.log(probs.shape[-1]),
        torch.log1p(torch.tensor(words, dtype=torch.float32)),
        model.unfamiliar_share(texts, text_pairs).float(),
        *probs[:, :-1].T,
        *_exit_features(inner_exit_logits, probs.argmax(-1)),
    ], dim=1)


def _exit_features(inner_exit_logits: torch.Tensor | None, final: torch.Tensor
                   ) -> list[torch.Tensor]:
    """Per inner exit: its largest probability, and 1 where its answer is the final one."""
    if inner_exit_logits is None:
        return []
    features = []
    for logits in inner_exit_logits:
        probs = torch.softmax(logits.float(), dim=-1)
        features += [probs.max(-1).values, (probs.argmax(-1) == final).float()]
    return features


def unfamiliar_word_share(tokenizer: Any, texts: list[str],
                          text_pairs: list[str] | None = None) -> torch.Tensor:
    """For a transformer tier: the share of each text's words its tokenizer breaks into
    several pieces or maps to the unknown token (words it has no piece for)."""
    encoded = tokenizer(texts, text_pairs, add_special_tokens=False, truncation=False)
    unknown = tokenizer.unk_token_id
    shares = []
    for i, ids in enumerate(encoded["input_ids"]):
        pieces: dict[tuple[int, int], list[int]] = {}
        for position, word in enumerate(encoded.word_ids(i)):
            if word is not None:
                sequence = encoded.sequence_ids(i)[position] or 0
                pieces.setdefault((sequence, word), []).append(ids[position])
        unfamiliar = sum(len(p) > 1 or unknown in p for p in pieces.values())
        shares.append(unfamiliar / len(pieces) if pieces else 0.0)
    return torch.tensor(shares)


@dataclass(frozen=True)
class Router:
    """Logistic regression on standardised features; `confidences` is one minus its
    probability that the last tier answers otherwise."""

    tier: str
    labels: tuple[str, ...]
    inner_exits: tuple[int, ...]  # a multi-exit tier's exits before its last; () otherwise
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    fitted_on: int  # unlabelled records
    disagreements: int  # ... on which the last tier answered otherwise

    def disagreement_probability(self, inputs: torch.Tensor) -> torch.Tensor:
        def vector(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.double)
        standardised = (inputs.double() - vector(self.mean)) / vector(self.scale)
        return torch.sigmoid(standardised @ vector(self.weights) + self.bias)

    def confidences(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per record, in [0, 1], higher when the tier's answer is likelier to stand."""
        return (1.0 - self.disagreement_probability(inputs)).float()


def fit_router(tier: str, labels: tuple[str, ...], inputs: torch.Tensor,
               disagrees: torch.Tensor, inner_exits: tuple[int, ...] = ()) -> Router:
    """Fits the router on `inputs` (records x features) and whether the last tier answered
    otherwise on each; refuses too little data to learn from."""
    records, disagreements = len(disagrees), int(disagrees.sum())
    if records < MIN_FIT_RECORDS or min(disagreements, records - disagreements) < \
            MIN_DISAGREEMENTS:
        raise RouterError(
            f"tier {tier!r}: {records} unlabelled records with {disagreements} disagreements "
            f"with the last tier are too few to fit its router (at least {MIN_FIT_RECORDS} "
            f"records and {MIN_DISAGREEMENTS} disagreements, and as many agreements); give "
            "more --unlabelled records, or use confidence: max_prob")
    x = inputs.double()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    standardised = (x - mean) / scale
    weights = torch.zeros(x.shape[1], dtype=torch.double, requires_grad=True)
    bias = torch.zeros((), dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=500, line_search_fn="strong_wolfe")
    target = disagrees.double()

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(
            standardised @ weights + bias, target) + L2_PENALTY * weights.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return Router(tier, tuple(labels), tuple(inner_exits), feature_names(labels, inner_exits),
                  tuple(mean.tolist()),
                  tuple(scale.tolist()), tuple(weights.detach().tolist()),
                  float(bias.detach()), records, disagreements)


def ranking_auc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """The probability that a random positive scores above a random negative (ties count
    half): how well a score ranks the records the last tier answers otherwise."""
    ranks = _average_ranks(scores.double())
    positive = int(positives.sum())
    negative = len(positives) - positive
    if not positive or not negative:
        return float("nan")
    return ((ranks[positives].sum() - positive * (positive + 1) / 2) /
            (positive * negative)).item()


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing their average rank."""
    unique, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts.double() - 1) / 2)[inverse]


def save_router(router: Router, path: str) -> None:
    """Writes the router as JSON (local path or fsspec URL)."""
    with fsspec.open(path, "w", encoding="utf-8") as f:
        json.dump({"format": ROUTER_FORMAT, **asdict(router)}, f, indent=1)


def load_router(path: str) -> Router:
    """Reads a router `save_router` wrote; says what is wrong with any other file."""
    try:
        with fsspec.open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise RouterError(f"router file {path!r} does not exist; rerun beam-cascade calibrate "
                          "(it writes the router beside the tuned config)") from None
    except ValueError as e:
        raise RouterError(f"router file {path!r} is not JSON ({e}); rerun beam-cascade "
                          "calibrate") from None
    if not isinstance(raw, dict) or raw.pop("format", None) != ROUTER_FORMAT:
        raise RouterError(f"{path!r} is not a beam-cascade router ({ROUTER_FORMAT}); rerun "
                          "beam-cascade calibrate")
    try:
        router = Router(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in raw.items()})
    except TypeError as e:
        raise RouterError(f"router file {path!r} is malformed ({e}); rerun beam-cascade "
                          "calibrate") from None
    expected = feature_names(router.labels, router.inner_exits)
    sizes = {len(router.features), len(router.mean), len(router.scale), len(router.weights)}
    if sizes != {len(expected)} or router.features != expected:
        raise RouterError(f"router file {path!r} holds {sorted(sizes)} values per feature list "
                          f"for the {len(expected)} features {list(expected)}; rerun "
                          "beam-cascade calibrate")
    return router
