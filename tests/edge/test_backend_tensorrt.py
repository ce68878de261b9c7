"""TensorRT runner against strict stand-ins for ``tensorrt`` and ``pycuda.driver``.

TensorRT and a CUDA GPU cannot exist on this machine, so these are FAKES, and they say so. They are
strict where the real libraries are unforgiving: pycuda memory/stream calls fail with "invalid
device context" unless the runner's context is current on the calling thread, popping a context
that is not on top fails, detaching a context still on a stack fails; the TensorRT stand-ins
expose only one API generation each (8.2 bindings + execute_async_v2, or 8.5+/10.x named tensors +
execute_async_v3) so the wrong path raises AttributeError. The fake engine really computes (a
softmax over scaled image means) from the bytes copied to "device" memory, so the data path is
checked too. Real-GPU tests are marked ``gpu`` and run on a Jetson (``medkiosk selftest`` covers the
device end to end).
"""

import json
import os
import threading

import numpy as np
import pytest

from edge.backends.tensorrt import TensorRTRunner
from edge.bundle import load_bundle
from edge.errors import MedkioskError

FAKE_ENGINE = b"FAKE-TRT-ENGINE"


# ---------------------------------------------------------------- pycuda.driver stand-in
class CudaError(Exception):
    pass


class FakeAllocation(object):
    def __init__(self, cuda, nbytes):
        self.cuda = cuda
        self.data = np.zeros(nbytes, dtype=np.uint8)
        self.address = 0x1000 + 0x100000 * len(cuda.allocations)
        self.freed = False

    def __int__(self):
        return self.address

    def free(self):
        self.cuda.require_context("free")
        self.freed = True


class FakeStream(object):
    def __init__(self, cuda):
        self.cuda = cuda
        self.handle = 77

    def synchronize(self):
        self.cuda.require_context("Stream.synchronize")


class FakeContext(object):
    def __init__(self, cuda):
        self.cuda = cuda
        self.detached = False

    def push(self):
        self.cuda.stack().append(self)
        self.cuda.log.append("push")

    def pop(self):
        stack = self.cuda.stack()
        if not stack or stack[-1] is not self:
            raise CudaError("cuCtxPopCurrent failed: context stack empty or not current")
        stack.pop()
        self.cuda.log.append("pop")

    def detach(self):
        if any(self in s for s in self.cuda.all_stacks):
            raise CudaError("detaching a context that is still on a context stack")
        self.detached = True
        self.cuda.log.append("detach")


class FakeDevice(object):
    def __init__(self, cuda, number):
        self.cuda = cuda
        self.number = number

    def name(self):
        return "Fake Orin"

    def compute_capability(self):
        return (8, 7)

    def make_context(self):
        context = FakeContext(self.cuda)
        self.cuda.contexts.append(context)
        context.push()
        return context


class FakeCuda(object):
    """Module-like stand-in for ``pycuda.driver`` (only what the runner may use)."""

    def __init__(self):
        self._local = threading.local()
        self.all_stacks = []
        self.contexts, self.allocations, self.pagelocked, self.log = [], [], [], []
        self.initialised = False

    def stack(self):
        if not hasattr(self._local, "stack"):
            self._local.stack = []
            self.all_stacks.append(self._local.stack)
        return self._local.stack

    def require_context(self, what):
        stack = self.stack()
        if not stack or stack[-1].detached:
            raise CudaError("{}: invalid device context".format(what))

    def init(self):
        self.initialised = True

    def Device(self, number):  # noqa: N802 - pycuda's name
        if not self.initialised:
            raise CudaError("cuInit has not been called")
        return FakeDevice(self, number)

    def pagelocked_empty(self, shape, dtype):
        self.require_context("pagelocked_empty")
        array = np.zeros(shape, dtype=dtype)
        self.pagelocked.append(array)
        return array

    def mem_alloc(self, nbytes):
        self.require_context("mem_alloc")
        allocation = FakeAllocation(self, nbytes)
        self.allocations.append(allocation)
        return allocation

    def Stream(self):  # noqa: N802 - pycuda's name
        self.require_context("Stream")
        return FakeStream(self)

    def memcpy_htod_async(self, dest, src, stream):
        self.require_context("memcpy_htod_async")
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        dest.data[:raw.size] = raw

    def memcpy_dtoh_async(self, dest, src, stream):
        self.require_context("memcpy_dtoh_async")
        flat = dest.reshape(-1).view(np.uint8)
        flat[:] = src.data[:flat.size]

    def by_address(self, address):
        return [a for a in self.allocations if a.address == address][0]


