"""Building the cascade config from what the user gave: a YAML or JSON file (a local path or
any fsspec URL: gs://, s3://, ...) or `run`'s tier flags, with the field and tier flags
applied on top, then checked once.

The config types and their checks live in models/config.py (no Beam, no file format).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import posixpath
from collections import Counter
from json.decoder import JSONObject
from json.scanner import py_make_scanner
from typing import IO, Any, Callable, Hashable, Sequence

import fsspec
import yaml

from models.config import (CascadeConfig, ConfigError, TierConfig, check_config,
                           config_from_dict, parse_config)
from pipeline.flags import ESCALATING_TIER_FLAGS, TIER_FLAGS

_LOG = logging.getLogger(__name__)
FIELD_FLAGS = ("text_field", "id_field", "label_field", "text_pair_field")


def read_config_file(path: str) -> Any:
    """The plain data in a YAML or JSON config file (a mapping, when the file is right), its
    tiers' relative model paths resolved against the file's folder."""
    try:
        with fsspec.open(path, "r", encoding="utf-8") as f:
            raw = _json_data(f.read()) if path.endswith(".json") else _yaml_data(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {path!r} is not valid YAML/JSON: {e}") from None
    except RepeatedKey as e:
        raise ConfigError(f"config file {path!r} has the key {e.key!r} {e.times} "
                          f"({e.where}); keep one") from None
    if isinstance(raw, dict) and isinstance(raw.get("tiers"), list):
        raw = {**raw, "tiers": [_paths_beside(path, tier) if isinstance(tier, dict) else tier
                                for tier in raw["tiers"]]}
    settings = raw.get("calibrate_on_input") if isinstance(raw, dict) else None
    if isinstance(settings, dict) and is_relative(settings.get("labelled")):
        raw = {**raw, "calibrate_on_input": {**settings,
                                             "labelled": beside(path, settings["labelled"])}}
    return raw


class RepeatedKey(ValueError):
    """A mapping that holds a key more than once: YAML and JSON readers keep the last value
    without a word (a second `tiers:` made a two-tier cascade one tier)."""

    def __init__(self, key: str, lines: list[int]):
        super().__init__(key, lines)
        self.key = key  # with the path to it: tiers[1].threshold
        self.times = "twice" if len(lines) == 2 else f"{len(lines)} times"
        self.where = (f"line {lines[0]}" if len(set(lines)) == 1 else
                      f"lines {', '.join(map(str, lines[:-1]))} and {lines[-1]}")


def _refuse_repeated_keys(path: str, keys: Sequence[Hashable],
                         line_of: Callable[[int], int]) -> None:
    """Raises RepeatedKey for the first of a mapping's `keys` (at `path`) that comes more
    than once, with the line of each (`line_of` the i-th key's line, asked only then)."""
    for key, count in Counter(keys).items():
        if count > 1:
            raise RepeatedKey(_key_path(path, key),
                              [line_of(i) for i, other in enumerate(keys) if other == key])


def _key_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *defaults`


def _yaml_data(stream: IO[str]) -> Any:
    """The YAML document in `stream`, as `yaml.safe_load` builds it (the same safe loader:
    no Python tags), once every mapping in it is known to hold each key once. The keys a
    merge key (`<<: *defaults`) brings in are not repeats: the mapping's own keys override
    them, as YAML says."""
    loader = yaml.SafeLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_repeated_yaml_keys(loader, node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_repeated_yaml_keys(loader: yaml.SafeLoader, node: yaml.Node, path: str,
                               seen: set[int]) -> None:
    """Checks `node` and everything under it, each node once (aliases can make a document a
    graph). Keys are compared as the loader builds them (`yes` and `true` are one key)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_repeated_yaml_keys(loader, item, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        pairs = [(loader.construct_object(key), key.start_mark.line + 1, value)
                 for key, value in node.value
                 if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG]
        _refuse_repeated_keys(path, [key for key, _, _ in pairs], lambda i: pairs[i][1])
        for key, _, value in pairs:
            _refuse_repeated_yaml_keys(loader, value, _key_path(path, key), seen)


class _JsonObject(list):
    """A JSON object as its (key, value) pairs in file order, and where each value starts."""

    value_starts: list[int]


def _json_data(text: str) -> Any:
    """The JSON document in `text`, as `json.loads` reads it, once every object in it is
    known to hold each key once. json's own scanner in Python, not its C one, so that each
    object can note where its values start: the line of a repeated key."""
    decoder = json.JSONDecoder(object_pairs_hook=_JsonObject)
    decoder.parse_object = _object_noting_value_starts
    decoder.scan_once = py_make_scanner(decoder)
    return _without_repeats(text, decoder.decode(text), "")


def _object_noting_value_starts(s_and_end: tuple[str, int], strict: bool,
                                scan_once: Callable, *rest: Any) -> tuple[_JsonObject, int]:
    """json's own object parser, with the position of each value noted on the object."""
    starts: list[int] = []

    def scan_value(text: str, start: int) -> tuple[Any, int]:
        starts.append(start)
        return scan_once(text, start)

    pairs, end = JSONObject(s_and_end, strict, scan_value, *rest)
    pairs.value_starts = starts
    return pairs, end


def _without_repeats(text: str, value: Any, path: str) -> Any:
    """The decoded `value` with its objects as dicts, refusing an object with a key twice."""
    if isinstance(value, _JsonObject):
        _refuse_repeated_keys(path, [key for key, _ in value],
                             lambda i: _key_line(text, value.value_starts[i]))
        return {key: _without_repeats(text, item, _key_path(path, key)) for key, item in value}
    if isinstance(value, list):
        return [_without_repeats(text, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _key_line(text: str, value_start: int) -> int:
    """The line of the key whose value starts at `value_start`: that of the key's closing
    quote, before the colon (a JSON string holds no line break)."""
    key_end = len(text[:text.rindex(":", 0, value_start)].rstrip())
    return text.count("\n", 0, key_end) + 1


PATH_KEYS = ("model", "router")  # a tier's files: a model folder, a learned router


def _paths_beside(config_path: str, tier: dict) -> dict:
    """The tier's relative model and router paths resolved against the config's folder."""
    return {**tier, **{key: beside(config_path, tier[key]) for key in PATH_KEYS
                       if is_relative(tier.get(key))}}


def is_relative(path: Any) -> bool:
    """A path relative to somewhere (not a URL, not absolute)."""
    return isinstance(path, str) and bool(path) and "://" not in path \
        and not os.path.isabs(path)


def beside(config_path: str, model: str) -> str:
    """A config file's relative model path, resolved against the file's folder: a config is
    read the same from any current folder (a cron job does not choose its own)."""
    if "://" in config_path:
        scheme, rest = config_path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), model))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_path)), model))


def relative_models(config: CascadeConfig, config_path: str) -> CascadeConfig:
    """The config with its local model folders and routers written relative to
    `config_path`'s folder, so that the written file keeps working wherever the folder with
    it and the models moves."""
    if "://" in config_path:
        return config
    folder = os.path.dirname(os.path.abspath(config_path))
    return dataclasses.replace(config, tiers=tuple(
        dataclasses.replace(tier, **{key: os.path.relpath(getattr(tier, key), folder)
                                     for key in PATH_KEYS
                                     if isinstance(getattr(tier, key), str)
                                     and os.path.isabs(getattr(tier, key))})
        for tier in config.tiers))


def load_config(path: str) -> CascadeConfig:
    """Reads a cascade config from a YAML or JSON file and checks its values."""
    return config_from_dict(read_config_file(path), source=path)


def config_from_flags(models: list[str], thresholds: list[float]) -> CascadeConfig:
    """A cascade from `--tier1 A --tier2 B [--tier3 C] --threshold T[,T2]` alone (its values
    are checked by the caller, with the other flags applied).

    One threshold applies to every tier but the last; a comma list gives one per tier.
    """
    if len(thresholds) == 1:
        thresholds = thresholds * (len(models) - 1)
    if len(thresholds) != len(models) - 1:
        raise ConfigError(
            f"--threshold gives {len(thresholds)} values for {len(models)} tiers; give one "
            f"value, or {len(models) - 1} comma-separated (one per tier but the last)")
    return CascadeConfig(tiers=tuple(
        TierConfig(name=f"tier{i + 1}", model=m,
                   threshold=thresholds[i] if i < len(models) - 1 else None)
        for i, m in enumerate(models)))


def cascade_config(options: argparse.Namespace) -> CascadeConfig:
    """The config file or the tier flags, with the field and tier flags applied on top,
    checked once."""
    tier_flags = [m for m in (options.tier1, options.tier2, options.tier3) if m]
    if options.config and (tier_flags or options.threshold):
        raise ConfigError("give either --config or --tier1/--tier2/--threshold flags, not both")
    if options.tier3 and not options.tier2:
        raise ConfigError("--tier3 needs --tier2")
    if options.config:
        config = parse_config(read_config_file(options.config), source=options.config)
    elif tier_flags:
        if len(tier_flags) > 1 and not options.threshold:
            raise ConfigError("--tier1/--tier2 need --threshold (e.g. --threshold 0.9)")
        if len(tier_flags) == 1 and options.threshold:
            raise ConfigError("--threshold needs a --tier2 to escalate to")
        config = config_from_flags(tier_flags, options.threshold or [])
    else:
        raise ConfigError("no cascade: pass --config cascade.yaml, or --tier1 PATH "
                          "--tier2 PATH --threshold T")
    config = with_flags(config, options)
    check_config(config, options.config or "flags")
    return config


def with_flags(config: CascadeConfig, options: argparse.Namespace) -> CascadeConfig:
    """The config with the field flags and the per-tier flags applied."""
    overrides: dict[str, Any] = {f: getattr(options, f) or None for f in FIELD_FLAGS
                                 if getattr(options, f) is not None}
    if options.max_error_rate is not None:
        overrides["max_error_rate"] = options.max_error_rate
    if options.passthrough_fields is not None:
        overrides["passthrough_fields"] = tuple(
            f.strip() for f in options.passthrough_fields.split(",") if f.strip())
    if options.calibrate_on_input is not None:
        if config.calibrate_on_input is None:
            raise ConfigError("--calibrate_on_input needs the labelled evidence: add "
                              "calibrate_on_input: {labelled: path/to/labelled.tsv} to the "
                              "config (docs/configuration.md)")
        overrides["calibrate_on_input"] = dataclasses.replace(
            config.calibrate_on_input, records=options.calibrate_on_input)
    tiers = config.tiers
    for flag in TIER_FLAGS:
        applies_to = ([tier for tier in tiers if tier.threshold is not None]
                      if flag in ESCALATING_TIER_FLAGS else None)
        tiers = tier_default(tiers, flag, getattr(options, flag), applies_to)
    if config.guarantee and any(t.max_escalation_rate != c.max_escalation_rate
                                for t, c in zip(tiers, config.tiers)):
        _LOG.warning("--max_escalation_rate may lower the thresholds calibrate chose, so the "
                     "config's guarantee (%s) no longer holds: it is dropped from this run",
                     config.guarantee.describe())
        overrides["guarantee"] = None
    return dataclasses.replace(config, tiers=tiers, **overrides)


def tier_default(tiers: Sequence[TierConfig], key: str, value: Any,
                 applies_to: Sequence[TierConfig] | None = None) -> tuple[TierConfig, ...]:
    """The tiers with a flag's `value` for `key` wherever the config left it unset (among
    `applies_to`, default all); the config's own values win. No flag (None) changes none."""
    return tuple(
        dataclasses.replace(tier, **{key: value})
        if value is not None and getattr(tier, key) is None
        and (applies_to is None or tier in applies_to) else tier
        for tier in tiers)
