"""The ONNX Runtime session every ONNX tier runs in: its optimisations and threads."""
from __future__ import annotations

import os

import torch


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
