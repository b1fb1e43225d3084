"""The output folder belongs to the user: a run replaces only what an earlier run wrote.

A batch run writes into a staging folder inside the output folder and publishes only once
the pipeline has finished: until then the previous run's files stay where they are, whole.
Publishing deletes the files the previous run's manifest lists (never anything else),
moves the new files into place, writes the new manifest (`_MANIFEST.json`, the names this
run wrote) and last the marker: `_SUCCESS`, or `_FAILED` with the reasons when the run
finished but failed its error limits (exit status 3).

A streaming run writes its windows' files straight into the folder, so it can only claim
the folder at its start: it removes what the previous run's manifest lists and writes a
manifest that says the folder holds a streaming run's files.

Before anything is written, the launcher refuses an output that is a file, a folder that
holds one of the job's input files, and a folder holding files with the names this tool
writes that no run of it wrote (another tool's output, or a run of an older version).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from typing import Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

SUCCESS_FILE = "_SUCCESS"
FAILED_FILE = "_FAILED"
MANIFEST_FILE = "_MANIFEST.json"
MANIFEST_TOOL = "beam-cascade"
STAGING_PREFIX = ".beam-cascade-staging-"
# The names a run writes; a file with such a name that no manifest lists is not ours.
OUTPUT_NAMES = ("predictions-*", "errors-*", "training-*", "routing_stats*", SUCCESS_FILE,
                FAILED_FILE)
# A streaming run's files are not known in advance: its manifest claims these names.
STREAMING_NAMES = ("predictions-*", "errors-*", "training-*", "routing_stats*")

_LOG = logging.getLogger(__name__)


class OutputFolderError(ValueError):
    """An output folder the job must not write into; the message says what to do."""


@dataclass(frozen=True)
class Manifest:
    """What a run of this tool wrote into the folder: file names, or for a streaming run
    the name patterns its windows write."""

    files: tuple[str, ...] = ()
    streaming: bool = False

    def owns(self, name: str) -> bool:
        patterns = STREAMING_NAMES if self.streaming else ()
        return name in self.files or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    def to_json(self) -> str:
        return json.dumps({"tool": MANIFEST_TOOL, "streaming": self.streaming,
                           "files": list(self.files)}, indent=1)


def check_output_folder(output: str, input_files: Sequence[str] = (),
                        input_patterns: Sequence[str] = ()) -> None:
    """Refuses, before the job starts, an output the job must not write into."""
    local = _is_local(output)
    if local and os.path.exists(output) and not os.path.isdir(output):
        raise OutputFolderError(f"--output {output!r} is a file; give a folder (new or one "
                                "an earlier run of beam-cascade wrote)")
    if not local and FileSystems.exists(output.rstrip("/")):
        raise OutputFolderError(f"--output {output!r} is an object (a file); give a folder "
                                "prefix such as gs://bucket/run/")
    inside = [path for path in input_files if _is_inside(path, output)]
    if inside:
        raise OutputFolderError(
            f"--output {output!r} holds input file {inside[0]!r}: a run replaces what is in "
            "its output folder, so inputs must live elsewhere; give another --output")
    for pattern in input_patterns:
        if _could_match_outputs(pattern, output):
            raise OutputFolderError(
                f"--input {pattern!r} would match the files written to --output {output!r} "
                "(the job would read its own output); give an output folder the pattern "
                "cannot reach")
    manifest = read_manifest(output)
    foreign = [name for name in _our_names(output) if not manifest.owns(name)]
    if foreign:
        raise OutputFolderError(
            f"--output {output!r} holds {', '.join(foreign[:3])}"
            f"{' and more' if len(foreign) > 3 else ''}, which no run of beam-cascade wrote "
            f"(no {MANIFEST_FILE} lists them); move them away or give another --output, "
            "since a run replaces the files of its output folder")


def new_staging_folder(output: str) -> str:
    """Where a batch run writes until it is published; stale ones of killed runs go first."""
    discard_stale_staging(output)
    return FileSystems.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex}")


def discard_stale_staging(output: str) -> None:
    """Deletes staging folders that interrupted runs of this tool left behind."""
    if _is_local(output):
        if os.path.isdir(output):
            for name in os.listdir(output):
                path = os.path.join(output, name)
                if name.startswith(STAGING_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)
        return
    stale = _match(FileSystems.join(output, f"{STAGING_PREFIX}*/**"))
    if stale:
        FileSystems.delete(stale)


def publish(output: str, staging: str, failures: Sequence[str] = ()) -> None:
    """Replaces the previous run's files by the staged ones and marks the folder: `_SUCCESS`
    when `failures` is empty, else `_FAILED` holding them. The marker goes first and comes
    last, so a folder with `_SUCCESS` never holds a mix of two runs."""
    clear_previous_run(output)
    staged = sorted(os.path.basename(p) for p in _match(FileSystems.join(staging, "*")))
    marker = FAILED_FILE if failures else SUCCESS_FILE
    _write(FileSystems.join(output, MANIFEST_FILE), Manifest((*staged, marker)).to_json())
    if staged:
        FileSystems.rename([FileSystems.join(staging, n) for n in staged],
                           [FileSystems.join(output, n) for n in staged])
    discard_stale_staging(output)
    _write(FileSystems.join(output, marker),
           json.dumps({"failures": list(failures)}, indent=1) if failures else "")


def claim_for_streaming(output: str) -> None:
    """Removes the previous run's files and marks the folder as a streaming run's."""
    clear_previous_run(output)
    discard_stale_staging(output)
    _write(FileSystems.join(output, MANIFEST_FILE), Manifest(streaming=True).to_json())


def clear_previous_run(output: str) -> None:
    """Deletes the completion markers first, then the files the previous run's manifest
    names (logging them), so a marked folder never holds a mix of two runs."""
    _delete([FileSystems.join(output, m) for m in (SUCCESS_FILE, FAILED_FILE)])
    replaced = _delete_previous(output)
    if replaced:
        _LOG.info("replaced the previous run's %s in %s", _listing(replaced), output)


def read_manifest(output: str) -> Manifest:
    """The manifest of the last run in `output`; an empty one when there is none."""
    path = FileSystems.join(output, MANIFEST_FILE)
    if not FileSystems.exists(path):
        return Manifest()
    try:
        with FileSystems.open(path) as f:
            raw = json.loads(f.read().decode("utf-8"))
        if raw.get("tool") != MANIFEST_TOOL:
            raise ValueError("not written by beam-cascade")
        return Manifest(tuple(str(n) for n in raw["files"]), bool(raw["streaming"]))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise OutputFolderError(
            f"{path!r} is not a beam-cascade manifest ({e}); the folder holds another "
            "tool's output: give another --output") from None


def _delete_previous(output: str) -> list[str]:
    """Deletes the files the previous run's manifest names; returns their names."""
    manifest = read_manifest(output)
    owned = [name for name in _our_names(output) if manifest.owns(name)]
    _delete([FileSystems.join(output, name) for name in owned])
    return owned


