"""The benchmark's peer: what a user would write without beam-cascade.

Beam's stock `RunInference` with `HuggingFacePipelineModelHandler` (a transformers
text-classification pipeline) over the same JSONL input, keyed by record id, batched 64 at a
time by Beam and by the HF pipeline (whose own batch_size defaults to 1). Runs in the peer's
environment (bench/peer_venv.sh) and prints one JSON line: wall seconds of the Beam job,
model load included, like the project's jobs in the benchmark, and its peak resident memory
measured as bench/timed_job.py measures the project's.
"""
from __future__ import annotations

import argparse
import json
import time

# Torch's triton and TensorFlow both bundle LLVM; whichever loads second aborts the process
# ("Option ... registered more than once") unless triton comes first.
try:
    import triton  # noqa: F401
except ImportError:
    pass

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.ml.inference.huggingface_inference import (HuggingFacePipelineModelHandler,
                                                            PipelineTask)
from apache_beam.options.pipeline_options import PipelineOptions

from bench.lib.memory import peak_rss_mib


def pipeline_on_list(batch, pipeline, inference_args):
    """The handler's default inference_fn, given a list: KeyedModelHandler unzips the keyed
    batch into a tuple, which the HF pipeline takes for one input and fails to pad ("Unable
    to create tensor"), so a user keying by id has to pass this."""
    return pipeline(list(batch), **inference_args)


def id_and_text(line: str) -> tuple[str, str]:
    record = json.loads(line)
    return record["id"], record["text"]


def prediction_line(keyed_result) -> str:
    record_id, result = keyed_result
    top = result.inference[0] if isinstance(result.inference, list) else result.inference
    return json.dumps({"id": record_id, "label": top["label"], "score": top["score"]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True, help="file prefix for the predictions")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--runner", default="FnApiRunner")
    args = p.parse_args()
    handler = KeyedModelHandler(HuggingFacePipelineModelHandler(
        task=PipelineTask.TextClassification, model=args.model, device="CPU",
        inference_fn=pipeline_on_list, min_batch_size=args.batch_size,
        max_batch_size=args.batch_size))
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions([], runner=args.runner)) as pipeline:
        _ = (pipeline
             | beam.io.ReadFromText(args.input)
             | beam.Map(id_and_text)
             | RunInference(handler, inference_args={"batch_size": args.batch_size,
                                                     "truncation": True})
             | beam.Map(prediction_line)
             | beam.io.WriteToText(args.output, file_name_suffix=".jsonl"))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
