"""The tier folders checked against the config before a job starts (`validate_models`).

Each folder must hold a sequence-classification checkpoint (models/checkpoint.py
`inspect_checkpoint`: config, weights, tokenizer, code), the tier's settings must fit it
(max_length, exits, text pairs, runtime), a learned tier's router must have been fitted for
it, and all tiers must share one label set: a bad folder fails on the launcher, not on the
workers. The commands import this before their config is known right, so torch and
transformers load when a folder is checked, not when this module is imported
(tests/test_startup.py).
"""
from __future__ import annotations

from models.config import CascadeConfig, ConfigError, TierConfig
from models.names import LEARNED_CONFIDENCE, NGRAM_MODEL_TYPE
from models.weights import CheckpointError


def validate_models(config: CascadeConfig, routers_fitted: bool = True) -> tuple[str, ...]:
    """Opens every tier's config.json; returns the label names the tiers share.

    Refuses a folder that is not a sequence-classification checkpoint, a max_length beyond
    the model's positions, tiers whose labels (names or order) differ and, unless
    `routers_fitted` is False (calibrate fits them), a learned router that is missing or
    does not fit its tier.
    """
    from models.checkpoint import inspect_checkpoint  # torch: see the docstring
    labels: tuple[str, ...] | None = None
    first = None
    for tier in config.tiers:
        try:
            info = inspect_checkpoint(tier.model, tier.allow_pickle_weights,
                                      tier.trust_remote_code)
        except CheckpointError as e:
            raise ConfigError(f"tier {tier.name!r}: {e}") from None
        if len(info.labels) < 2:
            raise ConfigError(f"tier {tier.name!r}: {tier.model!r} has {len(info.labels)} "
                              "label(s); a classifier tier needs at least 2")
        if info.max_length and tier.max_length > info.max_length:
            raise ConfigError(
                f"tier {tier.name!r}: max_length {tier.max_length} exceeds the "
                f"{info.max_length} tokens {tier.model!r} accepts; lower max_length")
        _check_exits(tier, info.exit_layers)
        if routers_fitted:
            _check_router(tier, info.labels, info.exit_layers[:-1])
        _check_pairs(tier, info.trained_on_pairs, config.text_pair_field)
        adaptive = [key for key in ("quantize", "keep_tokens", "length_budget")
                    if getattr(tier, key) is not None]
        adaptive += [f"runtime: {tier.runtime}"] if tier.runtime != "torch" else []
        if adaptive and info.model_type == NGRAM_MODEL_TYPE:
            raise ConfigError(f"tier {tier.name!r}: {', '.join(adaptive)} apply to transformer "
                              f"tiers; {tier.model!r} is an n-gram model, already cheap")
        if tier.keep_tokens is not None or tier.length_budget is not None:
            from models.layerwise import TOKEN_DROPPING, check_layerwise
            try:
                check_layerwise(info.model_type, TOKEN_DROPPING)
            except CheckpointError as e:
                raise ConfigError(f"tier {tier.name!r}: {e}") from None
        if labels is None:
            labels, first = info.labels, tier
        elif info.labels != labels:
            raise ConfigError(
                f"tiers disagree on labels: {first.name!r} ({first.model}) has {list(labels)}, "
                f"{tier.name!r} ({tier.model}) has {list(info.labels)}; every tier must predict "
                "the same labels with the same ids (config.json id2label)")
    assert labels is not None
    return labels


def _check_router(tier: TierConfig, labels: tuple[str, ...],
                  inner_exits: tuple[int, ...]) -> None:
    """A learned tier's router exists, reads, and was fitted for these labels and exits."""
    if tier.confidence != LEARNED_CONFIDENCE:
        return
    if tier.router is None:
        raise ConfigError(f"tier {tier.name!r}: confidence: learned needs its router; run "
                          "beam-cascade calibrate with --unlabelled records (it fits the "
                          "router and writes its path into the tuned config)")
    from models.learned_deferral import RouterError, load_router  # torch: see the docstring
    try:
        router = load_router(tier.router)
    except (RouterError, OSError) as e:
        raise ConfigError(f"tier {tier.name!r}: {e}") from None
    if router.labels != labels:
        raise ConfigError(f"tier {tier.name!r}: its router {tier.router!r} was fitted for "
                          f"labels {list(router.labels)}, the tiers predict {list(labels)}; "
                          "rerun beam-cascade calibrate")
    if router.inner_exits != inner_exits:
        raise ConfigError(f"tier {tier.name!r}: its router {tier.router!r} reads the inner "
                          f"exits {list(router.inner_exits)}, {tier.model!r} has "
                          f"{list(inner_exits)}; rerun beam-cascade calibrate")


def _check_pairs(tier: TierConfig, trained_on_pairs: bool | None,
                 text_pair_field: str | None) -> None:
    """A model trained on pairs scores pairs, and one trained on single texts single texts:
    the other way it runs, silently worse (the token type ids, the joined n-grams differ)."""
    if trained_on_pairs is None or trained_on_pairs == bool(text_pair_field):
        return
    if trained_on_pairs:
        raise ConfigError(f"tier {tier.name!r}: {tier.model!r} was trained on text pairs but "
                          "the config has no text_pair_field; set text_pair_field to the field "
                          "holding the second text")
    raise ConfigError(f"tier {tier.name!r}: {tier.model!r} was trained on single texts but the "
                      f"config scores pairs (text_pair_field {text_pair_field!r}); train it with "
                      f"`beam-cascade train --text_pair_field {text_pair_field}`, or remove "
                      "text_pair_field")


def _check_exits(tier: TierConfig, exit_layers: tuple[int, ...]) -> None:
    """Early-exit settings need a multi-exit model with as many exits as temperatures."""
    if (tier.exit_threshold is not None or tier.exit_temperatures) and not exit_layers:
        raise ConfigError(
            f"tier {tier.name!r}: exit_threshold/exit_temperatures need a multi-exit model, "
            f"and {tier.model!r} has no inner exits; train one with `beam-cascade train "
            "--exits 2,4,6` or remove those keys")
    if tier.exit_temperatures and len(tier.exit_temperatures) != len(exit_layers):
        raise ConfigError(
            f"tier {tier.name!r}: {len(tier.exit_temperatures)} exit_temperatures for the "
            f"{len(exit_layers)} exits (layers {list(exit_layers)}) of {tier.model!r}; "
            "give one per exit, or rerun beam-cascade calibrate")
