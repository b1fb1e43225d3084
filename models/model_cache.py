"""Tier folders from wherever fsspec reaches: gs://, s3://, https://, memory://, file://.

On a cluster the tier folders are not on the workers' disks, so a tier's `model` may be a
URL. Each machine copies the folder once into a local cache and loads from there:

- the cache entry is named by the URL and by a fingerprint of the remote files (what the
  filesystem's listing says of each: size, and an object's generation or ETag, a file's
  mtime), so an unchanged folder is reused across bundles, processes and runs, and a
  changed one is copied anew;
- the copy is written into a temporary folder beside its final place and renamed into place,
  so no process ever sees half a copy, and a lock file makes concurrent processes of one
  machine wait for the first one's copy instead of copying it again.

Local paths (and file:// URLs) are used where they are, without copying.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Iterator

import fsspec

CACHE_ENV = "BEAM_CASCADE_MODEL_CACHE"
DEFAULT_CACHE = os.path.join("~", ".cache", "beam-cascade", "models")


class ModelFolderError(ValueError):
    """A model URL that cannot be listed or copied; the message names it."""


def is_remote(path: str) -> bool:
    """True for a URL whose folder must be copied to this machine (any scheme but file)."""
    protocol, _ = fsspec.core.split_protocol(path)
    return protocol not in (None, "file", "local")


def cache_root() -> str:
    """Where copies go: $BEAM_CASCADE_MODEL_CACHE, else ~/.cache/beam-cascade/models."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def local_model_folder(path: str) -> str:
    """A local folder holding the model at `path`: `path` itself when it is local, else the
    cached copy of the remote folder (made now when missing or out of date)."""
    if not is_remote(path):
        return fsspec.core.strip_protocol(path) if "://" in path else path
    fs, root = fsspec.core.url_to_fs(path)
    files = _list_files(fs, root, path)
    target = os.path.join(cache_root(), _entry_name(path, files))
    if os.path.isdir(target):
        return target
    os.makedirs(cache_root(), exist_ok=True)
    with _locked(target + ".lock"):
        if not os.path.isdir(target):  # another process may have copied it meanwhile
            _copy_atomically(fs, files, target, path)
    return target


def derived_file(kind: str, key: str, name: str, make: Callable[[str], None]) -> str:
    """A file made from a model (an ONNX export), cached as cache_root()/kind/key/name.

    `key` must change whenever what the file is made from does (a hash of the weights and
    of the recipe). `make(path)` writes the file to `path` the first time; like a folder
    copy, it is written beside its final place and renamed into place under a lock, so
    concurrent workers of one machine make it once and never read half of it.
    """
    target = os.path.join(cache_root(), kind, key, name)
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with _locked(target + ".lock"):
        if not os.path.isfile(target):
            staging = tempfile.mkdtemp(prefix=".making-", dir=os.path.dirname(target))
            try:
                make(os.path.join(staging, name))
                os.rename(os.path.join(staging, name), target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _list_files(fs: fsspec.AbstractFileSystem, root: str, url: str) -> dict[str, dict]:
    """Relative name -> the listing's details (name, size, ...) of every file in the folder."""
    try:
        found = fs.find(root, detail=True)
    except Exception as e:  # noqa: BLE001 - any filesystem's error, reported with the URL
        raise ModelFolderError(f"cannot list model folder {url!r}: {type(e).__name__}: {e}"
                               ) from None
    prefix = root.rstrip("/") + "/"
    files = {p[len(prefix):]: info for p, info in found.items() if p.startswith(prefix)}
    if not files:
        raise ModelFolderError(f"model folder {url!r} does not exist or holds no files; "
                               "check the URL (a folder written by save_pretrained)")
    return files


def _entry_name(url: str, files: dict[str, dict]) -> str:
    """`<hash of the URL>-<hash of the files' listing details>`."""
    content = hashlib.sha256(json.dumps(files, sort_keys=True, default=str).encode())
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{content.hexdigest()[:16]}"


@contextlib.contextmanager
def _locked(lock_path: str) -> Iterator[None]:
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _copy_atomically(fs: fsspec.AbstractFileSystem, files: dict[str, dict], target: str,
                     url: str) -> None:
    """Copies the listed files into a staging folder, then renames it to `target`.

    Every local path is checked to stay inside the staging folder before anything is
    written, so a listing with `..` or absolute names cannot write elsewhere on the machine.
    fsspec's list form of `get` then copies them (concurrently on async filesystems).
    """
    staging = tempfile.mkdtemp(prefix=".copying-", dir=os.path.dirname(target))
    try:
        remote = [info["name"] for info in files.values()]
        local = [staged_path(staging, name, url) for name in files]
        for path in local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fs.get(remote, local)
        os.rename(staging, target)
    except ModelFolderError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelFolderError(f"cannot copy model folder {url!r} to {target!r}: "
                               f"{type(e).__name__}: {e}") from None


def staged_path(staging: str, name: str, url: str) -> str:
    """The local path of the listed file `name`, refused unless it lies inside `staging`."""
    root = os.path.realpath(staging)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.isabs(name) or not path.startswith(root + os.sep):
        raise ModelFolderError(
            f"model folder {url!r} lists a file {name!r} whose path leaves the folder; "
            "refusing to copy it (a model folder holds only files below its own root)")
    return path
