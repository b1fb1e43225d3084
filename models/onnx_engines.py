"""The engines that run a tier's exported ONNX graph (models/onnx_export.py): ONNX Runtime
(`runtime: onnxruntime`) and OpenVINO (`runtime: openvino`), each made once per worker
process with the threads the process gave torch, and called the same way: a feed of int64
token arrays in, the logits out.

OpenVINO ran the reference MiniLM-L6 tier's fp32 graph 1.20x faster than ONNX Runtime on
this project's 2-core AVX-512 machines at identical predictions (docs/adaptive-tiers.md);
it is an optional dependency (`pip install 'beam-cascade[openvino]'`), loaded only for such
tiers, whose answers on the export's check texts must be ONNX Runtime's (models/onnx_tier.py).
"""
from __future__ import annotations

import os
import queue

import numpy as np
import torch

from models.cpus import available_cpus
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

    Worker threads that share a tier call it at once, and an OpenVINO stream runs one request
    at a time, so the graph gets as many streams as the process's CPUs hold workers' thread
    counts (torch's count, which the options sized per worker: models/loading.py), each of
    that many threads: one stream of every CPU for a one-worker process, one a thread for
    worker threads sharing it. Threads are not pinned to cores (pinned, they lost 8% beside a
    busy neighbour), and the arithmetic stays fp32 even where the CPU offers bf16, so the
    answers are PyTorch's. Requests hold their buffers: a call takes an idle one, or makes
    one, and gives it back."""

    def __init__(self, onnx_path: str):
        openvino = import_openvino()
        threads = torch.get_num_threads()
        streams = max(1, available_cpus() // threads)
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(onnx_path), "CPU", {
            "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams * threads,
            "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": "f32"})
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._idle = queue.SimpleQueue()

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer(feed)
            return request.get_output_tensor(0).data.copy()  # the request reuses its buffer
        finally:
            self._idle.put(request)


def import_openvino():
    """The openvino module; ImportError saying how to install it when it is not installed
    (a broken install raises its own error)."""
    try:
        import openvino
    except ModuleNotFoundError as e:
        if e.name != "openvino":
            raise
        raise ImportError(OPENVINO_MISSING) from None
    return openvino


ENGINES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}
