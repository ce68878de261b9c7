"""Every TensorRT API difference in one place, chosen by feature detection (never version numbers).

Targets: TensorRT 8.2 (Jetson Nano, JetPack 4.6, Python 3.6), 8.5/8.6 and 10.x (Orin, JetPack 5/6),
and 11.x where it can. What differs:

- building: ``build_serialized_network`` (8.0+) vs ``build_engine`` + ``serialize`` (7.x);
- workspace: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE)`` (8.4+) vs ``max_workspace_size``;
- I/O: named tensors (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, 8.5+) vs bindings
  (``num_bindings``, ``get_binding_name``, ``binding_is_input``; gone in 10.0);
- running: ``set_tensor_address`` + ``execute_async_v3`` vs a bindings list + ``execute_async_v2``;
- explicit batch: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (a no-op in 10.x, gone in 11.x,
  where ``create_network(0)`` is explicit);
- INT8 calibration: ``IInt8EntropyCalibrator2`` (gone in 11.x: INT8 there needs a Q/DQ ONNX);
- ``platform_has_fast_fp16`` / ``platform_has_fast_int8`` (gone in 11.x).

``NAMES_TRT8`` and ``NAMES_TRT10`` list every TensorRT attribute each path touches; the tests
check them against the real 10.x bindings and a TensorRT 8.2 list (``trt82_names.txt``).

Use ``TensorRT()`` (imports ``tensorrt``) or ``TensorRT(module)``; it holds no global state.
Python 3.6 compatible; no torch, no onnx package.
"""

from edge.errors import EngineError
from edge.lazy import require
from edge.onnx_info import onnx_op_types

# Used by every path (module attributes and methods of builder, network, config, parser, runtime).
NAMES_COMMON = frozenset([
    "__version__", "Logger", "WARNING", "INFO", "ERROR", "VERBOSE", "Builder", "Runtime", "OnnxParser",
    "BuilderFlag", "FP16", "INT8", "NetworkDefinitionCreationFlag", "nptype",
    "create_network", "create_builder_config", "set_flag", "parse", "num_errors", "get_error",
    "num_inputs", "get_input", "name", "shape",
    "create_optimization_profile", "set_shape", "add_optimization_profile",
    "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize",
    "deserialize_cuda_engine", "create_execution_context", "engine",
])
# INT8 post-training calibration (absent in 11.x).
NAMES_CALIBRATION = frozenset([
    "IInt8EntropyCalibrator2", "int8_calibrator", "get_batch_size", "get_batch", "read_calibration_cache",
    "write_calibration_cache",
])
NAMES_TRT8 = NAMES_COMMON | NAMES_CALIBRATION | frozenset([
    "EXPLICIT_BATCH", "platform_has_fast_fp16", "platform_has_fast_int8", "build_serialized_network",
    "max_workspace_size",
    "num_bindings", "get_binding_name", "binding_is_input", "get_binding_shape", "get_binding_dtype",
    "execute_async_v2", "set_binding_shape",
])
NAMES_TRT10 = NAMES_COMMON | NAMES_CALIBRATION | frozenset([
    "EXPLICIT_BATCH", "platform_has_fast_fp16", "platform_has_fast_int8", "build_serialized_network",
    "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE",
    "num_io_tensors", "get_tensor_name", "get_tensor_mode", "TensorIOMode", "INPUT", "get_tensor_shape",
    "get_tensor_dtype", "set_tensor_address", "execute_async_v3", "set_input_shape",
])
# The 7.x build path (``build_engine``) is kept only as a fallback for very old JetPacks.
NAMES_TRT7_BUILD = frozenset(["build_engine"])

Q_DQ_OPS = ("QuantizeLinear", "DequantizeLinear")

# ONNX ops the TensorRT 8.x ONNX parser (opset <= 13: 8.2 on the Jetson Nano) does not support, from
# onnx-tensorrt's docs/operators.md support matrix ("N" rows), plus HardSwish (opset 14, not in it).
TRT8_UNSUPPORTED_OPS = frozenset([
    "BitShift", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear", "Hardmax",
    "HardSwish", "IsInf", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MeanVarianceNormalization", "Mod",
    "Multinomial", "NegativeLogLikelihoodLoss", "NonZero", "OneHot", "QLinearConv", "QLinearMatMul",
    "RandomNormal", "RandomNormalLike", "Reciprocal", "RoiAlign", "SequenceAt", "SequenceConstruct",
    "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "Shrink", "SoftmaxCrossEntropyLoss",
    "SplitToSequence", "StringNormalizer", "TfIdfVectorizer", "Unique",
])


