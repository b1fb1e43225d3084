"""The engines that run a tier's exported ONNX graph (models/onnx_export.py): ONNX Runtime
(`runtime: onnxruntime`) and OpenVINO (`runtime: openvino`), each made once per worker
process with the threads the process gave torch, and called the same way: a feed of int64
token arrays in, the logits out.

OpenVINO ran the reference MiniLM-L6 tier's fp32 graph 1.19-1.28x faster than ONNX Runtime
on this project's 2-core AVX-512 machines at identical predictions, and as fast beside a
busy neighbour (docs/benchmarks.md); it is an optional dependency (`pip install
'beam-cascade[openvino]'`), loaded only for such tiers.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import torch

from models.names import OPENVINO_MISSING


def new_session(onnx_path: str):
    """An ONNX Runtime CPU session with every graph optimisation, torch's thread count, and
    threads that sleep while they wait unless OMP_WAIT_POLICY asks them to spin: beside a
    busy neighbour spinning threads steal its core (bench/results/threads.md)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only: its notes on fused nodes are not for users
    return onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeGraph:
    """An exported graph in an ONNX Runtime session (whose `run` is safe across threads)."""

    def __init__(self, onnx_path: str):
        self.session = new_session(onnx_path)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]


class OpenVinoGraph:
    """An exported graph compiled by OpenVINO for the CPU.

    Settings: one stream tuned for latency (the job's passes come one at a time; the
    throughput hint's several streams ran 0.64x as fast), torch's thread count, threads not
    pinned to cores (pinned, they lost 8% beside a busy neighbour), and fp32 arithmetic even
    where the CPU offers bf16, so the answers are PyTorch's. An infer request holds its
    buffers, so each thread calling the tier (worker threads share a tier) gets its own."""

    def __init__(self, onnx_path: str):
        try:
            import openvino
        except ImportError:
            raise ImportError(OPENVINO_MISSING) from None
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(onnx_path), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": "f32"})
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._requests = threading.local()

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        request.infer(feed)
        return request.get_output_tensor(0).data.copy()  # the request reuses its buffer


ENGINES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}
