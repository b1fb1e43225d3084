"""scripts/venv.sh marks an environment complete only when every install succeeded, so a
failure mid-install (a network error) is rebuilt next time instead of cached as complete."""
import os
import shutil
import subprocess
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
