"""Choosing each tier's runtime and precision on dev data: what `calibrate
--compare_runtimes` measures before it tunes the thresholds.

A transformer tier can run on PyTorch, on ONNX Runtime or OpenVINO in fp32 (the same
predictions; OpenVINO where it is installed) or on ONNX Runtime in int8, of the attention
only or everywhere (faster, a little less accurate: a record's answer can flip). Each
variant is timed on the dev texts and compared with the tier's fp32 answers; an int8 variant
is kept only when the upper confidence bound on its accuracy drop against fp32
(models/guarantee.py `drop_bound`: the labels' verdict on the records where the two disagree,
and the disagreement rate, measured on the unlabelled sample when there is one) is within
the budget. Choosing on a bound rather than on dev accuracy alone keeps a lucky dev split
from picking an int8 variant that loses more on new data.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Callable

import torch

from models.config import CascadeConfig, TierConfig
from models.datasets import LabelledTexts, UnlabelledTexts
from models.guarantee import drop_bound
from models.loading import load_configured_tier
from models.model_cache import local_model_folder
from models.ngram import is_ngram_checkpoint
from models.operating_points import Policy
from models.throughput import seconds_per_record

VARIANTS = (("torch", None), ("onnxruntime", None), ("onnxruntime", "int8_attention"),
            ("onnxruntime", "int8"))
OPENVINO = ("openvino", None)


def variants_here() -> tuple[tuple[str, str | None], ...]:
    """VARIANTS, and OpenVINO fp32 where this machine has it (an optional dependency)."""
    return VARIANTS + ((OPENVINO,) if importlib.util.find_spec("openvino") else ())


@dataclass(frozen=True)
class RuntimeVariant:
    """One way to run a tier, as measured on dev."""

    runtime: str
    quantize: str | None
    accuracy: float
    agreement: float  # share of dev (or unlabelled) records answered as the fp32 tier does
    drop_bound_points: float  # upper bound on the accuracy lost against the fp32 tier
    seconds_per_record: float
    chosen: bool = False

    @property
    def name(self) -> str:
        return f"{self.runtime} {self.quantize or 'fp32'}"


def can_compare(tier: TierConfig) -> bool:
    """Only a plain transformer tier has runtime variants (early exit and token dropping run
    on PyTorch; an n-gram tier has no other runtime)."""
    if any(getattr(tier, key) is not None
           for key in ("exit_threshold", "keep_tokens", "length_budget")):
        return False
    with open(os.path.join(local_model_folder(tier.model), "config.json"),
              encoding="utf-8") as f:
        return not is_ngram_checkpoint(json.load(f))


def choose_runtimes(config: CascadeConfig, dev: LabelledTexts,
                    unlabelled: UnlabelledTexts | None, policy: Policy, max_int8_drop: float,
                    repeats: int, say: Callable[[str], None] = print,
                    int8_fallback: bool = False
                    ) -> tuple[CascadeConfig, Policy, dict[str, list[RuntimeVariant]]]:
    """Each plain transformer tier set to its fastest variant within `max_int8_drop` points;
    the policy, with an int8 last tier, keeps the rest of its drop budget for the cascade.

    The promise of an accuracy-drop budget is against the last tier as the user gave it
    (fp32): an int8 last tier may use at most half of that budget, and the cascade is tuned
    against it with what remains, so the two drops together stay within the budget.

    With `int8_fallback`, a last tier whose int8 variants were all refused gets the fastest
    of them as a tier of its own just before it (`int8_fallback_tier`).
    """
    tiers, measured = [], {}
    for k, tier in enumerate(config.tiers):
        if not can_compare(tier):
            tiers.append(tier)
            continue
        last = k == len(config.tiers) - 1
        allowed = max_int8_drop
        if last and policy.max_accuracy_drop is not None:
            allowed = min(allowed, policy.max_accuracy_drop / 2)
        names = ", ".join(f"{runtime} {quantize or 'fp32'}"
                          for runtime, quantize in variants_here())
        say(f"tier {tier.name}: answers and timing of {names} (exported on first use), "
            f"{repeats} rounds")
        variants = choose_variant(measure_variants(tier, dev, unlabelled, tier.batch_size,
                                                   repeats, policy.confidence), allowed)
        best = next(v for v in variants if v.chosen)
        say(f"tier {tier.name}: " + "; ".join(
            f"{v.name} {v.accuracy:.2%}, drop bound {v.drop_bound_points:.2f} points, "
            f"{1000 * v.seconds_per_record:.2f} ms/record" for v in variants)
            + f": {best.name} chosen"
            + (" (its workers need openvino: pip install 'beam-cascade[openvino]')"
               if best.runtime == "openvino" else ""))
        measured[tier.name] = variants
        fallback = int8_fallback_tier(tier, variants, config) if last and int8_fallback else None
        if fallback is not None:
            say(f"tier {tier.name}: its {fallback.quantize} copy goes before it as tier "
                f"{fallback.name}, deciding the records it is sure of")
            tiers.append(fallback)
        tiers.append(dataclasses.replace(tier, runtime=best.runtime, quantize=best.quantize))
        if last and best.quantize and policy.max_accuracy_drop is not None:
            policy = dataclasses.replace(
                policy, max_accuracy_drop=policy.max_accuracy_drop - best.drop_bound_points)
    return dataclasses.replace(config, tiers=tuple(tiers)), policy, measured


def int8_fallback_tier(tier: TierConfig, variants: list[RuntimeVariant],
                       config: CascadeConfig) -> TierConfig | None:
    """The last tier's fastest int8 variant as a tier of its own, to go just before it;
    None when an int8 variant was chosen, none is faster than the variant chosen, or the
    name is taken.

    int8 flips a share of the answers, nearly all of them on records it is unsure of; as a
    tier it decides only the records it is sure of and sends the rest to the same model in
    fp32. Its threshold is tuned with the others under the accuracy guarantee, which is
    measured against the last tier in fp32, so the cascade keeps its promise at nearly int8's
    cost (SST-2: 3.19x the stock handler at fp32's dev accuracy, docs/benchmarks.md);
    calibrate keeps the tier only where the cascade is cheaper with it
    (models/tuning/choice.py `tiers_to_keep`)."""
    chosen = next(v for v in variants if v.chosen)
    faster = [v for v in variants
              if v.quantize and v.seconds_per_record < chosen.seconds_per_record]
    name = f"{tier.name}_int8"
    if chosen.quantize or not faster or name in config.tier_names:
        return None
    fastest = min(faster, key=lambda v: v.seconds_per_record)
    # How the model runs is kept (device, batching, timeout); how the last tier is routed
    # or audited is not the copy's: calibrate sets its threshold and temperature.
    return dataclasses.replace(
        tier, name=name, runtime=fastest.runtime, quantize=fastest.quantize, threshold=None,
        temperature=1.0, max_escalation_rate=None, audit_rate=None, max_disagreement=None,
        reference_confidences=None, reference_records=None, router=None)


def measure_variants(tier: TierConfig, dev: LabelledTexts, unlabelled: UnlabelledTexts | None,
                     batch_size: int, repeats: int, confidence: float) -> list[RuntimeVariant]:
    """Every variant's dev accuracy, agreement with fp32, drop bound and seconds per record
    (interleaved medians), all in sorted passes of `batch_size` as the job runs them: int8
    quantises activations with each pass's own scale, so its answers depend on the passes."""
    labels = torch.tensor(dev.label_ids)
    models = {variant: load_configured_tier(
                  dataclasses.replace(tier, runtime=variant[0], quantize=variant[1]),
                  batch_size=batch_size) for variant in variants_here()}
    answers = {v: m.logits(dev.texts, dev.text_pairs).argmax(-1) for v, m in models.items()}
    on_unlabelled = {v: m.logits(unlabelled.texts, unlabelled.text_pairs).argmax(-1)
                     for v, m in models.items()} if unlabelled else None
    costs = {v: seconds_per_record(m, dev.texts, [batch_size], repeats, dev.text_pairs,
                                   progress=f"{tier.name}: timing {v[0]} {v[1] or 'fp32'}"
                                   )[batch_size] for v, m in models.items()}
    reference = VARIANTS[0]
    variants = []
    for v in models:
        compared = on_unlabelled or answers
        bound = drop_bound(answers[v], answers[reference], labels,
                           (on_unlabelled[v], on_unlabelled[reference]) if on_unlabelled
                           else None, confidence)
        variants.append(RuntimeVariant(
            runtime=v[0], quantize=v[1],
            accuracy=(answers[v] == labels).double().mean().item(),
            agreement=(compared[v] == compared[reference]).double().mean().item(),
            drop_bound_points=100 * bound.bound,
            seconds_per_record=costs[v]))
    return variants


def choose_variant(variants: list[RuntimeVariant], max_drop_points: float
                   ) -> list[RuntimeVariant]:
    """The variants with the fastest one whose drop bound is within `max_drop_points` marked
    chosen (fp32 variants always qualify: they give the same answers)."""
    eligible = [v for v in variants
                if v.quantize is None or v.drop_bound_points <= max_drop_points]
    best = min(eligible, key=lambda v: v.seconds_per_record)
    return [dataclasses.replace(v, chosen=v is best) for v in variants]
