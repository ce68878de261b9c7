"""STAND-INS for TensorRT and pycuda, which cannot run here (no GPU; TensorRT's bindings do not load).

These are NOT TensorRT. They are strict fakes of the Python API *surface* of one TensorRT version:
touching any attribute outside that version's surface raises AttributeError, exactly like calling
a method a real version lacks. ``SURFACES`` lists each surface; the tests check every surface
against the real names (the 10.x/11.x wheels' strings, the 8.2 list in trt82_names.txt), so a
stand-in cannot quietly offer something the real library lacks.

The "engine" a stand-in builds is a blob holding a JSON header and the ONNX bytes; "running" it
evaluates the ONNX with ONNX Runtime on the CPU (or, where ONNX Runtime is absent, as on a
JetPack 4.6 Nano, with the numpy evaluator in tests/onnx_numpy.py), reading and writing ``FakeCuda``
memory through the pointers the code under test passes (set_tensor_address / bindings lists). So
the dispatch, buffer handling and verification logic are tested with real numbers; TensorRT's own
numerics are not.
"""

import json

import numpy as np

MAGIC = b"STANDIN-TRT\n"
DTYPE_CODES = {0: np.float32, 1: np.float16, 2: np.int8, 3: np.int32}



def _names(text):
    return frozenset(text.split())


_SURFACE_82 = _names("""
__version__ Logger WARNING INFO ERROR VERBOSE Builder Runtime OnnxParser BuilderFlag FP16 INT8
NetworkDefinitionCreationFlag EXPLICIT_BATCH IInt8EntropyCalibrator2 nptype
create_network create_builder_config create_optimization_profile build_engine build_serialized_network
platform_has_fast_fp16 platform_has_fast_int8 num_inputs get_input name shape
max_workspace_size set_flag int8_calibrator add_optimization_profile create_timing_cache set_timing_cache
get_timing_cache serialize set_shape parse num_errors get_error deserialize_cuda_engine
num_bindings get_binding_name binding_is_input get_binding_shape get_binding_dtype create_execution_context
engine execute_async_v2 set_binding_shape
""")
_NAMED_TENSORS = _names("""
MemoryPoolType WORKSPACE set_memory_pool_limit num_io_tensors get_tensor_name get_tensor_mode TensorIOMode
INPUT OUTPUT get_tensor_shape get_tensor_dtype set_tensor_address execute_async_v3 set_input_shape
""")
_BINDINGS = _names("""
build_engine max_workspace_size num_bindings get_binding_name binding_is_input get_binding_shape
get_binding_dtype execute_async_v2 set_binding_shape
""")
_GONE_IN_11 = _names("""
EXPLICIT_BATCH IInt8EntropyCalibrator2 int8_calibrator platform_has_fast_fp16 platform_has_fast_int8
""")
_TIMING_CACHE = _names("create_timing_cache set_timing_cache get_timing_cache")

SURFACES = {
    # JetPack 4.5: no build_serialized_network, no timing cache (a best-effort fallback only).
    "7.1.3": _SURFACE_82 - {"build_serialized_network"} - _TIMING_CACHE,
    "8.2.1": _SURFACE_82,
    "10.16.1": (_SURFACE_82 - _BINDINGS) | _NAMED_TENSORS,
    "11.4.0": ((_SURFACE_82 - _BINDINGS) | _NAMED_TENSORS) - _GONE_IN_11,
}


class StandinError(AssertionError):
    """The code under test misused the stand-in API in a way real TensorRT would reject."""