# ---------------------------------------------------------------- tensorrt stand-ins
class FakeLogger(object):
    WARNING = "WARNING"

    def __init__(self, severity):
        self.severity = severity


class TensorIOMode(object):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


def compute(image_batch, classes):
    """What the fake engine computes: softmax(mean(image) / 255 * [0, 1, 2, ...])."""
    means = image_batch.reshape(image_batch.shape[0], -1).mean(axis=1) / 255.0
    logits = means[:, None] * np.arange(classes, dtype=np.float32)[None, :]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class _EngineBase(object):
    def __init__(self, cuda, tensors, fail_execute):
        self.cuda = cuda
        self.tensors = tensors  # [(name, is_input, shape)]
        self.fail_execute = fail_execute
        self.executions = 0

    def shape_of(self, name):
        return [t[2] for t in self.tensors if t[0] == name][0]


class _ContextBase(object):
    def __init__(self, engine):
        self.engine = engine
        self.shapes = {}

    def _run(self, addresses):
        self.engine.cuda.require_context("execute")
        engine = self.engine
        engine.executions += 1
        if engine.fail_execute:
            return False
        (in_name, _i, in_shape), = [t for t in engine.tensors if t[1]]
        batch = self.shapes.get(in_name, in_shape)[0]
        shape = (batch,) + tuple(in_shape[1:])
        count = int(np.prod(shape))
        images = addresses[in_name].data[:count * 4].view(np.float32).reshape(shape)
        out_name, _o, out_shape = [t for t in engine.tensors if not t[1]][0]
        probs = compute(images, out_shape[1])
        addresses[out_name].data[:probs.nbytes] = probs.view(np.uint8).reshape(-1)
        return True


class ContextV3(_ContextBase):
    def __init__(self, engine):
        super().__init__(engine)
        self.addresses = {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = self.engine.cuda.by_address(address)

    def execute_async_v3(self, stream_handle):
        assert stream_handle == 77
        return self._run(self.addresses)


class EngineV3(_EngineBase):
    """TensorRT 8.5+/10.x: named tensors only (no bindings API)."""

    @property
    def num_io_tensors(self):
        return len(self.tensors)

    def get_tensor_name(self, index):
        return self.tensors[index][0]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if [t for t in self.tensors if t[0] == name][0][1] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self.shape_of(name)

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        self.cuda.require_context("create_execution_context")
        return ContextV3(self)


class ContextV2(_ContextBase):
    def set_binding_shape(self, index, shape):
        self.shapes[self.engine.tensors[index][0]] = tuple(shape)
        return True

    def execute_async_v2(self, bindings, stream_handle):
        assert stream_handle == 77
        names = [t[0] for t in self.engine.tensors]
        return self._run({n: self.engine.cuda.by_address(a) for n, a in zip(names, bindings)})


class EngineV2(_EngineBase):
    """TensorRT 8.2 (Jetson Nano): bindings only (no named-tensor API)."""

    @property
    def num_bindings(self):
        return len(self.tensors)

    def get_binding_name(self, index):
        return self.tensors[index][0]

    def binding_is_input(self, index):
        return self.tensors[index][1]

    def get_binding_shape(self, index):
        return self.tensors[index][2]

    def get_binding_dtype(self, index):
        return np.float32

    def create_execution_context(self):
        self.cuda.require_context("create_execution_context")
        return ContextV2(self)


def fake_tensorrt(cuda, engine_class, tensors, version, fail_execute=False):
    """A module-like TensorRT stand-in with one API generation."""
    engines = []

    class Runtime(object):
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            cuda.require_context("deserialize_cuda_engine")
            if not bytes(data).startswith(FAKE_ENGINE):
                return None
            engine = engine_class(cuda, tensors, fail_execute)
            engines.append(engine)
            return engine

    class Module(object):
        pass

    module = Module()
    module.__version__ = version
    module.Logger = FakeLogger
    module.Runtime = Runtime
    module.TensorIOMode = TensorIOMode
    module.nptype = lambda dtype: dtype
    module.engines = engines
    return module


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def _tensors(bundle, batch=1):
    spec = bundle.description.input
    return [("image", True, [batch, spec.channels, spec.height, spec.width]),
            ("probabilities", False, [batch, bundle.description.num_classes])]


@pytest.fixture
def engine_file(tmp_path):
    path = str(tmp_path / "model.fp16.engine")
    with open(path, "wb") as handle:
        handle.write(FAKE_ENGINE)
    with open(path + ".json", "w") as handle:
        json.dump({"precision": "fp16"}, handle)
    return path


def _runner(bundle, engine_file, engine_class=EngineV3, batch=1, max_batch=1, version="10.3.0", **kwargs):
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, engine_class, _tensors(bundle, batch), version, **kwargs)
    runner = TensorRTRunner(bundle, engine_file, precision="fp16", max_batch=max_batch, trt_module=trt,
                            cuda_module=cuda)
    return runner, cuda, trt


