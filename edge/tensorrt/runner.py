"""Run a serialised TensorRT engine on numpy batches with pycuda (device code, Python 3.6).

Used by ``medkiosk export verify`` and ``compare``; the kiosk's backend (``edge.backends.tensorrt``)
keeps its own CUDA context discipline. All TensorRT
differences go through ``trt_compat.TensorRT``; device memory through a ``pycuda.driver``-like
object (``mem_alloc``, ``memcpy_htod_async``, ``memcpy_dtoh_async``, ``Stream``, ``pagelocked_empty``).
"""

from edge.errors import EngineError
from edge.lazy import require
from edge.tensorrt.trt_compat import TensorRT


def import_pycuda(autoinit=True):
    """``pycuda.driver``; with ``autoinit`` also a CUDA context made current (``pycuda.autoinit``).

    The kiosk's backend manages its own context and passes ``autoinit=False``.
    """
    driver = require("pycuda.driver")
    if autoinit:
        require("pycuda.autoinit")
    return driver


class EngineRunner(object):
    """Deserialise an engine once; ``run(batch)`` -> {output name: numpy array}."""

    def __init__(self, engine_bytes, compat=None, cuda=None, batch=1, logger=None):
        np = require("numpy")
        self.compat = compat if compat is not None else TensorRT()
        self.cuda = cuda if cuda is not None else import_pycuda()
        self.logger = logger if logger is not None else self.compat.logger()
        self.runtime = self.compat.runtime(self.logger)
        self.engine = self.compat.deserialize(self.runtime, engine_bytes)
        self.context = self.engine.create_execution_context()
        self.tensors = self.compat.io_tensors(self.engine)
        self.inputs = [t for t in self.tensors if t.is_input]
        self.outputs = [t for t in self.tensors if not t.is_input]
        if len(self.inputs) != 1:
            raise EngineError("the engine has {} inputs; medkiosk models have exactly one".format(
                len(self.inputs)))
        self.batch = int(batch)
        self.stream = self.cuda.Stream()
        self.host, self.device, self.shapes = {}, {}, {}
        for tensor in self.tensors:
            shape = tuple(self.batch if (i == 0 and d < 0) else d for i, d in enumerate(tensor.shape))
            if any(d < 0 for d in shape):
                raise EngineError("tensor {!r} has dynamic dimensions {} other than the batch".format(
                    tensor.name, tensor.shape))
            if tensor.is_input and shape != tensor.shape:
                self.compat.set_input_shape(self.context, tensor.name, shape)
            self.shapes[tensor.name] = shape
            self.host[tensor.name] = self.cuda.pagelocked_empty(shape, tensor.dtype)
            self.device[tensor.name] = self.cuda.mem_alloc(self.host[tensor.name].nbytes)
        self._np = np

    @property
    def input(self):
        return self.inputs[0]

    def run(self, batch):
        """One forward pass; ``batch`` must match the input's shape (e.g. (1, C, H, W) float32)."""
        np = self._np
        name = self.input.name
        expected = self.shapes[name]
        batch = np.asarray(batch)
        if tuple(batch.shape) != expected:
            raise EngineError("input batch has shape {}, the engine expects {}".format(
                tuple(batch.shape), expected))
        self.host[name][...] = batch
        self.cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
        self.compat.execute(self.context, self.stream.handle,
                            {t.name: int(self.device[t.name]) for t in self.tensors})
        for tensor in self.outputs:
            self.cuda.memcpy_dtoh_async(self.host[tensor.name], self.device[tensor.name], self.stream)
        self.stream.synchronize()
        return {t.name: np.array(self.host[t.name], dtype=np.float32) for t in self.outputs}

    def run_images(self, batches, output_name):
        """Several (1, C, H, W) batches -> [N, K] array of one output."""
        np = self._np
        return np.concatenate([self.run(b)[output_name] for b in batches], axis=0)
