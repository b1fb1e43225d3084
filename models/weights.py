"""What a weights file holds, read from its header alone: names, shapes, and whether it is whole.

A checkpoint whose weights miss a tensor of its architecture still loads in transformers,
with that tensor randomly initialised and only a log line to say so: a tier that answers
confidently and wrongly. A truncated file fails only on the worker. Both are found here on
the launcher in milliseconds, from the safetensors header (8 bytes of length, then JSON), and
compared with the tensors the architecture needs, built on the meta device (no memory).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Mapping

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFE_WEIGHTS = (SAFETENSORS, SAFETENSORS_INDEX)
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
HEADER_LIMIT = 100 * 2 ** 20  # safetensors' own limit on the header's JSON
# Names older checkpoints use for LayerNorm parameters, which transformers renames on load.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}

Shapes = dict[str, tuple[int, ...]]


class CheckpointError(ValueError):
    """A tier folder that cannot be used as a sequence-classification checkpoint."""


class WeightsError(ValueError):
    """A weights file that is damaged or does not fit its architecture; the message says
    which tensors and what to do."""


def safetensors_shapes(path: str) -> Shapes:
    """Each tensor's shape, from the header; checks that the file holds every byte the
    header promises (a truncated download or copy is refused here)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path!r} is {size} bytes, too short to be a safetensors file")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > min(HEADER_LIMIT, size - 8):
            raise WeightsError(f"{path!r} is damaged or truncated: its header claims "
                               f"{header_length} bytes of a {size}-byte file")
        try:
            header = json.loads(f.read(header_length))
        except ValueError as e:
            raise WeightsError(f"{path!r} is damaged: its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path!r} is damaged: its header is not a JSON object")
    header.pop("__metadata__", None)
    try:
        shapes = {name: tuple(int(d) for d in info["shape"]) for name, info in header.items()}
        data_end = max((int(info["data_offsets"][1]) for info in header.values()), default=0)
    except (TypeError, KeyError, ValueError, IndexError):
        raise WeightsError(f"{path!r} is damaged: its header does not describe tensors"
                           ) from None
    if 8 + header_length + data_end > size:
        raise WeightsError(
            f"{path!r} is truncated: its header describes {8 + header_length + data_end} bytes "
            f"but the file has {size}; copy the weights again")
    return shapes


def checkpoint_shapes(folder: str) -> Shapes:
    """The shapes of every tensor in a folder's safetensors weights, single file or sharded
    (model.safetensors.index.json and its shards)."""
    index_path = os.path.join(folder, SAFETENSORS_INDEX)
    if not os.path.isfile(index_path):
        return safetensors_shapes(os.path.join(folder, SAFETENSORS))
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{index_path!r} is not a safetensors index ({e})") from None
    shapes: Shapes = {}
    for shard in shards:
        shard_path = os.path.join(folder, shard)
        if os.path.dirname(os.path.normpath(shard)) or not os.path.isfile(shard_path):
            raise WeightsError(f"{index_path!r} names shard {shard!r}, which is not a file in "
                               "the folder; copy the whole checkpoint folder")
        shapes.update(safetensors_shapes(shard_path))
    return shapes


def check_weights_fit(folder: str, saved: Shapes, expected: Mapping[str, tuple[int, ...]],
                      base_prefix: str = "") -> None:
    """Refuses weights that lack a tensor the architecture needs or hold one of another shape.

    Extra tensors are allowed (transformers ignores them). Keys saved without the base
    model's prefix, or with the legacy LayerNorm names, are read as transformers reads them.
    """
    saved = {_as_loaded(name, base_prefix, expected): shape for name, shape in saved.items()}
    missing = sorted(set(expected) - set(saved))
    mismatched = sorted(f"{name} {list(saved[name])} (the architecture needs "
                        f"{list(expected[name])})"
                        for name in set(expected) & set(saved) if saved[name] != expected[name])
    if missing:
        raise WeightsError(
            f"{folder!r}: the weights lack {len(missing)} of the architecture's "
            f"{len(expected)} tensors ({_some(missing)}); they would be randomly initialised "
            "and the tier would answer at random. Save the whole fine-tuned model "
            "(save_pretrained) into the folder")
    if mismatched:
        raise WeightsError(
            f"{folder!r}: {len(mismatched)} tensors do not have the shape config.json implies "
            f"({_some(mismatched)}); the weights and config.json come from different models")


def _as_loaded(name: str, base_prefix: str, expected: Mapping[str, object]) -> str:
    for legacy, current in LEGACY_SUFFIXES.items():
        if name.endswith(legacy):
            name = name[: -len(legacy)] + current
    prefixed = f"{base_prefix}.{name}"
    return prefixed if base_prefix and name not in expected and prefixed in expected else name


def _some(names: list[str], shown: int = 5) -> str:
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_weights(path: str, allow_pickle_weights: bool) -> bool:
    """Returns whether the weights are pickle-based; refuses them unless explicitly allowed."""
    files = set(os.listdir(path))
    if files & set(SAFE_WEIGHTS):
        return False
    if files & set(PICKLE_WEIGHTS):
        if allow_pickle_weights:
            return True
        raise CheckpointError(
            f"{path!r} holds only pickle weights (pytorch_model.bin), which can run arbitrary "
            "code when loaded; convert them to safetensors, or set allow_pickle_weights: true "
            "for this tier if you trust the folder")
    raise CheckpointError(f"{path!r} has no model weights (expected {SAFE_WEIGHTS[0]})")
