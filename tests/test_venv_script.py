"""scripts/venv.sh marks an environment complete only when every install succeeded, so a
failure mid-install (a network error) is rebuilt next time instead of cached as complete; and
checkouts that share the cached environment each run their own code."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_failed_install_is_not_marked_complete(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "venv.sh", checkout / "scripts" / "venv.sh")
    (checkout / "requirements.txt").write_text("beam-cascade-no-such-package==0.0.0\n")
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", "-c", "source scripts/venv.sh"], cwd=checkout,
                          capture_output=True, text=True, timeout=600,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                               "BEAM_CASCADE_VENV": str(venv)})
    assert not (venv / ".complete").exists()
    assert done.returncode != 0
    assert f"building {venv} failed" in done.stderr


def test_two_checkouts_sharing_the_environment_each_run_their_own_code(tmp_path):
    """The environment is shared per requirements hash; the project is not installed into
    it, so each checkout's `beam-cascade` runs that checkout's code."""
    outputs = []
    for name in ("first", "second"):
        checkout = tmp_path / name
        (checkout / "scripts").mkdir(parents=True)
        (checkout / "pipeline").mkdir()
        shutil.copy(ROOT / "scripts" / "venv.sh", checkout / "scripts" / "venv.sh")
        shutil.copy(ROOT / "requirements.txt", checkout / "requirements.txt")
        (checkout / "pipeline" / "__init__.py").write_text("")
        (checkout / "pipeline" / "cli.py").write_text(f"print('this is the {name} checkout')\n")
        done = subprocess.run(
            ["bash", "-c", "source scripts/venv.sh && cd / && beam-cascade"], cwd=checkout,
            capture_output=True, text=True, timeout=300,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                 "BEAM_CASCADE_VENV": sys.prefix})
        outputs.append(done.stdout.strip())
    assert outputs == ["this is the first checkout", "this is the second checkout"]
