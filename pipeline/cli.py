"""The `beam-cascade` command: `beam-cascade run|train|calibrate|export|predict ...`.

A command's module is imported only when it is chosen, so `beam-cascade --help` and an
unknown command answer without loading Beam or torch.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

COMMANDS: dict[str, tuple[str, str]] = {  # name: (module with main(argv), what it does)
    "run": ("pipeline.run", "classify files with a cascade of models (Beam job)"),
    "train": ("pipeline.train", "fine-tune a tier model from a labelled file"),
    "calibrate": ("pipeline.calibrate", "fit temperatures and choose thresholds on labelled "
                                        "dev data; write a tuned config"),
    "export": ("pipeline.export", "export tiers to ONNX (and int8) for runtime: onnxruntime "
                                  "or openvino before a job"),
    "predict": ("pipeline.predict", "classify texts given on the command line, showing each "
                                    "tier's answer"),
}


def usage() -> str:
    lines = ["usage: beam-cascade COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<11}{help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "`beam-cascade COMMAND --help` lists a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"beam-cascade: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(command[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