class Strict(object):
    """Attribute access limited to the owning stand-in module's surface (names not starting with "_")."""

    def __init__(self, module):
        object.__setattr__(self, "_m", module)

    def __getattribute__(self, name):
        if not name.startswith("_"):
            module = object.__getattribute__(self, "_m")
            if name not in module._surface:
                raise AttributeError("stand-in TensorRT {}: {} has no attribute {!r}".format(
                    module._version, type(self).__name__, name))
            module._used.add(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            module = object.__getattribute__(self, "_m")
            if name not in module._surface:
                raise AttributeError("stand-in TensorRT {}: cannot set {}.{}".format(
                    module._version, type(self).__name__, name))
            module._used.add(name)
        object.__setattr__(self, name, value)


class Namespace(Strict):
    """An enum-like namespace (BuilderFlag, MemoryPoolType ...) with some members."""

    def __init__(self, module, members):
        Strict.__init__(self, module)
        for name, value in members.items():
            object.__setattr__(self, name, value)


class LoggerFactory(Namespace):
    def __call__(self, severity=None):
        logger = Logger(self._m)
        logger._severity = severity
        return logger


class Logger(Strict):
    def _log(self, message):
        self._m._log.append(message)


class Tensor(Strict):
    def __init__(self, module, name, shape, dtype):
        Strict.__init__(self, module)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", tuple(shape))
        self._dtype = dtype


class Network(Strict):
    def __init__(self, module, flags):
        Strict.__init__(self, module)
        self._flags = flags
        self._inputs = []
        self._outputs = []
        self._onnx = None

    @property
    def num_inputs(self):
        return len(self._inputs)

    def get_input(self, index):
        return self._inputs[index]


class ParserError(object):
    def __init__(self, text):
        self._text = text

    def __str__(self):
        return self._text


class OnnxParser(Strict):
    def __init__(self, module, network, logger):
        Strict.__init__(self, module)
        self._network = network
        self._errors = []

    def parse(self, data):
        from edge.onnx_info import OnnxFormatError, parse_onnx

        try:
            info = parse_onnx(bytes(data))
        except (OnnxFormatError, IndexError) as exc:
            message = "ModelImporter.cpp:[stand-in] Failed to parse ONNX model ({})".format(exc)
            self._errors.append(ParserError(message))
            return False
        if not self._m._explicit_network_ok(self._network._flags):
            self._errors.append(ParserError("ONNX models need an explicit-batch network (stand-in check)"))
            return False
        codes = {"float32": 0, "float16": 1}
        for item in info.inputs:
            shape = [d if isinstance(d, int) else -1 for d in item["shape"]]
            self._network._inputs.append(Tensor(self._m, item["name"], shape, codes.get(item["dtype"], 0)))
        for item in info.outputs:
            shape = [d if isinstance(d, int) else -1 for d in item["shape"]]
            self._network._outputs.append(Tensor(self._m, item["name"], shape, codes.get(item["dtype"], 0)))
        self._network._onnx = bytes(data)
        return True

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class TimingCache(Strict):
    def __init__(self, module, data):
        Strict.__init__(self, module)
        self._data = bytes(data)

    def serialize(self):
        return self._data


class Profile(Strict):
    def __init__(self, module):
        Strict.__init__(self, module)
        self._shapes = {}

    def set_shape(self, name, minimum, optimum, maximum):
        self._shapes[name] = [list(minimum), list(optimum), list(maximum)]


class Config(Strict):
    def __init__(self, module):
        Strict.__init__(self, module)
        self._flags = set()
        self._pool = {}
        self._profiles = []
        self._timing = None
        object.__setattr__(self, "_int8_calibrator", None)
        object.__setattr__(self, "_max_workspace_size", 0)

    # Properties so the surface check applies to reads and writes alike.
    @property
    def max_workspace_size(self):
        return self._max_workspace_size

    @max_workspace_size.setter
    def max_workspace_size(self, value):
        object.__setattr__(self, "_max_workspace_size", int(value))

    @property
    def int8_calibrator(self):
        return self._int8_calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, value):
        object.__setattr__(self, "_int8_calibrator", value)

    def set_memory_pool_limit(self, pool, size):
        self._pool[pool] = int(size)

    def set_flag(self, flag):
        self._flags.add(flag)

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, data):
        return TimingCache(self._m, data)

    def set_timing_cache(self, cache, ignore_mismatch):
        if not isinstance(cache, TimingCache):
            raise StandinError("set_timing_cache needs an ITimingCache")
        self._timing = cache
        return True

    def get_timing_cache(self):
        return self._timing


