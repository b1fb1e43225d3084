"""A process killed at any instant of publishing leaves a complete output, the previous
run's or the new one, and `_SUCCESS` only ever beside a complete one (docs/reliability.md).

Publishing runs in a forked child that kills itself (SIGKILL: no cleanup, no `finally`)
just before its k-th file operation, for every k until one run publishes unhurt; after
each kill the folder is checked as it was left, then as the next run finds it once it has
recovered the interrupted publish (finished or discarded, by the documented rule).
"""
import builtins
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from pipeline.output_folder import (FAILED_FILE, MANIFEST_FILE, STAGING_PREFIX, SUCCESS_FILE,
                                    new_staging_folder, publish)
from pipeline.stopping import Stopped, signals_deferred

MARKERS = (SUCCESS_FILE, FAILED_FILE)
# The previous run wrote two shards; the new one writes one, and a file of the same name.
OLD = {"predictions-00000-of-00002.jsonl": b"old 0\n", "predictions-00001-of-00002.jsonl":
       b"old 1\n", "errors-00000-of-00001.jsonl": b"old errors\n",
       "routing_stats.json": b'{"run": "old"}'}
NEW = {"predictions-00000-of-00001.jsonl": b"new 0\n", "errors-00000-of-00001.jsonl":
       b"new errors\n", "routing_stats.json": b'{"run": "new"}'}
# Every call that changes a file or folder, as the local filesystem makes them.
FILE_OPERATIONS = [(os, "remove"), (os, "unlink"), (os, "rename"), (os, "replace"),
                   (os, "link"), (os, "rmdir"), (os, "mkdir"), (shutil, "copyfile"),
                   (shutil, "copy2"), (shutil, "rmtree")]


def _stage(output: Path, files: dict[str, bytes]) -> Path:
    staging = Path(new_staging_folder(str(output)))
    staging.mkdir(parents=True)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    return staging


def _data_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name not in (*MARKERS, MANIFEST_FILE)
            and not p.name.startswith(".")}


def _manifest(output: Path) -> dict:
    return json.loads((output / MANIFEST_FILE).read_text())


def _complete_output(output: Path) -> dict[str, bytes]:
    """The run whose files the manifest lists, all present and whole where it says they
    are; fails when there is none."""
    manifest = _manifest(output)
    folder = output / manifest.get("folder", "")
    listed = {name for name in manifest["files"] if name not in MARKERS}
    found = {name: (folder / name).read_bytes() for name in listed
             if (folder / name).is_file()}
    assert found in (OLD, NEW), f"no complete output: manifest {manifest}, found {found}"
    return found


def _check(output: Path) -> dict[str, bytes]:
    """A complete output exists; a marker stands only beside the complete files it names."""
    complete = _complete_output(output)
    if any((output / marker).exists() for marker in MARKERS):
        assert _data_files(output) == complete, "a marker beside a mix of two runs"
    return complete


def _publish_killed_at(step: int, output: Path, staging: Path, failures: list[str]) -> bool:
    """Publishes in a child killed before its `step`-th file operation; whether it died."""
    pid = os.fork()
    if pid == 0:  # the child: count file operations, die at the chosen one
        calls = iter(range(step + 1))

        def killing(function):
            def operation(*args, **kwargs):
                if next(calls) == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(*args, **kwargs)
            return operation

        for module, name in FILE_OPERATIONS:
            setattr(module, name, killing(getattr(module, name)))
        real_open = builtins.open

        def opening(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if any(m in mode for m in "wax"):
                killing(lambda: None)()  # created (empty): a kill before anything is written
            return handle

        builtins.open = opening
        try:
            publish(str(output), str(staging), failures)
        except BaseException:  # noqa: BLE001 - told apart from a kill by the exit status
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, "publish raised"
    return os.WIFSIGNALED(status)


@pytest.mark.parametrize("failures", [[], ["3 of 10 records are dead letters"]])
def test_a_kill_at_any_step_of_publish_leaves_a_complete_output(tmp_path, failures):
    steps = 0
    outcomes = []
    while True:
        output = tmp_path / f"out-{steps}"
        output.mkdir()
        publish(str(output), str(_stage(output, OLD)), [])
        killed = _publish_killed_at(steps, output, _stage(output, NEW), failures)
        left = _check(output)
        new_staging_folder(str(output))  # the next run: recovers the interrupted publish
        recovered = _check(output)
        assert _manifest(output).get("folder", "") == ""
        assert not list(output.glob(STAGING_PREFIX + "*")), "a staging folder left behind"
        assert _data_files(output) == recovered, "files of two runs after recovery"
        outcomes.append(("old" if left == OLD else "new", "old" if recovered == OLD else "new"))
        if not killed:
            break
        steps += 1
    assert steps >= 5, "publishing took fewer file operations than expected"
    assert outcomes[-1] == ("new", "new")
    marker = FAILED_FILE if failures else SUCCESS_FILE
    assert (output / marker).exists() and not (output / MARKERS[bool(not failures)]).exists()
    assert _data_files(output) == NEW
    # Once a kill leaves the new run's files as the complete output, it stays that way.
    firsts = [left for left, _ in outcomes]
    assert firsts == sorted(firsts, key=["old", "new"].index)


def test_a_signal_while_publishing_waits_until_the_new_files_are_in_place(tmp_path):
    """SIGTERM or Ctrl-C that arrive while a run publishes stop it only once publishing has
    finished, so only SIGKILL ever leaves a publish for the next run to recover."""
    output = tmp_path / "out"
    output.mkdir()
    publish(str(output), str(_stage(output, OLD)), [])
    staging = _stage(output, NEW)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as stopped:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            publish(str(output), str(staging), [])
    assert stopped.value.published and stopped.value.exit_status == 143
    assert _data_files(output) == NEW and (output / SUCCESS_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) is handler
