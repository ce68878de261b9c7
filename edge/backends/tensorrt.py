"""TensorRT backend via pycuda (Jetson GPU).

The engine is built on the device (``medkiosk export engine``) and cached beside its sidecar;
this runner only deserialises it. TensorRT API differences (8.2 bindings + ``execute_async_v2``,
8.5+/10.x named tensors + ``execute_async_v3``) are handled by ``edge.tensorrt.trt_compat`` by
feature detection; finding, checking and building engines is ``edge.tensorrt``'s work too.

CUDA context discipline: the runner creates its own context (never ``pycuda.autoinit``), pops it
right after loading, and every later use (infer, close) pushes it and pops it again in
``try/finally`` under a lock, so any one thread may call ``infer`` and the context stack is left
as it was found even when TensorRT raises ("invalid device context" / "context stack not empty"
cannot happen). Buffers, copies and execution are ``edge.tensorrt.runner.EngineBuffers`` (the one
home of that code): host buffers page-locked and, with the device buffers, allocated once at load;
copies and inference run asynchronously on one CUDA stream.
"""

import json
import os
import threading

from edge.backends.base import Runner
from edge.errors import BackendError, MedkioskError
from edge.tensorrt import cache
from edge.tensorrt.gpu import detect_gpu
from edge.tensorrt.manage import ensure_engine
from edge.tensorrt.runner import EngineBuffers, import_pycuda
from edge.tensorrt.trt_compat import TensorRT, import_tensorrt

BUILD_HINT = "build it on this device: `medkiosk export engine {bundle}`"


def _modules(options):
    """(tensorrt module, pycuda.driver module): injected ones (tests) or the real imports."""
    trt = options.get("trt_module") or import_tensorrt()
    cuda = options.get("cuda_module") or import_pycuda(autoinit=False)
    return trt, cuda


def find_engine(bundle, precision, engine_cache=None, allow_build=False, **options):
    """(engine path, None) for a fresh cached engine of ``bundle`` on this TensorRT and GPU; else (None, why).

    Uses ``edge.tensorrt.cache`` (key + sidecar + hash checks; nothing is deserialised). With
    ``allow_build`` a missing or stale engine is built via ``edge.tensorrt.manage.ensure_engine``.
    """
    trt, cuda = _modules(options)
    cache_dir = engine_cache or cache.default_cache_dir()
    version = TensorRT(trt).version
    gpu = detect_gpu(cuda)
    lookup = cache.find_engine(cache_dir, bundle, version, gpu, precision, batch=options.get("max_batch", 1))
    if lookup.fresh:
        return lookup.path, None
    if allow_build:
        result = ensure_engine(bundle, cache_dir, precision=precision, batch=options.get("max_batch", 1))
        return result.path, None
    return None, "{}. Fix: {}".format(lookup.explain(), BUILD_HINT.format(bundle=bundle.path))