class Builder(Strict):
    def __init__(self, module, logger):
        Strict.__init__(self, module)
        self._logger = logger

    @property
    def platform_has_fast_fp16(self):
        return self._m._gpu["fast_fp16"]

    @property
    def platform_has_fast_int8(self):
        return self._m._gpu["fast_int8"]

    def create_network(self, flags=0):
        return Network(self._m, flags)

    def create_builder_config(self):
        return Config(self._m)

    def create_optimization_profile(self):
        return Profile(self._m)

    def _build(self, network, config):
        module = self._m
        if network._onnx is None:
            raise StandinError("build called on an empty network")
        dynamic = [t.name for t in network._inputs if t.shape and t.shape[0] < 0]
        profiles = [p._shapes for p in config._profiles]
        if dynamic and not any(all(name in p for name in dynamic) for p in profiles):
            module._log.append("[stand-in] Network has dynamic inputs but no optimization profile")
            return None
        flags = sorted(module._flag_names[f] for f in config._flags)
        calibration = None
        if "INT8" in flags:
            calibrator = config._int8_calibrator
            if calibrator is None:
                module._log.append("[stand-in] INT8 requested but no calibrator set")
                return None
            calibration = module._run_calibrator(calibrator, network)
        if config._timing is not None:
            # A real build appends tactic timings; the stand-in appends a marker so growth is observable.
            config._timing = TimingCache(module, config._timing._data + b"T")
        header = {
            "trt": module._version, "gpu": module._gpu["name"], "flags": flags,
            "workspace": config._pool.get("WORKSPACE", config._max_workspace_size),
            "explicit_batch_flag": bool(network._flags), "calibration": calibration, "profiles": profiles,
            "inputs": [[t.name, list(t.shape), t._dtype] for t in network._inputs],
            "outputs": [[t.name, list(t.shape), t._dtype] for t in network._outputs],
        }
        module._builds.append(header)
        return MAGIC + json.dumps(header).encode() + b"\n" + network._onnx

    def build_serialized_network(self, network, config):
        return self._build(network, config)

    def build_engine(self, network, config):
        blob = self._build(network, config)
        return None if blob is None else Engine(self._m, blob)


class Runtime(Strict):
    def __init__(self, module, logger):
        Strict.__init__(self, module)

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(MAGIC):
            self._m._log.append("[stand-in] Serialization assertion magicTagRead == kMAGIC_TAG failed")
            return None
        header = json.loads(data[len(MAGIC):data.index(b"\n", len(MAGIC))].decode())
        if header["trt"] != self._m._version:
            # What real TensorRT prints; medkiosk must never get this far with a foreign engine.
            self._m._log.append("[stand-in] The engine plan file is not compatible with this version of "
                                "TensorRT: version tag does not match")
            self._m._foreign_loads += 1
            return None
        return Engine(self._m, data)


class Engine(Strict):
    def __init__(self, module, data):
        Strict.__init__(self, module)
        self._blob = data
        end = data.index(b"\n", len(MAGIC))
        self._header = json.loads(data[len(MAGIC):end].decode())
        self._onnx = data[end + 1:]
        self._io = [(n, s, d, True) for n, s, d in self._header["inputs"]] + \
                   [(n, s, d, False) for n, s, d in self._header["outputs"]]

    def serialize(self):
        return self._blob

    def create_execution_context(self):
        return Context(self._m, self)

    # named tensors (8.5+)
    @property
    def num_io_tensors(self):
        return len(self._io)

    def get_tensor_name(self, index):
        return self._io[index][0]

    def _entry(self, name):
        for entry in self._io:
            if entry[0] == name:
                return entry
        raise StandinError("no tensor {!r}".format(name))

    def get_tensor_mode(self, name):
        # Raw access: the stand-in's own lookups must not count as names the code under test used.
        modes = object.__getattribute__(self._m, "TensorIOMode")
        return object.__getattribute__(modes, "INPUT" if self._entry(name)[3] else "OUTPUT")

    def get_tensor_shape(self, name):
        return tuple(self._entry(name)[1])

    def get_tensor_dtype(self, name):
        return self._entry(name)[2]

    # bindings (<= 8.6)
    @property
    def num_bindings(self):
        return len(self._io)

    def get_binding_name(self, index):
        return self._io[index][0]

    def binding_is_input(self, index):
        return self._io[index][3]

    def get_binding_shape(self, index):
        return tuple(self._io[index][1])

    def get_binding_dtype(self, index):
        return self._io[index][2]


