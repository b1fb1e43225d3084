"""Tier costs calibrate measured are kept on this machine and reused only for the same
measurement: the same model files, settings, batch sizes, threads, machine and texts."""
import os
import shutil

import pytest
import torch

from models import model_cache
from models.config import TierConfig
from models.loading import load_configured_tier
from models.tuning import cost_cache

TEXTS = ["good movie", "bad plot and a dull twist", "fun", "awful film, great cast"] * 4


@pytest.fixture()
def timings(monkeypatch, tmp_path) -> list:
    """The user cache in tmp_path; each call of the timing function, counted."""
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    timed = cost_cache.seconds_per_record

    def counted(*args, **kwargs):
        calls.append(args)
        return timed(*args, **kwargs)

    monkeypatch.setattr(cost_cache, "seconds_per_record", counted)
    return calls


def measure(tier: TierConfig, batch_sizes=(2, 4), texts=TEXTS, remeasure=False) -> dict:
    return cost_cache.cached_costs(tier, load_configured_tier(tier), texts, None,
                                   list(batch_sizes), 1, "the test texts", remeasure)


def test_the_same_measurement_is_reused_and_says_so(timings, models, capsys):
    tier = TierConfig("small", models["small"])
    first = measure(tier)
    assert measure(tier) == first and len(timings) == 1
    assert "calibrate: costs of tier small (the test texts): reused from " in (
        capsys.readouterr().err)
    measure(tier, remeasure=True)
    assert len(timings) == 2  # --remeasure times again
    assert set(first) == {2, 4} and all(s > 0 for s in first.values())


def test_another_model_file_batch_size_thread_count_or_text_is_timed_afresh(
        timings, models, tmp_path):
    folder = shutil.copytree(models["small"], tmp_path / "small")
    tier = TierConfig("small", str(folder))
    measure(tier)
    measure(tier, batch_sizes=(2, 8))
    assert len(timings) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        measure(tier)
    finally:
        torch.set_num_threads(threads)
    assert len(timings) == 3
    measure(tier, texts=TEXTS + ["one more"])
    assert len(timings) == 4
    weights = os.path.join(folder, "model.safetensors")  # as a retrained model would be
    os.utime(weights, (os.path.getatime(weights), os.path.getmtime(weights) + 60))
    measure(tier)
    assert len(timings) == 5
    measure(tier)  # nothing changed since: reused
    assert len(timings) == 5


def test_a_kept_measurement_that_cannot_be_read_is_timed_again(timings, models):
    tier = TierConfig("small", models["small"])
    measure(tier)
    [kept] = os.listdir(cost_cache.costs_folder())
    with open(os.path.join(cost_cache.costs_folder(), kept), "w") as f:
        f.write("{half a fi")
    measure(tier)
    assert len(timings) == 2
