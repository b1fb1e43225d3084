"""`beam-cascade export`: a cascade's ONNX Runtime and OpenVINO tiers exported ahead of a job.

    beam-cascade export --config cascade.yaml   # every tier with runtime: onnxruntime/openvino
    beam-cascade export --model DIR [--quantize int8]

A worker exports a tier on its first load anyway (once per machine, cached under a hash of
the weights: models/onnx_export.py); exporting ahead finds a model that cannot be exported
before the job starts, and makes the launcher's machine (and a container image built on it)
ready. Each exported file's path is printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from models.config import ConfigError, ModelSpec, TierConfig
from models.names import EXPORTED_RUNTIMES, QUANTIZATION_SCHEMES
from models.validation import validate_models
from pipeline.config import load_config


def export_specs(specs: Sequence[ModelSpec]) -> list[str]:
    """Exports each spec's model (and int8 variant); returns the files' paths."""
    from models.model_cache import local_model_folder
    from models.onnx_export import exported_model
    paths = []
    for spec in specs:
        start = time.perf_counter()
        path = exported_model(local_model_folder(spec.model), spec.quantize,
                              spec.allow_pickle_weights, spec.trust_remote_code)
        print(f"{spec.model} ({spec.quantize or 'fp32'}): {path} "
              f"[{time.perf_counter() - start:.1f} s]", file=sys.stderr)
        paths.append(path)
    return paths


def specs_to_export(args: argparse.Namespace) -> list[ModelSpec]:
    """The config's tiers that run an exported graph (onnxruntime, openvino), or the one
    --model."""
    if args.model:
        return [TierConfig(name="model", model=args.model, runtime="onnxruntime",
                           quantize=args.quantize).model_spec]
    config = load_config(args.config)
    validate_models(config, routers_fitted=False)
    specs = [t.model_spec for t in config.tiers if t.runtime in EXPORTED_RUNTIMES]
    if not specs:
        raise ConfigError(f"{args.config}: no tier has runtime: onnxruntime or openvino, so "
                          "there is nothing to export; set it on the tiers to run from ONNX")
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: prints each exported file; exit 2 on a bad config or a failed export."""
    p = argparse.ArgumentParser(prog="beam-cascade export",
                                description="Export tiers to ONNX (and int8) into this "
                                            "machine's model cache before a job.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="cascade config: exports its runtime: onnxruntime "
                                         "and openvino tiers")
    source.add_argument("--model", help="one checkpoint folder (local or URL)")
    p.add_argument("--quantize", choices=QUANTIZATION_SCHEMES, default=None,
                   help="with --model: also make this int8 variant")
    args = p.parse_args(argv)
    if args.quantize and not args.model:
        p.error("--quantize goes with --model; a config's tiers say their own quantize")
    try:
        for path in export_specs(specs_to_export(args)):
            print(path)
    except (ConfigError, ValueError, OSError) as e:
        print(f"beam-cascade export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