def _images(bundle, n=1, seed=0):
    rng = np.random.RandomState(seed)
    return rng.uniform(0, 255, size=bundle.description.input.shape(n)).astype(np.float32)


def _balanced(cuda):
    return all(not stack for stack in cuda.all_stacks)


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("engine_class, version", [(EngineV3, "10.3.0"), (EngineV2, "8.2.1.8")])
def test_inference_path_per_api_generation(bundle, engine_file, engine_class, version):
    runner, cuda, trt = _runner(bundle, engine_file, engine_class, version=version)
    with runner:
        assert _balanced(cuda)  # load popped its context
        assert runner.provider == "TensorRT {} on Fake Orin".format(version)
        assert runner.precision == "fp16"
        batch = _images(bundle)
        got = runner.infer(batch)["probabilities"]
    np.testing.assert_allclose(got, compute(batch, 4), rtol=1e-6)
    assert trt.engines[0].executions == 2  # warm-up + one inference
    assert _balanced(cuda)
    assert cuda.contexts[0].detached


def test_buffers_allocated_once_and_freed_on_close(bundle, engine_file):
    runner, cuda, _trt = _runner(bundle, engine_file)
    with runner:
        allocated = (len(cuda.allocations), len(cuda.pagelocked))
        for seed in range(5):
            runner.infer(_images(bundle, seed=seed))
        assert (len(cuda.allocations), len(cuda.pagelocked)) == allocated == (2, 2)
    assert all(a.freed for a in cuda.allocations)
    assert cuda.log.count("push") == cuda.log.count("pop")
    assert cuda.log[-1] == "detach"


def test_context_popped_when_inference_raises(bundle, engine_file):
    runner, cuda, _trt = _runner(bundle, engine_file, fail_execute=True)
    with pytest.raises(MedkioskError, match="failed to enqueue"):
        runner.load()  # the warm-up inference fails
    assert _balanced(cuda)
    assert cuda.contexts[0].detached and all(a.freed for a in cuda.allocations)
    assert not runner.loaded


def test_cuda_errors_during_inference_become_one_line_backend_errors(bundle, engine_file):
    from edge.errors import BackendError

    runner, cuda, _trt = _runner(bundle, engine_file)
    with runner:
        def broken_copy(dest, src, stream):
            raise CudaError("cuMemcpyHtoDAsync failed: an illegal memory access was encountered")
        cuda.memcpy_htod_async = broken_copy
        with pytest.raises(BackendError, match="TensorRT inference failed .*CudaError: cuMemcpyHtoDAsync"):
            runner.infer(_images(bundle))
        assert _balanced(cuda)
    assert cuda.contexts[0].detached


