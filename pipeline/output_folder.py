"""The output folder belongs to the user: a run replaces only what an earlier run wrote.

A batch run writes into a staging folder inside the output folder and publishes only once
the pipeline has finished. Publishing is safe at every instant (a process killed at any
step leaves one run's files whole, and a marker only beside a whole output):
1. the marker (`_SUCCESS`/`_FAILED`) goes, so no reader trusts the folder while it changes;
2. the manifest (`_MANIFEST.json`, what the folder holds) is switched, by an atomic rename,
   to name the new run's files *in the staging folder*, and the previous run's files as
   superseded: the commit point;
3. the superseded files are deleted, the new ones linked (or copied) in under their final
   names, the marker written, the manifest switched to the files in the folder itself, and
   the staging folder deleted.
The next run (or a streaming run's claim) first recovers an interrupted publish by one rule:
a staging folder the manifest names is finished (step 3, which can be repeated), any other
is discarded, as its run never reached the commit point.

A streaming run writes its windows' files straight into the folder, so it can only claim
the folder at its start: it removes what the previous run's manifest lists and writes a
manifest that says the folder holds a streaming run's files.

Before anything is written, the launcher refuses an output that is a file, a folder it
cannot create or write, a folder that holds one of the job's input files, and a folder
holding files with the names this tool writes that no run of it wrote (another tool's
output, or a run of an older version).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
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
    the name patterns its windows write. While a publish is under way, `folder` names the
    staging folder that holds `files` and `superseded` the previous run's files still to
    delete; `failures` are what the run's `_FAILED` marker says (none: `_SUCCESS`)."""

    files: tuple[str, ...] = ()
    streaming: bool = False
    folder: str = ""
    superseded: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    @property
    def marker(self) -> str:
        return FAILED_FILE if self.failures else SUCCESS_FILE

    def owns(self, name: str) -> bool:
        patterns = STREAMING_NAMES if self.streaming else ()
        return (name in self.files or name in self.superseded
                or any(fnmatch.fnmatchcase(name, p) for p in patterns))

    def to_json(self) -> str:
        return json.dumps({"tool": MANIFEST_TOOL, "streaming": self.streaming,
                           "files": list(self.files), "folder": self.folder,
                           "superseded": list(self.superseded),
                           "failures": list(self.failures)}, indent=1)


def check_output_folder(output: str, input_files: Sequence[str] = (),
                        input_patterns: Sequence[str] = ()) -> None:
    """Refuses, before the job starts, an output the job must not write into."""
    local = _is_local(output)
    if local and os.path.exists(output) and not os.path.isdir(output):
        raise OutputFolderError(f"--output {output!r} is a file; give a folder (new or one "
                                "an earlier run of beam-cascade wrote)")
    if local:
        _check_writable(output)
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


def _check_writable(output: str) -> None:
    """Creates the local folder (as the job would) and a file in it, so that a folder under
    a file, on a read-only or pseudo filesystem (/proc) or without permission is refused
    now, not once the job has run."""
    try:
        os.makedirs(output, exist_ok=True)
        probe, path = tempfile.mkstemp(prefix=".beam-cascade-probe-", dir=output)
        os.close(probe)
        os.remove(path)
    except OSError as e:
        raise OutputFolderError(
            f"--output {output!r} cannot be written ({e.strerror or e}"
            f"{f': {e.filename}' if e.filename else ''}); give a folder you can create and "
            "write") from None


def new_staging_folder(output: str) -> str:
    """Where a batch run writes until it is published; an interrupted publish is recovered
    and stale staging folders of killed runs go first."""
    recover_interrupted_publish(output)
    return FileSystems.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex}")


def recover_interrupted_publish(output: str) -> None:
    """Finishes a publish whose manifest was switched to its staging folder (the run was
    complete: the commit point had passed), then discards every other staging folder (runs
    that failed, or were killed before their commit point)."""
    manifest = read_manifest(output)
    if manifest.folder:
        if not FileSystems.exists(FileSystems.join(output, manifest.folder)):
            raise OutputFolderError(
                f"{FileSystems.join(output, MANIFEST_FILE)!r} names the staging folder "
                f"{manifest.folder!r} of an interrupted publish, which is gone: the folder "
                "holds no complete output; move its files away or give another --output")
        _LOG.warning("finishing the interrupted publish of %s in %s", manifest.folder, output)
        _finish_publish(output, manifest)
    discard_stale_staging(output)


def discard_stale_staging(output: str) -> None:
    """Deletes staging folders that interrupted runs of this tool left behind, except one
    that the manifest names (it holds the complete output of a publish under way)."""
    keep = read_manifest(output).folder
    if _is_local(output):
        if os.path.isdir(output):
            for name in os.listdir(output):
                if name.startswith(STAGING_PREFIX) and name != keep:
                    shutil.rmtree(os.path.join(output, name), ignore_errors=True)
        return
    stale = [path for path in _match(FileSystems.join(output, f"{STAGING_PREFIX}*/**"))
             if not (keep and _is_inside(path, FileSystems.join(output, keep)))]
    if stale:
        FileSystems.delete(stale)


