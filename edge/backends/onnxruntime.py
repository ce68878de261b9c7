"""ONNX Runtime backend: TensorRT EP -> CUDA EP -> CPU EP, whichever are installed.

Works with onnxruntime 1.10 (JetPack 4.6, Python 3.6) and current releases. The provider
reported is the one the session really uses (``session.get_providers()[0]``); when a GPU provider
was requested but the session runs on the CPU, the runner says so loudly (log warning,
``downgraded=True`` and a reason for the screen).
"""

import logging

from edge.backends.base import Runner
from edge.errors import BackendError
from edge.lazy import require

LOG = logging.getLogger("medkiosk.backends.onnxruntime")

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PREFERRED_PROVIDERS = (TENSORRT_EP, CUDA_EP, CPU_EP)
GPU_PROVIDERS = (TENSORRT_EP, CUDA_EP)
SHORT_NAMES = {"tensorrt": TENSORRT_EP, "trt": TENSORRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
def available_providers():
    """The preferred providers this onnxruntime build offers, best first."""
    offered = require("onnxruntime").get_available_providers()
    return [p for p in PREFERRED_PROVIDERS if p in offered]


def resolve_providers(providers):
    """Provider names (full or tensorrt/cuda/cpu) -> full EP names; None -> all available, best first."""
    if providers is None:
        return available_providers()
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    resolved = []
    for provider in providers:
        full = SHORT_NAMES.get(provider.lower(), provider)
        if full not in PREFERRED_PROVIDERS:
            raise BackendError("unknown ONNX Runtime provider {!r}; use tensorrt, cuda or cpu".format(
                provider))
        resolved.append(full)
    if not resolved:
        raise BackendError("no ONNX Runtime provider given; use tensorrt, cuda or cpu")
    return resolved


def provider_downgrade(requested, in_use):
    """A reason string when a GPU provider was requested but the session runs elsewhere; else None."""
    wanted_gpu = [p for p in requested if p in GPU_PROVIDERS]
    if not wanted_gpu or in_use in GPU_PROVIDERS:
        return None
    return ("GPU NOT IN USE: ONNX Runtime was asked for {} but runs on {} (slow). Check the CUDA/TensorRT "
            "libraries of the onnxruntime-gpu install; `medkiosk selftest` shows the details".format(
                "/".join(wanted_gpu), in_use))


class OnnxRuntimeRunner(Runner):
    """Runs a bundle's model.onnx with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, bundle, precision="fp32", providers=None, threads=None, engine_cache=None,
                 spinning=False):
        super().__init__(bundle, precision=precision)
        self.requested_providers = resolve_providers(providers)
        self.threads = threads
        # ONNX Runtime's CPU workers busy-wait between runs by default, taking the cores the kiosk's
        # camera and display threads need: inference 18.8 -> 10.2 ms with spinning off, measured
        # by benchmarks/ort_threads.py beside the kiosk loop (docs/benchmarks.md).
        self.spinning = bool(spinning)
        self.engine_cache = engine_cache
        self.session = None
        self._provider = None

    @property
    def provider(self):
        return self._provider

    @property
    def precision(self):
        if self._provider == TENSORRT_EP and self.requested_precision == "fp16":
            return "fp16"
        return "fp32"

    def _provider_list(self):
        entries = []
        for provider in self.requested_providers:
            if provider == TENSORRT_EP:
                options = {"trt_fp16_enable": self.requested_precision == "fp16"}
                if self.engine_cache:
                    options.update({"trt_engine_cache_enable": True,
                                    "trt_engine_cache_path": str(self.engine_cache)})
                entries.append((provider, options))
            else:
                entries.append(provider)
        return entries

    def _load(self):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.bundle.model_path, sess_options=options,
                                                providers=self._provider_list())
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise BackendError("ONNX Runtime cannot load {}: {}. Fix: run `medkiosk bundle verify {}`".format(
                self.bundle.model_path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                self.bundle.path)) from exc
        in_use = self.session.get_providers()
        self._provider = in_use[0] if in_use else CPU_EP
        reason = provider_downgrade(self.requested_providers, self._provider)
        if reason:
            self.downgraded = True
            self.downgrade_reason = reason
            LOG.warning("%s: %s", self.bundle.bundle_id, reason)
        if self.requested_precision != self.precision:
            LOG.warning("%s: %s precision requested, running %s on %s", self.bundle.bundle_id,
                        self.requested_precision, self.precision, self._provider)
        session_outputs = [o.name for o in self.session.get_outputs()]
        missing = [name for name in self.output_names if name not in session_outputs]
        if missing:
            raise BackendError("{}: model.onnx has no output {} (has {}). Fix: re-export the bundle".format(
                self.bundle.path, missing, session_outputs))

    def _infer(self, batch):
        try:
            values = self.session.run(self.output_names, {self.bundle.input_name: batch})
        except Exception as exc:  # onnxruntime's own exception types are not importable across versions
            raise BackendError("ONNX Runtime failed on {}: {}".format(self.bundle.bundle_id, exc)) from exc
        return dict(zip(self.output_keys, values))

    def _close(self):
        self.session = None


def check_onnxruntime(bundle, **options):
    """None when ONNX Runtime can run here; else the reason."""
    try:
        require("onnxruntime")
    except Exception as exc:  # MissingDependencyError or a broken install raising on import
        return str(exc)
    return None


def load_onnxruntime(bundle, precision="fp32", engine_cache=None, allow_build=False, **options):
    """Backend table loader: an unloaded OnnxRuntimeRunner."""
    return OnnxRuntimeRunner(bundle, precision=precision, engine_cache=engine_cache,
                             providers=options.get("providers"), threads=options.get("threads"),
                             spinning=options.get("spinning", False))
