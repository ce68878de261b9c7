"""The inference runner interface every backend implements (Polygraphy-style).

A runner is built from a validated ``Bundle``, used as a context manager (``__enter__`` loads the
model and warms it up, ``__exit__`` releases it) and called with ``infer(batch)``: a float32,
C-contiguous NCHW array matching the bundle's input contract. It returns
``{"probabilities": [N, K] float32}`` plus ``"ood_score": [N]`` when the bundle has an input check
and ``"heatmap": [N, K, h, w]`` when its manifest declares one (``output_keys`` says which, in order).

What a runner really uses is reported, never what was asked for: ``provider`` and ``precision``
say what runs, ``downgraded``/``downgrade_reason`` say loudly when that is less than requested
and ``fallback_reason`` says why ``open_runner`` chose this backend instead of the preferred one.
"""

import logging

from edge.errors import BackendError
from edge.lazy import require

LOG = logging.getLogger("medkiosk.backends")
# Library convention: no output unless the application configures logging (the CLIs print notices).
LOG.addHandler(logging.NullHandler())

PRECISIONS = ("fp32", "fp16", "int8")


def batch_is_dynamic(bundle):
    """Whether the bundle's ONNX input accepts any batch size (symbolic or missing first dim)."""
    shape = bundle.onnx_info.inputs[0]["shape"]
    return not shape or not isinstance(shape[0], int)


class Runner(object):
    """Base class: shape/dtype checks, lifecycle, and the honest status of one loaded model."""

    name = "base"

    def __init__(self, bundle, precision="fp32"):
        if precision not in PRECISIONS:
            raise BackendError("precision {!r} is unknown; use one of {}".format(
                precision, ", ".join(PRECISIONS)))
        self.bundle = bundle
        self.description = bundle.description
        self.input_spec = bundle.description.input
        self.requested_precision = precision
        self.dynamic_batch = batch_is_dynamic(bundle)
        self.output_names = [self.description.output_name]
        self.output_keys = ["probabilities"]
        if self.description.input_check:
            self.output_names.append(self.description.input_check["output"])
            self.output_keys.append("ood_score")
        self.heatmap = getattr(bundle, "heatmap", None)
        if self.heatmap:
            self.output_names.append(self.heatmap["output"])
            self.output_keys.append("heatmap")
        self.downgraded = False
        self.downgrade_reason = None
        self.fallback_reason = None
        self.loaded = False

    # ---- what is really in use (subclasses override) ----
    @property
    def provider(self):
        """The device/provider actually executing the model (e.g. CPUExecutionProvider)."""
        return None

    @property
    def precision(self):
        """The precision actually executing (fp32/fp16/int8)."""
        return "fp32"

    @property
    def max_batch(self):
        """Largest batch ``infer`` accepts."""
        return 64 if self.dynamic_batch else 1

    # ---- lifecycle ----
    def load(self):
        """Load the model and run one warm-up inference; idempotent."""
        if self.loaded:
            return self
        self._load()
        self.loaded = True
        try:
            np = require("numpy")
            self.infer(np.zeros(self.input_spec.shape(1), dtype=np.float32))
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Release the model; idempotent."""
        if self.loaded:
            self.loaded = False
            self._close()

    def __enter__(self):
        return self.load()

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    # ---- inference ----
    def check_batch(self, batch):
        """Raise BackendError unless ``batch`` is a float32 C-contiguous NCHW array this model takes."""
        np = require("numpy")
        if not isinstance(batch, np.ndarray):
            raise BackendError("{} runner: input must be a numpy array, got {}".format(
                self.name, type(batch).__name__))
        if batch.dtype != np.float32:
            raise BackendError("{} runner: input dtype must be float32, got {} (use edge.preprocess)".format(
                self.name, batch.dtype))
        expected = self.input_spec.shape(1)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected[1:]):
            raise BackendError("{} runner: input shape must be (N, {}, {}, {}) for {}, got {}".format(
                self.name, expected[1], expected[2], expected[3], self.bundle.bundle_id, tuple(batch.shape)))
        if batch.shape[0] < 1 or batch.shape[0] > self.max_batch:
            raise BackendError("{} runner: batch size {} not supported (this model takes 1..{})".format(
                self.name, batch.shape[0], self.max_batch))
        if not batch.flags["C_CONTIGUOUS"]:
            raise BackendError("{} runner: input must be C-contiguous (np.ascontiguousarray)".format(
                self.name))

    def infer(self, batch):
        """Run the model on a batch; return {"probabilities": [N, K], optional "ood_score": [N]}."""
        if not self.loaded:
            raise BackendError("{} runner: infer() before load(); use `with open_runner(...) as runner`"
                               .format(self.name))
        self.check_batch(batch)
        outputs = self._infer(batch)
        return self._check_outputs(outputs, batch.shape[0])

    def _check_outputs(self, outputs, batch_size):
        np = require("numpy")
        probs = np.asarray(outputs["probabilities"], dtype=np.float32)
        num_classes = self.description.num_classes
        if probs.ndim == 1 and batch_size == 1:
            probs = probs.reshape(1, -1)
        if probs.shape != (batch_size, num_classes):
            raise BackendError("{} runner: model output has shape {}, expected ({}, {})".format(
                self.name, probs.shape, batch_size, num_classes))
        result = {"probabilities": probs}
        if "ood_score" in outputs and outputs["ood_score"] is not None:
            result["ood_score"] = np.asarray(outputs["ood_score"], dtype=np.float32).reshape(batch_size)
        if outputs.get("heatmap") is not None:
            shape = tuple([batch_size] + list(self.heatmap["shape"]))
            result["heatmap"] = np.asarray(outputs["heatmap"], dtype=np.float32).reshape(shape)
        return result

    def notices(self):
        """Lines the kiosk must show on screen about this runner (fallbacks, downgrades)."""
        lines = []
        if self.fallback_reason:
            lines.append(self.fallback_reason)
        if self.downgraded and self.downgrade_reason:
            lines.append(self.downgrade_reason)
        if self.loaded and self.precision != self.requested_precision:
            lines.append("{} precision requested, running {} on {}".format(
                self.requested_precision.upper(), self.precision.upper(), self.provider))
        return lines

    def describe(self):
        """One-line summary for logs and selftest."""
        return "{} ({}, {})".format(self.name, self.provider, self.precision)

    # ---- subclass hooks ----
    def _load(self):
        raise NotImplementedError

    def _infer(self, batch):
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError

    def __repr__(self):
        return "<{} {} {}>".format(type(self).__name__, self.bundle.bundle_id, self.describe())