def publish(output: str, staging: str, failures: Sequence[str] = ()) -> None:
    """Replaces the previous run's files by the staged ones and marks the folder: `_SUCCESS`
    when `failures` is empty, else `_FAILED` holding them. Safe at every instant (see the
    module's docstring): until the manifest switches to the staging folder the previous
    run's files are whole; from then on the new run's are, in the staging folder and then
    in the folder itself, and a marker stands only beside them."""
    previous = read_manifest(output)
    _delete([FileSystems.join(output, m) for m in (SUCCESS_FILE, FAILED_FILE)])
    staged = sorted(os.path.basename(p) for p in _match(FileSystems.join(staging, "*")))
    superseded = tuple(name for name in _our_names(output) if previous.owns(name))
    manifest = Manifest(tuple(staged), folder=os.path.basename(staging.rstrip("/")),
                        superseded=superseded, failures=tuple(failures))
    _switch_manifest(output, manifest)
    _finish_publish(output, manifest)


def _finish_publish(output: str, manifest: Manifest) -> None:
    """Step 3 of publishing, from wherever a killed run left it: every step can be
    repeated. The new files are linked (copied where links are not possible) rather than
    moved, so the staging folder stays whole until the manifest no longer names it."""
    staging = FileSystems.join(output, manifest.folder)
    _delete([FileSystems.join(output, m) for m in (SUCCESS_FILE, FAILED_FILE)])
    _delete([FileSystems.join(output, name) for name in _our_names(output)
             if name in manifest.superseded or name in manifest.files])
    for name in manifest.files:
        _place(FileSystems.join(staging, name), FileSystems.join(output, name))
    if manifest.superseded:
        _LOG.info("replaced the previous run's %s in %s", _listing(manifest.superseded),
                  output)
    _write(FileSystems.join(output, manifest.marker),
           json.dumps({"failures": list(manifest.failures)}, indent=1)
           if manifest.failures else "")
    marker = (manifest.marker,)
    _switch_manifest(output, Manifest((*manifest.files, *marker), failures=manifest.failures))
    _delete_folder(staging)


def claim_for_streaming(output: str) -> None:
    """Removes the previous run's files and marks the folder as a streaming run's."""
    recover_interrupted_publish(output)
    clear_previous_run(output)
    _switch_manifest(output, Manifest(streaming=True))


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
        manifest = Manifest(_names(raw["files"]), bool(raw["streaming"]),
                            str(raw.get("folder", "")), _names(raw.get("superseded", ())),
                            tuple(str(f) for f in raw.get("failures", ())))
        if manifest.folder and not re.fullmatch(f"{re.escape(STAGING_PREFIX)}[0-9a-f]+",
                                                manifest.folder):
            raise ValueError(f"folder {manifest.folder!r} is not a staging folder's name")
        return manifest
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise OutputFolderError(
            f"{path!r} is not a beam-cascade manifest ({e}); the folder holds another "
            "tool's output: give another --output") from None


def _names(raw: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(name) for name in raw)


def _delete_previous(output: str) -> list[str]:
    """Deletes the files the previous run's manifest names; returns their names."""
    manifest = read_manifest(output)
    owned = [name for name in _our_names(output) if manifest.owns(name)]
    _delete([FileSystems.join(output, name) for name in owned])
    return owned


def _listing(names: Sequence[str], shown: int = 4) -> str:
    more = f", ... ({len(names)} files)" if len(names) > shown else ""
    return ", ".join(list(names)[:shown]) + more


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


def _delete_folder(folder: str) -> None:
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        _delete(_match(FileSystems.join(folder, "**")))


def _place(source: str, destination: str) -> None:
    """`source`'s file also at `destination`: a hard link on a local disk (no copy, and
    atomic), else a copy (on object stores a copy is what a rename does)."""
    if _is_local(source):
        try:
            os.link(source, destination)
            return
        except OSError:  # a filesystem without hard links: copy, then rename into place
            partial = f"{destination}.{uuid.uuid4().hex}.partial"
            shutil.copyfile(source, partial)
            os.replace(partial, destination)
            return
    FileSystems.copy([source], [destination])


def _switch_manifest(output: str, manifest: Manifest) -> None:
    """Writes the manifest beside its final name, then renames it into place: a reader (or a
    killed run's successor) sees the old manifest or the new one, never half of one."""
    path = FileSystems.join(output, MANIFEST_FILE)
    partial = FileSystems.join(output, f".{MANIFEST_FILE}.{uuid.uuid4().hex}.partial")
    _write(partial, manifest.to_json())
    if _is_local(output):
        os.replace(partial, path)
    else:  # object stores: the copy onto the manifest's name is atomic, then the rest goes
        FileSystems.rename([partial], [path])


def _write(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))
