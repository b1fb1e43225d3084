"""Every command reads its arguments and checks the config before torch, transformers and
Beam load (they take seconds): `--help` and a mistake answer at once. Checked by what a
fresh process has imported, not by time (timings are noisy here)."""
import subprocess
import sys

import pytest
from conftest import ROOT

HEAVY = ("torch", "transformers", "apache_beam")
PROBE = """
import sys
from pipeline.cli import main
try:
    status = main({argv!r})
except SystemExit as e:
    status = e.code
print("STATUS", status, *[m for m in {heavy!r} if m in sys.modules])
"""


def loaded_after(argv: list[str]) -> tuple[int, list[str]]:
    """The exit status of `beam-cascade ARGV` in a fresh process, and the heavy modules it
    imported."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    status, *loaded = done.stdout.split("STATUS", 1)[1].split()
    return int(status), loaded


@pytest.mark.parametrize("argv, status", [
    (["--help"], 0),
    (["run", "--help"], 0),
    (["train", "--help"], 0),
    (["calibrate", "--help"], 0),
    (["predict", "--help"], 0),
    (["run", "--config", "/no/such/cascade.yaml", "--input", "x", "--output", "y"], 2),
    (["run", "--tier1", "a", "--tier2", "b"], 2),  # no --threshold
])
def test_help_and_config_mistakes_answer_before_the_heavy_imports(argv, status):
    assert loaded_after(argv) == (status, [])


def test_a_config_typo_is_refused_before_the_heavy_imports(tmp_path):
    config = tmp_path / "cascade.yaml"
    config.write_text("tiers:\n  - model: some/tier\n    thresold: 0.9\n  - model: other\n")
    assert loaded_after(["run", "--config", str(config), "--input", "x", "--output", "y"]) == (
        2, [])