def test_other_threads_may_infer(bundle, engine_file):
    """The kiosk loads on the main thread and infers on a worker thread."""
    runner, cuda, _trt = _runner(bundle, engine_file)
    results, errors = [], []

    def work():
        try:
            results.append(runner.infer(_images(bundle, seed=3))["probabilities"])
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    with runner:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(10)
    assert not errors and len(results) == 1
    np.testing.assert_allclose(results[0], compute(_images(bundle, seed=3), 4), rtol=1e-6)
    assert _balanced(cuda)


def test_the_stand_in_is_strict(bundle, engine_file):
    """Guard for the fakes themselves: CUDA calls without the context current fail."""
    cuda = FakeCuda()
    cuda.init()
    context = cuda.Device(0).make_context()
    context.pop()
    with pytest.raises(CudaError, match="invalid device context"):
        cuda.mem_alloc(16)
    with pytest.raises(CudaError, match="stack empty"):
        context.pop()
    context.push()
    with pytest.raises(CudaError, match="still on a context stack"):
        context.detach()
    with pytest.raises(AttributeError):
        EngineV2(cuda, [], False).num_io_tensors  # noqa: B018 - 8.2 has no named tensors


@pytest.mark.parametrize("engine_class", [EngineV3, EngineV2])
def test_dynamic_batch_sets_the_input_shape(bundle, engine_file, engine_class):
    runner, cuda, trt = _runner(bundle, engine_file, engine_class, batch=-1, max_batch=2)
    with runner:
        batch = _images(bundle, n=2, seed=5)
        got = runner.infer(batch)["probabilities"]
        assert runner.infer(batch[:1])["probabilities"].shape == (1, 4)
    np.testing.assert_allclose(got, compute(batch, 4), rtol=1e-6)
    assert len(cuda.allocations) == 2  # sized once for max_batch


def test_the_backend_runs_through_the_one_buffer_home_and_refuses_dynamic_image_sizes(bundle, engine_file):
    """Buffers, copies and execution are edge.tensorrt.runner.EngineBuffers (shared with EngineRunner);
    an engine with a dynamic image size is refused with its file named, and nothing is left allocated."""
    from edge.tensorrt.runner import EngineBuffers

    runner, cuda, _trt = _runner(bundle, engine_file)
    with runner:
        assert isinstance(runner._buffers, EngineBuffers)
        runner.infer(_images(bundle))
    assert runner._buffers is None and not any(not a.freed for a in cuda.allocations)
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, [("image", True, [1, 3, -1, -1]), ("probabilities", False, [1, 4])],
                        "10.0")
    runner = TensorRTRunner(bundle, engine_file, trt_module=trt, cuda_module=cuda)
    with pytest.raises(MedkioskError, match="model.fp16.engine: tensor 'image' has dynamic dimensions .* "
                                            "besides the batch. Fix: re-export with a fixed image size"):
        runner.load()
    assert _balanced(cuda) and cuda.contexts[0].detached


def test_engine_missing_an_output_is_refused(bundle, engine_file):
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, [("image", True, [1, 3, 64, 64]), ("logits", False, [1, 4])], "10.0")
    runner = TensorRTRunner(bundle, engine_file, trt_module=trt, cuda_module=cuda)
    with pytest.raises(MedkioskError, match="has no tensor \\['probabilities'\\]"):
        runner.load()
    assert _balanced(cuda) and cuda.contexts[0].detached


def test_unreadable_engine(bundle, engine_file, tmp_path):
    with open(engine_file, "wb") as handle:
        handle.write(b"garbage")
    runner, cuda, _trt = _runner(bundle, engine_file)
    with pytest.raises(MedkioskError, match="could not load the engine"):
        runner.load()
    assert _balanced(cuda)
    runner = TensorRTRunner(bundle, str(tmp_path / "none.engine"), trt_module=_trt, cuda_module=cuda)
    with pytest.raises(MedkioskError, match="cannot read TensorRT engine"):
        runner.load()