def has_qdq(data):
    """True if the ONNX model carries explicit quantisation (QuantizeLinear/DequantizeLinear)."""
    return bool(onnx_op_types(data) & set(Q_DQ_OPS))


class TensorInfo(object):
    """One engine input or output: name, direction, shape (tuple, -1 = dynamic) and numpy dtype."""

    def __init__(self, name, is_input, shape, dtype):
        self.name = name
        self.is_input = bool(is_input)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype

    def to_dict(self):
        return {"name": self.name, "is_input": self.is_input, "shape": list(self.shape),
                "dtype": getattr(self.dtype, "__name__", str(self.dtype))}

    def __repr__(self):
        return "TensorInfo({!r}, {}, {}, {})".format(self.name, "in" if self.is_input else "out", self.shape,
                                                     getattr(self.dtype, "__name__", self.dtype))


def import_tensorrt():
    """The ``tensorrt`` module, or MissingDependencyError saying how to install it."""
    return require("tensorrt")


class TensorRT(object):
    """The TensorRT module behind one small, version-independent API."""

    def __init__(self, module=None):
        self.trt = module if module is not None else import_tensorrt()

    # --- facts about this TensorRT -------------------------------------------------------------

    @property
    def version(self):
        return str(self.trt.__version__)

    @property
    def has_calibrator(self):
        return hasattr(self.trt, "IInt8EntropyCalibrator2")

    @property
    def has_fp16_flag(self):
        return hasattr(self.trt.BuilderFlag, "FP16")

    def logger(self, severity="WARNING"):
        return self.trt.Logger(getattr(self.trt.Logger, severity.upper()))

    @staticmethod
    def platform_caps(builder):
        """{"fast_fp16": bool or None, "fast_int8": bool or None}; None: this TensorRT does not say (11.x)."""
        return {"fast_fp16": getattr(builder, "platform_has_fast_fp16", None),
                "fast_int8": getattr(builder, "platform_has_fast_int8", None)}

    # --- building --------------------------------------------------------------------------------

    def create_network(self, builder):
        """An explicit-batch network definition on every version."""
        flags = 0
        creation = self.trt.NetworkDefinitionCreationFlag
        if hasattr(creation, "EXPLICIT_BATCH"):
            flags = 1 << int(creation.EXPLICIT_BATCH)
        return builder.create_network(flags)

    def set_workspace(self, config, size_bytes):
        if hasattr(config, "set_memory_pool_limit") and hasattr(self.trt, "MemoryPoolType"):
            config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(size_bytes))
        else:
            config.max_workspace_size = int(size_bytes)

    def set_precision_flag(self, config, precision):
        """FP16/INT8 builder flags (FP32 needs none)."""
        if precision == "fp16":
            if not self.has_fp16_flag:
                raise EngineError("this TensorRT ({}) builds strongly typed networks only and has no FP16 "
                                  "builder flag. Fix: export the bundle with `medkiosk export onnx --fp16`, "
                                  "then build it with --precision fp32 (the graph itself is FP16)".format(
                                      self.version))
            config.set_flag(self.trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(self.trt.BuilderFlag.INT8)

    def parse_onnx(self, network, logger, data, source="model.onnx"):
        """Parse ONNX bytes into ``network``; EngineError with the parser's own messages on failure."""
        parser = self.trt.OnnxParser(network, logger)
        if not parser.parse(data):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineError("TensorRT {} cannot parse {}: {}. Fix: re-export the bundle with a lower "
                              "--opset (TensorRT 8.2 supports opset <= 13)".format(
                                  self.version, source, "; ".join(errors) or "no parser message"))
        return parser

    def add_batch_profile(self, builder, network, config, batch):
        """Optimization profile for dynamic-batch inputs (min 1, opt and max ``batch``); False if static."""
        dynamic = False
        profile = builder.create_optimization_profile()
        for index in range(network.num_inputs):
            tensor = network.get_input(index)
            shape = tuple(int(d) for d in tensor.shape)
            if shape and shape[0] < 0:
                if any(d < 0 for d in shape[1:]):
                    raise EngineError("input {!r} has dynamic dimensions other than the batch ({}). Fix: "
                                      "re-export with a fixed image size".format(tensor.name, shape))
                rest = shape[1:]
                profile.set_shape(tensor.name, (1,) + rest, (int(batch),) + rest, (int(batch),) + rest)
                dynamic = True
        if dynamic:
            config.add_optimization_profile(profile)
        return dynamic

    @staticmethod
    def load_timing_cache(config, data):
        """Attach a timing cache (``data`` = bytes of a previous one, or b"" for a new one)."""
        cache = config.create_timing_cache(data or b"")
        config.set_timing_cache(cache, False)
        return cache

    @staticmethod
    def timing_cache_bytes(config):
        cache = config.get_timing_cache()
        return bytes(cache.serialize()) if cache is not None else b""

    def build_serialized(self, builder, network, config):
        """Build and serialise; EngineError if TensorRT returns nothing (its log says why)."""
        if hasattr(builder, "build_serialized_network"):
            blob = builder.build_serialized_network(network, config)
        else:
            engine = builder.build_engine(network, config)
            blob = engine.serialize() if engine is not None else None
        if blob is None:
            raise EngineError("TensorRT {} failed to build the engine (see its messages above). Fix: try "
                              "--precision fp32, a larger --workspace-mb, or re-export with a lower "
                              "--opset".format(self.version))
        return bytes(blob)

    def calibrator_base(self):
        """The entropy calibrator base class, or None where TensorRT dropped calibration (11.x)."""
        return getattr(self.trt, "IInt8EntropyCalibrator2", None)

    # --- running (used by edge/backends/tensorrt.py) ----------------------------------------------

    def deserialize(self, runtime, data):
        """Engine from bytes; EngineError if TensorRT refuses it (callers check the sidecar first)."""
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineError("TensorRT {} could not load the engine (built by another TensorRT version or "
                              "GPU?). Fix: rebuild it with `medkiosk export engine BUNDLE`".format(
                                  self.version))
        return engine

    def runtime(self, logger):
        return self.trt.Runtime(logger)

    def io_tensors(self, engine):
        """[TensorInfo] of an engine's inputs and outputs, in engine order."""
        nptype = self.trt.nptype
        tensors = []
        if hasattr(engine, "num_io_tensors"):
            for index in range(engine.num_io_tensors):
                name = engine.get_tensor_name(index)
                is_input = engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT
                tensors.append(TensorInfo(name, is_input, engine.get_tensor_shape(name),
                                          nptype(engine.get_tensor_dtype(name))))
        else:
            for index in range(engine.num_bindings):
                tensors.append(TensorInfo(engine.get_binding_name(index), engine.binding_is_input(index),
                                          engine.get_binding_shape(index),
                                          nptype(engine.get_binding_dtype(index))))
        return tensors

    @staticmethod
    def set_input_shape(context, name, shape):
        """Set a dynamic input's shape on an execution context (named tensors or bindings)."""
        if hasattr(context, "set_input_shape"):
            ok = context.set_input_shape(name, tuple(shape))
        else:
            engine = context.engine
            index = [engine.get_binding_name(i) for i in range(engine.num_bindings)].index(name)
            ok = context.set_binding_shape(index, tuple(shape))
        if ok is False:
            raise EngineError("TensorRT rejected input shape {} for {!r} (outside the engine's profile). "
                              "Fix: rebuild the engine with a larger batch".format(tuple(shape), name))

    @staticmethod
    def execute(context, stream_handle, bindings_by_name):
        """Enqueue inference: ``bindings_by_name`` maps every I/O tensor name to a device pointer (int)."""
        if hasattr(context, "execute_async_v3"):
            for name, address in bindings_by_name.items():
                context.set_tensor_address(name, int(address))
            ok = context.execute_async_v3(stream_handle)
        else:
            engine = context.engine
            names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
            missing = [n for n in names if n not in bindings_by_name]
            if missing:
                raise EngineError("no device buffer for engine tensors {}".format(missing))
            ok = context.execute_async_v2([int(bindings_by_name[n]) for n in names], stream_handle)
        if not ok:
            raise EngineError("TensorRT failed to enqueue inference. Fix: run `medkiosk export verify "
                              "BUNDLE`; rebuild the engine if it fails")
