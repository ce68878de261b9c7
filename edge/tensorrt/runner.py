"""Run a serialised TensorRT engine on numpy batches with pycuda (device code, Python 3.6).

The one home of the host/device buffer code: ``EngineBuffers`` allocates a page-locked host buffer
and a device buffer per tensor of an engine's execution context, copies a batch in, executes on one
CUDA stream and copies the outputs back. ``EngineRunner`` (``medkiosk export verify`` and ``compare``)
and the kiosk's backend (``edge.backends.tensorrt``, which adds its own CUDA context discipline) both
run through it. All TensorRT differences go through ``trt_compat.TensorRT``; device memory through a
``pycuda.driver``-like object (``mem_alloc``, ``memcpy_htod_async``, ``memcpy_dtoh_async``,
``Stream``, ``pagelocked_empty``).
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


class EngineBuffers(object):
    """Host and device buffers of every tensor of ``engine`` for batches of up to ``batch`` images.

    A dynamic batch dimension is allocated at ``batch`` and set per call to the batch's own size;
    any other dynamic dimension is refused (``error(message)``: the caller's exception class and
    wording, e.g. the backend's BackendError naming its engine file). Call from the thread (and CUDA
    context) the buffers were made in; ``free()`` once, in that context too.
    """

    def __init__(self, compat, cuda, engine, context, batch=1, error=None):
        self.compat, self.cuda, self.context = compat, cuda, context
        self.np = require("numpy")
        self.batch = int(batch)
        self.tensors = compat.io_tensors(engine)
        self.outputs = [t for t in self.tensors if not t.is_input]
        self.host, self.device, self.shapes = {}, {}, {}
        self.dynamic_inputs = []
        self.stream = cuda.Stream()
        for tensor in self.tensors:
            shape = tuple(self.batch if (i == 0 and d < 0) else d for i, d in enumerate(tensor.shape))
            if any(d < 0 for d in shape):
                self.free()
                raise (error or _engine_error)(tensor)
            if tensor.is_input and shape != tuple(tensor.shape):
                self.dynamic_inputs.append(tensor.name)
            self.shapes[tensor.name] = shape
            self.host[tensor.name] = cuda.pagelocked_empty(shape, dtype=self.np.dtype(tensor.dtype))
            self.device[tensor.name] = cuda.mem_alloc(self.host[tensor.name].nbytes)

    def run(self, name, batch, outputs=None):
        """Copy ``batch`` (N <= ``batch`` images) into input ``name``, execute, and return
        {output name: float32 array of N rows} for ``outputs`` (default: every output)."""
        np = self.np
        count = batch.shape[0]
        for dynamic in self.dynamic_inputs:
            self.compat.set_input_shape(self.context, dynamic, (count,) + tuple(batch.shape[1:]))
        np.copyto(self.host[name][:count], batch, casting="same_kind")
        self.cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
        self.compat.execute(self.context, self.stream.handle,
                            {t.name: int(self.device[t.name]) for t in self.tensors})
        names = [t.name for t in self.outputs] if outputs is None else list(outputs)
        for output in names:
            self.cuda.memcpy_dtoh_async(self.host[output], self.device[output], self.stream)
        self.stream.synchronize()
        return {output: np.array(self.host[output][:count], dtype=np.float32) for output in names}

    def free(self):
        for allocation in self.device.values():
            allocation.free()
        self.device, self.host = {}, {}


def _engine_error(tensor):
    return EngineError("tensor {!r} has dynamic dimensions {} other than the batch".format(
        tensor.name, tensor.shape))


class EngineRunner(object):
    """Deserialise an engine once; ``run(batch)`` -> {output name: numpy array}."""

    def __init__(self, engine_bytes, compat=None, cuda=None, batch=1, logger=None):
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
        self.buffers = EngineBuffers(self.compat, self.cuda, self.engine, self.context, self.batch)
        self.stream, self.host, self.device = self.buffers.stream, self.buffers.host, self.buffers.device
        self.shapes = self.buffers.shapes
        self._np = require("numpy")

    @property
    def input(self):
        return self.inputs[0]

    def run(self, batch):
        """One forward pass; ``batch`` must match the input's shape (e.g. (1, C, H, W) float32)."""
        name = self.input.name
        expected = self.shapes[name]
        batch = self._np.asarray(batch)
        if tuple(batch.shape) != expected:
            raise EngineError("input batch has shape {}, the engine expects {}".format(
                tuple(batch.shape), expected))
        return self.buffers.run(name, batch)

    def run_images(self, batches, output_name):
        """Several (1, C, H, W) batches -> [N, K] array of one output."""
        np = self._np
        return np.concatenate([self.run(b)[output_name] for b in batches], axis=0)
