"""Ready for Dataflow: the job translates to a Dataflow job (`--dry_run`: built, not
submitted) and `--setup_file ./setup.py` ships every package the workers import."""
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import write_jsonl

from pipeline.job import build_pipeline, job_from_options

ROOT = Path(__file__).parent.parent


def test_the_cascade_builds_as_a_dataflow_job(tmp_path, models):
    rows = write_jsonl(tmp_path / "in.jsonl", [{"text": "good movie"}])
    options = PipelineOptions([
        "--runner", "DataflowRunner", "--dry_run", "True", "--project", "beam-cascade-ci",
        "--region", "us-central1", "--temp_location", "gs://beam-cascade-ci/tmp",
        "--setup_file", str(ROOT / "setup.py"), "--input", str(rows),
        "--output", "gs://beam-cascade-ci/out", "--tier1", models["small"],
        "--tier2", models["large"], "--threshold", "0.9"])
    job = job_from_options(options)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, job)
    result = pipeline.run()

    transforms = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    for step in ("Read", "Parse", "Cascade/Score[tier1]/RunInference",
                 "Cascade/Route[tier1]", "Cascade/Score[tier2]/RunInference",
                 "WritePredictions", "WriteErrors", "RoutingStats", "WriteStats"):
        assert step in transforms, step
    assert result.job.proto.type.name == "JOB_TYPE_BATCH"
    assert job.threads.per_worker == 1  # one SDK process per vCPU on Dataflow


def test_setup_py_packages_everything_the_workers_import(tmp_path):
    """Beam stages `--setup_file` by running `setup.py sdist`; the archive must hold the
    three packages."""
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in sdist.getnames()}
    for module in ("pipeline/run.py", "transforms/scoring.py", "models/loading.py",
                   "models/model_cache.py", "transforms/spreading.py"):
        assert module in names, module
