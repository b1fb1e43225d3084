"""Seconds per record measured on this machine, kept across calibrate runs.

Timing every batch size, round after round, was most of a calibrate run; the costs of one
model on one machine do not change from one run to the next. Each measurement is kept in
the user's cache (`costs_folder`, beside the logits and the model cache), keyed by all that
changes it: the model folder's files, the tier's settings that change its cost (runtime,
precision, length, early exit, token dropping, device), the batch sizes and rounds, torch's
threads and version, the machine (CPU model, usable CPUs) and the texts timed (how many, how
many characters). Anything else measures afresh; so does `calibrate --remeasure`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from typing import Sequence

import torch

from models.config import TierConfig
from models.cpus import available_cpus
from models.model_cache import cache_root, local_model_folder
from models.throughput import seconds_per_record
from models.tier import Tier
from models.tuning.logits_cache import folder_fingerprint, save_atomically
from models.tuning.progress import step


def costs_folder() -> str:
    """Where measured costs are kept: `costs` in the model cache's root
    ($BEAM_CASCADE_MODEL_CACHE, else ~/.cache/beam-cascade/models)."""
    return os.path.join(cache_root(), "costs")


def cached_costs(tier: TierConfig, model: Tier, texts: Sequence[str],
                 text_pairs: Sequence[str] | None, batch_sizes: Sequence[int], repeats: int,
                 which: str, remeasure: bool = False) -> dict[int, float]:
    """The tier's seconds per record at each batch size on `texts` (`seconds_per_record`),
    reused when this machine measured the same; `which` names the texts in the progress
    line. `remeasure` times again and replaces what was kept."""
    key = cost_key(tier, model, texts, text_pairs, batch_sizes, repeats)
    path = os.path.join(costs_folder(), f"{tier.name}-{_digest(key)}.json")
    kept = None if remeasure else _read(path)
    if kept is not None:
        step(f"costs of tier {tier.name} ({which}): reused from {kept['measured_at']} "
             "(--remeasure times them again)")
        return {int(size): seconds for size, seconds in kept["seconds_per_record"].items()}
    step(f"tier {tier.name}: timing batch sizes {list(batch_sizes)} on {which}, "
         f"{repeats} rounds")
    costs = seconds_per_record(model, texts, batch_sizes, repeats, text_pairs,
                               progress=f"{tier.name}: timing")
    entry = {"measured_at": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
             "seconds_per_record": {str(size): s for size, s in costs.items()}, "key": key}
    save_atomically(path, lambda temporary: _write_json(entry, temporary))
    return costs


def cost_key(tier: TierConfig, model: Tier, texts: Sequence[str],
             text_pairs: Sequence[str] | None, batch_sizes: Sequence[int],
             repeats: int) -> dict:
    """Everything a tier's measured seconds per record depend on, as JSON values."""
    return {
        "model_files": folder_fingerprint(local_model_folder(tier.model)),
        "max_length": tier.max_length, "runtime": tier.runtime, "quantize": tier.quantize,
        "device": str(getattr(model, "device", tier.device)),
        "early_exit": repr(getattr(model, "early_exit", None)),
        "keep_tokens": getattr(model, "keep_tokens", None),
        "batch_sizes": list(batch_sizes), "repeats": repeats,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": cpu_model(), "usable_cpus": available_cpus(),
        "texts": len(texts), "characters": sum(map(len, texts)),
        "pair_characters": sum(map(len, text_pairs)) if text_pairs else None,
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what Python's platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _read(path: str) -> dict | None:
    """The kept measurement, or None when there is none (or it cannot be read: measure)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(entry: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(entry, f, indent=1)
