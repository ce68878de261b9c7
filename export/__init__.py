"""Export, the workstation side: checkpoint -> ONNX bundle (needs torch and onnx), and comparing backends.

TensorRT engines are built, cached and verified on the device by ``edge.tensorrt``
(``medkiosk export engine|verify|engines``); this package imports it downward, never the reverse.
"""
