"""Device-side export: TensorRT engines built, cached and verified on the Jetson.

Python 3.6 compatible; imports neither torch nor the onnx package. Every TensorRT API
difference lives in ``trt_compat``.
"""
