"""Tier folders at fsspec URLs: copied once per machine into a local cache, atomically, reused
while unchanged, copied anew when changed; the job classifies from them as from a local path.
"""
import os
import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from conftest import read_predictions, run_job, upload, write_jsonl

from models import model_cache
from models.model_cache import ModelFolderError, local_model_folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(model_cache.CACHE_ENV, str(folder))
    return folder


def copies(monkeypatch) -> list[str]:
    """Records every file the cache fetches from memory://."""
    fetched: list[str] = []
    memory = type(fsspec.filesystem("memory"))
    get_file = memory.get_file

    def counting(self, remote, local, *args, **kwargs):
        fetched.append(remote)
        return get_file(self, remote, local, *args, **kwargs)

    monkeypatch.setattr(memory, "get_file", counting)
    return fetched


def same_files(a: str, b: str) -> bool:
    names = sorted(p.relative_to(a) for p in Path(a).rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b) for p in Path(b).rglob("*") if p.is_file()) and all(
        (Path(a) / n).read_bytes() == (Path(b) / n).read_bytes() for n in names)


def test_local_paths_and_file_urls_are_used_in_place(models):
    assert local_model_folder(models["small"]) == models["small"]
    assert local_model_folder(f"file://{models['small']}") == models["small"]


def test_a_url_is_copied_once_then_reused_and_copied_again_when_it_changes(
        models, cache, monkeypatch):
    url, fetched = upload(models["small"]), copies(monkeypatch)
    first = local_model_folder(url)
    assert Path(first).parent == cache and same_files(first, models["small"])
    files = len(fetched)
    assert local_model_folder(url) == first and len(fetched) == files  # no second copy

    fsspec.filesystem("memory").pipe(f"{url}/config.json",
                                     Path(models["medium"], "config.json").read_bytes())
    changed = local_model_folder(url)
    assert changed != first and len(fetched) == 2 * files
    assert Path(changed, "config.json").read_bytes() == Path(
        models["medium"], "config.json").read_bytes()


def test_concurrent_loaders_share_one_complete_copy(models, cache, monkeypatch):
    url, fetched = upload(models["large"]), copies(monkeypatch)
    barrier, results = threading.Barrier(6), []

    def load():
        barrier.wait()
        results.append(local_model_folder(url))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and same_files(results[0], models["large"])
    assert len(fetched) == len(os.listdir(models["large"]))  # copied by one loader only
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [Path(results[0]).name]


def test_a_copy_that_fails_midway_leaves_nothing_behind(models, cache, monkeypatch):
    url = upload(models["small"])
    memory = type(fsspec.filesystem("memory"))
    monkeypatch.setattr(memory, "get_file", lambda *a, **k: (_ for _ in ()).throw(
        OSError("connection reset")))
    with pytest.raises(ModelFolderError, match="cannot copy model folder .*connection reset"):
        local_model_folder(url)
    assert not [p for p in cache.iterdir() if p.is_dir()]


def test_a_missing_url_is_refused_before_the_job(tmp_path, models, capsys):
    from pipeline.run import main
    rows = write_jsonl(tmp_path / "in.jsonl", [{"text": "good movie"}])
    code = main(["--input", str(rows), "--output", str(tmp_path / "out"),
                 "--tier1", "memory://models/nowhere", "--runner", "FnApiRunner"])
    assert code == 2
    assert "model folder 'memory://models/nowhere' does not exist" in capsys.readouterr().err


def test_the_job_classifies_from_urls_as_from_local_folders(tmp_path, models):
    rows = write_jsonl(tmp_path / "in.jsonl", [
        {"id": str(i), "text": " ".join("good bad plot fun dull".split()[: 1 + i % 5])}
        for i in range(60)])

    def predictions(tiers: list[str], out: str) -> list[tuple]:
        run_job(["--input", str(rows), "--output", str(tmp_path / out), "--id_field", "id",
                 "--tier1", tiers[0], "--tier2", tiers[1], "--threshold", "0.9"])
        return sorted((p["id"], p["label"], p["decided_by"], round(p["confidence"], 6))
                      for p in read_predictions(tmp_path / out))

    local = predictions([models["small"], models["medium"]], "local")
    remote = predictions([upload(models["small"]), upload(models["medium"])], "remote")
    assert remote == local


def test_a_listed_name_that_climbs_out_of_the_cache_is_refused(cache, tmp_path):
    """A remote listing may name `../..`: the copy must not write outside its folder, and
    nothing is written before the whole listing is checked."""
    url = f"memory://models/{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{url}/config.json", b"{}")
    fs.pipe(f"{url}/../../ESCAPED", b"written outside the cache")  # staging/../.. = tmp_path
    with pytest.raises(ModelFolderError, match=r"lists a file '\.\./\.\./ESCAPED' whose path "
                                               "leaves the folder"):
        local_model_folder(url)
    assert not list(tmp_path.rglob("ESCAPED"))
    assert not [p for p in cache.iterdir() if p.is_dir()]


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../b", "../x"])
def test_staged_paths_stay_inside_the_staging_folder(tmp_path, name):
    with pytest.raises(ModelFolderError, match="leaves the folder"):
        model_cache.staged_path(str(tmp_path), name, "memory://m")
    assert model_cache.staged_path(str(tmp_path), "a/./b", "memory://m") == str(tmp_path / "a/b")