class TensorRTRunner(Runner):
    """Runs a deserialised TensorRT engine with pycuda; see the module docstring for threading."""

    name = "tensorrt"

    def __init__(self, bundle, engine_path, precision="fp16", device=0, max_batch=1, trt_module=None,
                 cuda_module=None):
        super().__init__(bundle, precision=precision)
        self.engine_path = str(engine_path)
        self.device = int(device)
        self._max_batch = int(max_batch)
        self._trt_module = trt_module
        self._cuda_module = cuda_module
        self._lock = threading.Lock()
        self._ctx = None
        self._engine = None
        self._context = None
        self._buffers = None  # edge.tensorrt.runner.EngineBuffers: host/device memory, stream, copies
        self._engine_precision = None
        self._provider_name = None

    @property
    def provider(self):
        return self._provider_name

    @property
    def precision(self):
        return self._engine_precision or self.requested_precision

    @property
    def max_batch(self):
        return self._max_batch

    # ---- loading ----
    def _load(self):
        cuda = self._cuda_module or import_pycuda(autoinit=False)
        self._cuda = cuda
        self._compat = TensorRT(self._trt_module)
        try:
            with open(self.engine_path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BackendError("cannot read TensorRT engine {} ({}); {}".format(
                self.engine_path, exc.strerror, BUILD_HINT.format(bundle=self.bundle.path))) from exc
        self._engine_precision = _sidecar_precision(self.engine_path)
        try:
            cuda.init()
            device = cuda.Device(self.device)
            self._provider_name = "TensorRT {} on {}".format(self._compat.version, device.name())
            self._ctx = device.make_context()  # created and pushed on this thread
        except Exception as exc:  # pycuda's LogicError/RuntimeError family is not importable without CUDA
            raise BackendError("CUDA cannot start on GPU {} ({}). Fix: check the NVIDIA driver (JetPack) "
                               "and that no other process holds the GPU".format(self.device, exc)) from exc
        try:
            self._setup(data)
        except BaseException:
            self._release_in_context()
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
            raise
        self._ctx.pop()

    def _setup(self, data):
        cuda, compat = self._cuda, self._compat
        logger = compat.logger("WARNING")
        self._runtime = compat.runtime(logger)
        self._engine = compat.deserialize(self._runtime, data)
        self._context = self._engine.create_execution_context()
        tensors = compat.io_tensors(self._engine)
        names = [t.name for t in tensors]
        needed = [self.bundle.input_name] + self.output_names
        missing = [n for n in needed if n not in names]
        if missing:
            raise BackendError("TensorRT engine {} has no tensor {} (has {}); it was built from another "
                               "model. Fix: {}".format(self.engine_path, missing, names,
                                                BUILD_HINT.format(bundle=self.bundle.path)))
        self._buffers = EngineBuffers(compat, cuda, self._engine, self._context, self._max_batch,
                                      error=self._dynamic_dimension_error)

    def _dynamic_dimension_error(self, tensor):
        return BackendError("TensorRT engine {}: tensor {!r} has dynamic dimensions {} besides the batch. "
                            "Fix: re-export with a fixed image size".format(self.engine_path, tensor.name,
                                                                           tensor.shape))

    # ---- inference ----
    def _infer(self, batch):
        with self._lock:
            self._ctx.push()
            try:
                return self._run(batch)
            except MedkioskError:
                raise
            except Exception as exc:  # pycuda/TensorRT runtime errors: one line for the user, not a traceback
                raise BackendError("TensorRT inference failed on {}: {}: {}".format(
                    self.bundle.bundle_id, type(exc).__name__, exc)) from exc
            finally:
                self._ctx.pop()

    def _run(self, batch):
        outputs = self._buffers.run(self.bundle.input_name, batch, self.output_names)
        return {key: outputs[name] for key, name in zip(self.output_keys, self.output_names)}

    # ---- release ----
    def _release_in_context(self):
        if self._buffers is not None:
            self._buffers.free()
        self._buffers = None
        self._context = None
        self._engine = None

    def _close(self):
        if self._ctx is None:
            return
        with self._lock:
            self._ctx.push()
            try:
                self._release_in_context()
            finally:
                self._ctx.pop()
                self._ctx.detach()
                self._ctx = None


def _sidecar_precision(engine_path):
    """The precision recorded in the engine's JSON sidecar (ENGINE.json), if there is one."""
    for candidate in (engine_path + ".json", os.path.splitext(engine_path)[0] + ".json"):
        if os.path.isfile(candidate):
            try:
                with open(candidate) as handle:
                    return json.load(handle).get("precision")
            except (OSError, ValueError):
                return None
    return None


def check_tensorrt(bundle, precision="fp16", engine_cache=None, allow_build=False, **options):
    """None when TensorRT can run ``bundle`` here (libraries import, a fresh engine exists or may be
    built); else the reason."""
    try:
        _modules(options)
    except MedkioskError as exc:
        return str(exc)
    except Exception as exc:  # a broken native install raises OSError/RuntimeError on import
        return "TensorRT/pycuda fail to import ({})".format(exc)
    if options.get("engine_path"):
        return None
    try:
        _path, reason = find_engine(bundle, precision, engine_cache, allow_build=False, **options)
    except (MedkioskError, ImportError) as exc:
        return str(exc)
    if reason and allow_build:
        return None  # load_tensorrt builds it
    return reason


def load_tensorrt(bundle, precision="fp16", engine_cache=None, allow_build=False, **options):
    """Backend table loader: an unloaded TensorRTRunner for the cached (with allow_build: built) engine."""
    engine_path = options.get("engine_path")
    if not engine_path:
        engine_path, reason = find_engine(bundle, precision, engine_cache, allow_build=allow_build, **options)
        if reason:
            raise BackendError("TensorRT cannot run {}: {}".format(bundle.bundle_id, reason))
    return TensorRTRunner(bundle, engine_path, precision=precision, device=options.get("device", 0),
                          max_batch=options.get("max_batch", 1), trt_module=options.get("trt_module"),
                          cuda_module=options.get("cuda_module"))
