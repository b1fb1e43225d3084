"""The `beam-cascade` command: `beam-cascade run ...` (more subcommands as they land)."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from pipeline import calibrate, run, train

COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "run": (run.main, "classify files with a cascade of models (Beam job)"),
    "train": (train.main, "fine-tune a tier model from a labelled file"),
    "calibrate": (calibrate.main, "fit temperatures and choose thresholds on labelled dev "
                                  "data; write a tuned config"),
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
    return command[0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
