"""TensorRT on the device: engines built, cached, verified and run on the Jetson.

Python 3.6 compatible; imports neither torch nor the onnx package, and nothing from ``export`` or
``training``. Every TensorRT API difference lives in ``trt_compat`` (feature detection);
``gpu`` names the GPU, ``cache`` keys and checks engines, ``builder`` builds them, ``runner`` runs
one with pycuda, ``manage`` ties these into ensure / verify / rebuild. The kiosk's inference
backend (``edge.backends.tensorrt``) and ``medkiosk export engine|verify|engines``
(``edge.commands.engines``) are built on this package.
"""