def _listing(names: Sequence[str], shown: int = 4) -> str:
    more = f", ... ({len(names)} files)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _our_names(output: str) -> list[str]:
    """Names in `output` (not below it) that match what this tool writes."""
    return sorted({os.path.basename(path) for pattern in OUTPUT_NAMES
                   for path in _match(FileSystems.join(output, pattern))})


def _could_match_outputs(pattern: str, output: str) -> bool:
    """Whether a watched input pattern would match a file the job writes into `output`."""
    probes = [FileSystems.join(output, name)
              for name in ("predictions-00000-of-00001.jsonl", "errors-00000-of-00001.jsonl")]
    if _is_local(pattern):
        pattern, probes = os.path.abspath(pattern), [os.path.abspath(p) for p in probes]
    return any(_glob_regex(pattern).fullmatch(probe) for probe in probes)


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob as a regex: `**` crosses folders, `*` and `?` do not."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(part, re.escape(part)) for part in parts))


def _is_inside(path: str, folder: str) -> bool:
    if _is_local(path) and _is_local(folder):
        path, folder = os.path.realpath(path), os.path.realpath(folder)
        return os.path.commonpath([path, folder]) == folder
    return path.startswith(folder.rstrip("/") + "/")


def _is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def _match(pattern: str) -> list[str]:
    return [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]


def _delete(paths: Sequence[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def _write(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))
