"""torch's threads are sized from the CPUs a process may use, not the machine's count."""
import os

import pytest

from models.cpus import available_cpus, cgroup_cpu_quota


def cgroup(tmp_path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return str(tmp_path)


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000"}, None),
    ({"cpu.max": "150000 100000"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_the_cgroup_quota_in_cpus(tmp_path, files, quota):
    assert cgroup_cpu_quota(cgroup(tmp_path, files)) == quota


def test_the_affinity_mask_and_the_quota_cap_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert available_cpus(cgroup(tmp_path / "none", {})) == 6
    assert available_cpus(cgroup(tmp_path / "q", {"cpu.max": "150000 100000"})) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert available_cpus(cgroup(tmp_path / "q2", {"cpu.max": "400000 100000"})) == 1


def test_this_process_has_at_least_one_cpu():
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
