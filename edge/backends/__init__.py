"""Inference backends and ``open_runner``, the one way to get a runner for a bundle.

The backend table maps a name to a loader (bundle, options -> unloaded Runner) and a capability
check (-> None when usable here, else the reason). ``auto`` takes the first usable backend of
``AUTO_ORDER`` and records why it skipped the others in ``runner.fallback_reason`` so the kiosk
can show it; an explicitly named backend that cannot run is an error, never a silent switch.

    with open_runner(bundle, backend="auto") as runner:
        outputs = runner.infer(batch)
"""

import logging

from edge.backends import onnxruntime as _ort
from edge.backends import tensorrt as _trt
from edge.backends.base import PRECISIONS, Runner
from edge.errors import BackendError, ConfigError

LOG = logging.getLogger("medkiosk.backends")

AUTO = "auto"
AUTO_ORDER = ("tensorrt", "onnxruntime")


class Backend(object):
    """One row of the backend table."""

    def __init__(self, name, load, check, summary):
        self.name = name
        self.load = load
        self.check = check
        self.summary = summary


BACKENDS = {
    "tensorrt": Backend("tensorrt", _trt.load_tensorrt, _trt.check_tensorrt,
                        "TensorRT engine via pycuda (Jetson GPU)"),
    "onnxruntime": Backend("onnxruntime", _ort.load_onnxruntime, _ort.check_onnxruntime,
                           "ONNX Runtime (TensorRT/CUDA/CPU execution providers)"),
}
BACKEND_CHOICES = (AUTO,) + tuple(sorted(BACKENDS))

__all__ = ["AUTO", "AUTO_ORDER", "BACKENDS", "BACKEND_CHOICES", "Backend", "Runner", "open_runner",
           "validate_backend"]


def validate_backend(name, precision="fp16"):
    """Raise ConfigError unless ``name`` and ``precision`` are known; call before any work starts."""
    if name not in BACKEND_CHOICES:
        raise ConfigError("backend {!r} is unknown; use one of {}".format(name, ", ".join(BACKEND_CHOICES)))
    if precision not in PRECISIONS:
        raise ConfigError("precision {!r} is unknown; use one of {}".format(precision, ", ".join(PRECISIONS)))
    return name


def open_runner(bundle, backend=AUTO, precision="fp16", engine_cache=None, allow_build=False, **options):
    """An unloaded Runner for ``bundle`` (use it as a context manager to load and release it).

    ``options`` go to the loader (onnxruntime: ``providers``, ``threads``, ``spinning``).
    """
    validate_backend(backend, precision)
    kwargs = dict(options, precision=precision, engine_cache=engine_cache, allow_build=allow_build)
    if backend != AUTO:
        entry = BACKENDS[backend]
        reason = entry.check(bundle, **kwargs)
        if reason:
            raise BackendError("backend {} cannot run {}: {}".format(backend, bundle.bundle_id, reason))
        return entry.load(bundle, **kwargs)
    skipped = []
    for name in AUTO_ORDER:
        entry = BACKENDS[name]
        reason = entry.check(bundle, **kwargs)
        if reason:
            skipped.append("{} unavailable ({})".format(name, reason))
            continue
        runner = entry.load(bundle, **kwargs)
        if skipped:
            runner.fallback_reason = "Using {}: {}".format(name, "; ".join(skipped))
            LOG.warning("%s: %s", bundle.bundle_id, runner.fallback_reason)
        return runner
    raise BackendError("no inference backend can run {}: {}".format(bundle.bundle_id, "; ".join(skipped)))
