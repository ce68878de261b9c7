"""Export: checkpoint -> ONNX bundle (workstation) -> TensorRT engine (built on the device).

``export.onnx_export`` and ``export.compare`` need torch/onnx (the lab); ``export.cli`` and
``export.engine`` run on the device too (Python 3.6, no torch, no onnx package).
"""
