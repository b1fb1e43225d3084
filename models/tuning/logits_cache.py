"""Each tier's logits on the dev and unlabelled texts, computed once per machine and kept in
the user's cache (`logits_folder`, beside the model cache): a second calibrate (another
policy, other batch sizes, another --output or --report) skips the scoring; the key holds the
model folder's files (names, sizes, times), the texts and the settings that change the
logits, so a retrained or re-set tier is scored afresh."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Callable

import torch
from tqdm import tqdm

from models.batching import batches
from models.config import TierConfig
from models.model_cache import cache_root, local_model_folder
from models.tier import Tier
from models.tuning.progress import step


def logits_folder() -> str:
    """Where calibrate keeps logits: `logits` in the model cache's root
    ($BEAM_CASCADE_MODEL_CACHE, else ~/.cache/beam-cascade/models), shared by every report
    folder and checkout of this machine."""
    return os.path.join(cache_root(), "logits")


def cached_logits(tier: TierConfig, texts: list[str], text_pairs: list[str] | None, what: str,
                  cache: str, model: Tier) -> torch.Tensor:
    """The tier's logits on `what` texts (dev, unlabelled) at every exit (shape exits x
    records x labels; one exit for most tiers), computed once per model folder, data and
    length."""
    key = hashlib.sha256(json.dumps([
        "exits x records x labels", folder_fingerprint(local_model_folder(tier.model)),
        tier.max_length, tier.runtime,
        tier.quantize, getattr(model, "keep_tokens", None), texts, text_pairs,
    ]).encode()).hexdigest()[:20]
    path = os.path.join(cache, f"{tier.name}-{key}.pt")
    if os.path.exists(path):
        step(f"tier {tier.name}: logits on the {len(texts)} {what} texts from the cache")
        return torch.load(path)
    step(f"tier {tier.name}: logits on the {len(texts)} {what} texts")
    chunks = tqdm(list(batches(len(texts), 64)), desc=f"{tier.name}: logits", unit="batch",
                  leave=False, disable=None)
    logits = torch.cat([model.exit_logits([texts[i] for i in chunk],
                                          [text_pairs[i] for i in chunk]
                                          if text_pairs else None)
                        for chunk in chunks], dim=1)
    save_atomically(path, lambda temporary: torch.save(logits, temporary))
    return logits


def save_atomically(path: str, save: Callable[[str], None]) -> None:
    """`save(temporary)` writes the file beside `path`, then it is renamed over `path`: a
    cache shared by the processes of a machine never shows another one half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # the final name as suffix: torch.save refuses a dotted name without an extension
    handle, temporary = tempfile.mkstemp(prefix=".saving-", suffix=os.path.basename(path),
                                         dir=os.path.dirname(path) or ".")
    os.close(handle)
    try:
        save(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def folder_fingerprint(folder: str) -> list:
    """Names, sizes and modification times of a model folder's files: a retrained model in
    the same folder gets new logits."""
    return sorted((name, os.path.getsize(os.path.join(folder, name)),
                   os.path.getmtime(os.path.join(folder, name)))
                  for name in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, name)))
