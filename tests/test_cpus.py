"""torch's threads are sized from the CPUs a process may use, not the machine's count."""
import os
import subprocess
import sys

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


TORCH_LOADS_AFTER_THE_SETTING = """
import os, sys
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("policy when torch loads:", os.environ.get("OMP_WAIT_POLICY"))
            sys.meta_path.remove(self)
sys.meta_path.insert(0, Watch())
import {module}
"""


@pytest.mark.parametrize("module", ["pipeline.job", "pipeline.calibrate", "models.loading"])
def test_openmp_threads_wait_passively_from_before_torch_loads(module):
    """The job, calibrate and the models set OMP_WAIT_POLICY before torch reads it (spinning
    threads lost 1.7x beside a busy neighbour, bench/results/threads.md); the job's and
    calibrate's torch loads later, when they run, and sees it too."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = TORCH_LOADS_AFTER_THE_SETTING.format(module=module) + (
        "import torch\nprint('policy after:', os.environ['OMP_WAIT_POLICY'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    assert done.stdout.splitlines() == ["policy when torch loads: PASSIVE",
                                        "policy after: PASSIVE"]


def test_a_wait_policy_the_user_set_is_kept():
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    done = subprocess.run([sys.executable, "-c", "import os, models; "
                           "print(os.environ['OMP_WAIT_POLICY'])"],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "ACTIVE"