class Context(Strict):
    def __init__(self, module, engine):
        Strict.__init__(self, module)
        object.__setattr__(self, "_engine", engine)
        self._addresses = {}
        self._shapes = {}

    @property
    def engine(self):
        return self._engine

    def set_tensor_address(self, name, address):
        self._engine._entry(name)
        self._addresses[name] = int(address)
        return True

    def set_input_shape(self, name, shape):
        self._shapes[name] = tuple(shape)
        return True

    def set_binding_shape(self, index, shape):
        self._shapes[self._engine.get_binding_name(index)] = tuple(shape)
        return True

    def execute_async_v3(self, stream_handle):
        return self._run(dict(self._addresses), stream_handle)

    def execute_async_v2(self, bindings, stream_handle):
        if len(bindings) != len(self._engine._io):
            raise StandinError("execute_async_v2 needs one pointer per binding, got {}".format(len(bindings)))
        return self._run({entry[0]: int(p) for entry, p in zip(self._engine._io, bindings)}, stream_handle)

    def _run(self, addresses, stream_handle):
        memory = self._m._memory
        if memory is None:
            raise StandinError("stand-in has no FakeCuda memory to run on")
        missing = [e[0] for e in self._engine._io if e[0] not in addresses]
        if missing:
            raise StandinError("no address for {}".format(missing))
        feeds = {}
        for name, shape, code, is_input in self._engine._io:
            if is_input:
                shape = self._shapes.get(name, tuple(shape))
                if any(d < 0 for d in shape):
                    raise StandinError("input {!r} shape not set".format(name))
                feeds[name] = memory.read(addresses[name], shape, DTYPE_CODES[code])
        names = [e[0] for e in self._engine._io if not e[3]]
        for name, value in zip(names, evaluate_onnx(self._engine._onnx, names, feeds)):
            memory.write(addresses[name], np.ascontiguousarray(value))
        self._m._executions.append({"api": "v3" if "execute_async_v3" in self._m._surface else "v2",
                                    "stream": stream_handle})
        return True


def evaluate_onnx(onnx_bytes, names, feeds):
    """The outputs ``names`` of the ONNX model for ``feeds``: ONNX Runtime on the CPU where it is
    installed, else the numpy evaluator (tests/onnx_numpy.py; the JetPack 4.6 run has no ONNX Runtime)."""
    try:
        import onnxruntime
    except ImportError:
        from tests.onnx_numpy import graph_of

        outputs = graph_of(onnx_bytes).run(feeds, names)
        return [outputs[name] for name in names]
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(names, feeds)


class CalibratorBase(object):
    """Stand-in ``IInt8EntropyCalibrator2``: subclasses implement the four calibration methods."""

    def __init__(self):
        pass