def _cached_engine(bundle, cache_dir, trt_version="10.3.0", precision="fp16"):
    from edge.tensorrt.cache import write_engine

    return write_engine(cache_dir, bundle, FAKE_ENGINE, trt_version, {"name": "Fake Orin", "sm": "sm_87"},
                        precision)


def test_open_runner_uses_the_cached_engine(bundle, tmp_path):
    """The real engine cache (key + sidecar + hash) with the stand-in TensorRT/pycuda injected."""
    from edge.backends import open_runner

    cache_dir = str(tmp_path / "engines")
    path = _cached_engine(bundle, cache_dir)
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, _tensors(bundle), "10.3.0")
    runner = open_runner(bundle, backend="auto", precision="fp16", engine_cache=cache_dir, trt_module=trt,
                         cuda_module=cuda)
    assert runner.name == "tensorrt" and runner.engine_path == path
    assert runner.fallback_reason is None
    with runner:
        assert runner.precision == "fp16" and runner.notices() == []
        batch = _images(bundle, seed=9)
        np.testing.assert_allclose(runner.infer(batch)["probabilities"], compute(batch, 4), rtol=1e-6)
    assert _balanced(cuda)


@pytest.mark.onnxruntime
def test_stale_or_missing_engine_falls_back_with_the_reason(bundle, tmp_path):
    from edge.backends import open_runner
    from edge.errors import BackendError

    cache_dir = str(tmp_path / "engines")
    _cached_engine(bundle, cache_dir, trt_version="8.2.1")  # built by another TensorRT
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, _tensors(bundle), "10.3.0")
    runner = open_runner(bundle, backend="auto", engine_cache=cache_dir, trt_module=trt, cuda_module=cuda)
    assert runner.name == "onnxruntime"
    assert "tensorrt unavailable" in runner.fallback_reason
    assert "built with TensorRT 8.2.1" in runner.fallback_reason
    assert "medkiosk export engine" in runner.fallback_reason
    with pytest.raises(BackendError, match="no engine built yet for TensorRT 10.3.0"):
        open_runner(bundle, backend="tensorrt", engine_cache=cache_dir, trt_module=trt, cuda_module=cuda)
    # fp32 was never built: asking for it must not quietly use the fp16 engine
    _cached_engine(bundle, cache_dir, trt_version="10.3.0", precision="fp16")
    with pytest.raises(BackendError, match="at fp32"):
        open_runner(bundle, backend="tensorrt", precision="fp32", engine_cache=cache_dir, trt_module=trt,
                    cuda_module=cuda)


def test_corrupted_cached_engine_is_not_loaded(bundle, tmp_path):
    from edge.backends import open_runner
    from edge.errors import BackendError

    cache_dir = str(tmp_path / "engines")
    path = _cached_engine(bundle, cache_dir)
    with open(path, "r+b") as handle:
        handle.write(b"X")
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda, EngineV3, _tensors(bundle), "10.3.0")
    with pytest.raises(BackendError, match="does not match the sha256"):
        open_runner(bundle, backend="tensorrt", engine_cache=cache_dir, trt_module=trt, cuda_module=cuda)
    assert trt.engines == []  # never handed to TensorRT


@pytest.mark.gpu
def test_real_tensorrt_engine(bundle, tmp_path):
    """On a Jetson with an engine built by `medkiosk export engine`: same answers as ONNX Runtime."""
    pytest.importorskip("tensorrt")
    pytest.importorskip("pycuda.driver")
    from edge.backends import open_runner
    from edge.preprocess import load_image, preprocess

    engine_cache = os.environ.get("MEDKIOSK_ENGINE_CACHE", "/var/lib/medkiosk/engines")
    image = preprocess(load_image(bundle.golden_samples()[0].path), bundle.description.input)
    with open_runner(bundle, backend="onnxruntime", precision="fp32", providers="cpu") as reference:
        expected = reference.infer(image)["probabilities"]
    with open_runner(bundle, backend="tensorrt", precision="fp32", engine_cache=engine_cache) as runner:
        np.testing.assert_allclose(runner.infer(image)["probabilities"], expected, atol=1e-3)
