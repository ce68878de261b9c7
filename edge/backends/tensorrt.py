"""TensorRT backend via pycuda (Jetson GPU). Work in progress: capability check only."""

from edge.errors import BackendError

TRT_HINT = "on a Jetson install JetPack's TensorRT Python bindings (apt: python3-libnvinfer)"
PYCUDA_HINT = "pip install pycuda (needs the CUDA toolkit from JetPack)"


def _import(name):
    import importlib

    return importlib.import_module(name)


def check_tensorrt(bundle, **options):
    """None when TensorRT can run ``bundle`` here; else the reason."""
    for module, hint in (("tensorrt", TRT_HINT), ("pycuda.driver", PYCUDA_HINT)):
        try:
            _import(module)
        except ImportError as exc:
            return "{} not importable ({}); {}".format(module, exc, hint)
        except Exception as exc:  # a broken native install raises OSError/RuntimeError on import
            return "{} fails to import ({})".format(module, exc)
    return "the TensorRT runner is not available in this build"


def load_tensorrt(bundle, **options):
    raise BackendError("the TensorRT runner is not available in this build; use --backend onnxruntime")