class StandinTensorRT(Strict):
    """One stand-in ``tensorrt`` module of a given version."""

    def __init__(self, version, gpu=None, memory=None):
        if version not in SURFACES:
            raise ValueError("no stand-in surface for TensorRT {}".format(version))
        object.__setattr__(self, "_m", self)
        self._version = version
        self._surface = SURFACES[version]
        self._used = set()
        self._log = []
        self._builds = []
        self._executions = []
        self._foreign_loads = 0
        self._memory = memory
        self._gpu = dict({"name": "Stand-in GPU", "fast_fp16": True, "fast_int8": True}, **(gpu or {}))
        object.__setattr__(self, "__version__", version)
        flags = {"FP16": 101, "INT8": 102}
        self._flag_names = {v: k for k, v in flags.items()}
        object.__setattr__(self, "BuilderFlag", Namespace(self, flags))
        object.__setattr__(self, "NetworkDefinitionCreationFlag", Namespace(
            self, {"EXPLICIT_BATCH": 0} if "EXPLICIT_BATCH" in self._surface else {}))
        object.__setattr__(self, "MemoryPoolType", Namespace(self, {"WORKSPACE": "WORKSPACE"}))
        object.__setattr__(self, "TensorIOMode", Namespace(self, {"INPUT": "INPUT", "OUTPUT": "OUTPUT"}))
        object.__setattr__(self, "Logger", LoggerFactory(self, {"WARNING": 2, "INFO": 3, "ERROR": 1,
                                                               "VERBOSE": 4}))
        object.__setattr__(self, "IInt8EntropyCalibrator2", CalibratorBase)

    # Module-level callables
    def Builder(self, logger):  # noqa: N802 - TensorRT's name
        return Builder(self, logger)

    def Runtime(self, logger):  # noqa: N802
        return Runtime(self, logger)

    def OnnxParser(self, network, logger):  # noqa: N802
        return OnnxParser(self, network, logger)

    @staticmethod
    def nptype(code):
        return DTYPE_CODES[code]

    def _explicit_network_ok(self, flags):
        # 8.x networks are implicit-batch unless EXPLICIT_BATCH is set; 10.x+ are always explicit.
        return "EXPLICIT_BATCH" not in self._surface or "execute_async_v3" in self._surface or flags == 1

    def _run_calibrator(self, calibrator, network):
        """Drive the calibrator like TensorRT: batch size, batches until None, then write the cache."""
        cached = calibrator.read_calibration_cache()
        if cached:
            return {"from_cache": True, "batches": 0}
        batch_size = calibrator.get_batch_size()
        names = [t.name for t in network._inputs]
        batches = []
        while True:
            pointers = calibrator.get_batch(names)
            if not pointers:
                break
            if len(pointers) != len(names):
                raise StandinError("get_batch must return one pointer per input")
            shape = (batch_size,) + tuple(network._inputs[0].shape[1:])
            batches.append(self._memory.read(int(pointers[0]), shape, np.float32))
        calibrator.write_calibration_cache(b"STANDIN-CALIBRATION")
        self._calibration_batches = batches
        return {"from_cache": False, "batches": len(batches)}


class FakeDeviceAllocation(object):
    def __init__(self, address):
        self.address = address

    def __int__(self):
        return self.address


class FakeStream(object):
    def __init__(self, number):
        self.handle = 0x5000 + number
        self.synchronized = 0

    def synchronize(self):
        self.synchronized += 1


class FakeCuda(object):
    """The subset of ``pycuda.driver`` the runner and calibrator use, on host memory."""

    def __init__(self):
        self._memory = {}
        self._next = 0x10000
        self._streams = 0

    def mem_alloc(self, nbytes):
        address = self._next
        self._next += max(256, (int(nbytes) + 255) // 256 * 256)
        self._memory[address] = bytearray(int(nbytes))
        return FakeDeviceAllocation(address)

    def memcpy_htod_async(self, dest, src, stream=None):
        self.write(int(dest), np.ascontiguousarray(src))

    def memcpy_htod(self, dest, src):
        self.write(int(dest), np.ascontiguousarray(src))

    def memcpy_dtoh_async(self, dest, src, stream=None):
        dest[...] = self.read(int(src), dest.shape, dest.dtype)

    def Stream(self):  # noqa: N802 - pycuda's name
        self._streams += 1
        return FakeStream(self._streams)

    @staticmethod
    def pagelocked_empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    def read(self, address, shape, dtype):
        buffer = self._memory[address]
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if count > len(buffer):
            raise StandinError("read of {} bytes from a {}-byte allocation".format(count, len(buffer)))
        return np.frombuffer(bytes(buffer[:count]), dtype=dtype).reshape(shape).copy()

    def write(self, address, array):
        data = array.tobytes()
        buffer = self._memory[address]
        if len(data) > len(buffer):
            raise StandinError("write of {} bytes into a {}-byte allocation".format(len(data), len(buffer)))
        buffer[:len(data)] = data
