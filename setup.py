"""beam-cascade: cheap, accurate bulk text classification with a cascade of transformers.

`--setup_file ./setup.py` ships these packages to Beam workers (Dataflow, Flink).
"""
from setuptools import setup

setup(
    name="beam-cascade",
    version="0.1.0",
    description="Apache Beam pipeline that classifies text with a confidence-routed "
                "cascade of models",
    packages=["pipeline", "transforms", "models", "models.tuning"],
    python_requires=">=3.10",
    install_requires=[
        "apache-beam>=2.60",
        "torch>=2.2",
        "transformers>=5.0",  # models/early_exit.py uses transformers 5 layer and mask APIs
        "pyarrow>=14",
        "safetensors>=0.4",
        "tokenizers>=0.20",  # the word CNN's word-piece file (models/word_cnn.py)
        "fsspec>=2023.1",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "orjson>=3.9",  # JSON Lines in and out at a fifth of json's cost (pipeline/sinks.py)
        "scipy>=1.10",  # exact binomial bounds (models/guarantee.py), the shift test
        # runtime: onnxruntime (models/onnx_tier.py): the session, int8 quantisation, and
        # torch.export's ONNX exporter; apache-beam needs protobuf below 7, onnx pulls 7
        "onnxruntime>=1.20",
        "onnx>=1.17",
        "onnxscript>=0.5",
        "protobuf<7",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6", "openvino>=2024.0"],
        # runtime: openvino (models/onnx_engines.py): 1.2x ONNX Runtime's fp32 speed on
        # this project's 2-core AVX-512 machines, but a 60 MB wheel most jobs do not need
        "openvino": ["openvino>=2024.0"],
    },
    entry_points={"console_scripts": [
        "beam-cascade=pipeline.cli:main",
        # started by runners as the Kafka source's Java worker (pipeline/java_harness.py)
        "beam-cascade-java-harness=pipeline.java_harness:main",
    ]},
)
