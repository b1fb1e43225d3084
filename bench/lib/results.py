"""Writing a study's results, the one way every study records what it measured: --results is
a folder (the study's <name>.md, .json, .png go there) or, to keep a variant run beside the
default one, a FILE.md (FILE.json and FILE.png go beside it)."""
from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Iterable, Sequence


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run of `python -m module`."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table of the cells (already formatted, or anything str() formats)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def result_file(results: str, name: str, extension: str) -> str:
    """The study `name`'s file of this `extension` (md, json, png) under --results, its folder
    made: <results>/<name>.<extension>, or FILE.<extension> when --results is FILE.md."""
    stem = results[:-3] if results.endswith(".md") else os.path.join(results, name)
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    return f"{stem}.{extension}"


def write_results(results: str, name: str, markdown: str, record: object = None,
                  command: str | None = None) -> str:
    """Writes the study's .md (ending with "Reproduce: `command`" when given) and its .json
    from `record` when given (result_file names both); prints the markdown and returns the
    .md's path."""
    if command:
        markdown += f"\n\nReproduce: `{command}`\n"
    path = result_file(results, name, "md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown)
    if record is not None:
        with open(result_file(results, name, "json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    print(markdown)
    return path
