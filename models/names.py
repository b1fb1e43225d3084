"""The names a config may use for what the model modules implement: confidence measures,
int8 schemes, tier runtimes, the n-gram tier's model type.

Plain strings in a module that imports nothing, so that a config is checked (and a typo
refused) in a fraction of a second, before torch is imported; the modules that implement
them take their names from here.
"""
CONFIDENCE_MEASURE_NAMES = ("max_prob", "margin", "entropy")  # models/confidence.py
LEARNED_CONFIDENCE = "learned"  # a fitted router's score: models/learned_deferral.py
QUANTIZATION_SCHEMES = ("int8", "int8_attention")  # models/onnx_export.py
RUNTIMES = ("torch", "onnxruntime", "openvino")  # models/loading.py, models/onnx_engines.py
EXPORTED_RUNTIMES = RUNTIMES[1:]  # run the exported ONNX graph: models/onnx_tier.py
OPENVINO_MISSING = ("runtime: openvino needs the openvino package, which is not installed; "
                    "pip install 'beam-cascade[openvino]' (or openvino), or use runtime: "
                    "onnxruntime")
NGRAM_MODEL_TYPE = "hashed_ngram"  # models/ngram.py
