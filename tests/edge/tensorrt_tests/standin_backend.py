"""The kiosk's TensorRT backend on the STAND-INS (standins.py), for where ONNX Runtime is absent.

A JetPack 4.6 Nano has no ONNX Runtime: its kiosk runs TensorRT engines. ``make test-jetpack46``
reproduces that library set, so the kiosk tests run there through ``edge.backends.tensorrt``
(engine cache, CUDA context discipline, buffers, execute) with the stand-in ``tensorrt`` and
``pycuda.driver`` put in ``sys.modules`` for the test; the stand-in engine computes with the numpy
evaluator (tests/onnx_numpy.py). These are FAKES of TensorRT and CUDA, which cannot exist here;
TensorRT's own numerics are not tested. Where ONNX Runtime is installed the tests use it as before.
"""

import os
import sys
import tempfile
import threading
import types

from tests.edge.tensorrt_tests.standins import FakeCuda, FakeDeviceAllocation, StandinError, StandinTensorRT

STANDIN_VERSION = "8.2.1"  # JetPack 4.6's TensorRT
# Engines the stand-in builds for the tests of this process (cheap: the ONNX bytes and a header).
ENGINE_CACHE = os.path.join(tempfile.gettempdir(), "medkiosk-standin-engines-{}".format(os.getpid()))


def has_onnxruntime():
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Allocation(FakeDeviceAllocation):
    def __init__(self, cuda, address):
        FakeDeviceAllocation.__init__(self, address)
        self._cuda = cuda

    def free(self):
        self._cuda.require_context("free")


class _Context(object):
    def __init__(self, cuda):
        self._cuda = cuda

    def push(self):
        self._cuda.stack().append(self)

    def pop(self):
        stack = self._cuda.stack()
        if not stack or stack[-1] is not self:
            raise StandinError("cuCtxPopCurrent: this context is not current on this thread")
        stack.pop()

    def detach(self):
        if self in self._cuda.stack():
            raise StandinError("detaching a context still current on this thread")


class _Device(object):
    def __init__(self, cuda, number):
        self._cuda, self._number = cuda, number

    def name(self):
        return "Stand-in GPU"

    def compute_capability(self):
        return (5, 3)  # a Nano's Maxwell GPU

    def make_context(self):
        context = _Context(self._cuda)
        context.push()
        return context


class FakePycudaDriver(FakeCuda):
    """``pycuda.driver`` with devices and per-thread context stacks: memory calls need a current context
    when one was ever made (the runner's discipline), like the real driver's "invalid device context"."""

    def __init__(self):
        FakeCuda.__init__(self)
        self._local = threading.local()
        self._contexts = 0

    def init(self):
        return None

    def Device(self, number):  # noqa: N802 - pycuda's name
        return _Device(self, number)

    def stack(self):
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def require_context(self, what):
        if not self.stack():
            raise StandinError("{}: invalid device context (no context current on this thread)".format(what))

    def mem_alloc(self, nbytes):
        return _Allocation(self, int(FakeCuda.mem_alloc(self, nbytes)))

    def memcpy_htod_async(self, dest, src, stream=None):
        self.require_context("memcpy_htod_async")
        FakeCuda.memcpy_htod_async(self, dest, src, stream)

    def memcpy_dtoh_async(self, dest, src, stream=None):
        self.require_context("memcpy_dtoh_async")
        FakeCuda.memcpy_dtoh_async(self, dest, src, stream)


def install(monkeypatch, version=STANDIN_VERSION):
    """Put a stand-in ``tensorrt`` and ``pycuda.driver`` in sys.modules for one test; (trt, cuda)."""
    cuda = FakePycudaDriver()
    trt = StandinTensorRT(version, memory=cuda)
    package = types.ModuleType("pycuda")
    package.driver = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    return trt, cuda


def opener_for_tests(quality=None, engine_cache=ENGINE_CACHE, **kwargs):
    """``edge.kiosk.default_classifier_opener`` on ONNX Runtime where it is installed, else on the
    TensorRT backend with an engine built (by the stand-in, through ``edge.tensorrt.manage``) into
    ``engine_cache`` on first use of each bundle."""
    from edge.kiosk import default_classifier_opener

    if has_onnxruntime():
        return default_classifier_opener("onnxruntime", "fp32", None, quality, **kwargs)
    opener = default_classifier_opener("tensorrt", "fp32", str(engine_cache), quality, **kwargs)

    def open_classifier(slot):
        ensure_standin_engine(slot.bundle, engine_cache)
        return opener(slot)

    return open_classifier


def ensure_standin_engine(bundle, engine_cache):
    from edge.tensorrt.manage import ensure_engine

    if "tensorrt" not in sys.modules or not isinstance(sys.modules["tensorrt"], StandinTensorRT):
        raise StandinError("the TensorRT stand-in is not installed (standin_backend.install)")
    os.makedirs(str(engine_cache), exist_ok=True)
    return ensure_engine(bundle, str(engine_cache), precision="fp32")


def backend_in_use():
    """What a Prediction's ``backend`` starts with on the backend the tests run on."""
    return "onnxruntime" if has_onnxruntime() else "tensorrt"
