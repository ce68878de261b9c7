"""Build a TensorRT engine from a bundle's ONNX on the device (Python 3.6, no torch, no onnx).

Explicit batch, a workspace limit, a persistent timing cache, and precision handled honestly:
FP16 only where the GPU has fast FP16 and INT8 only where it has fast INT8 (never on a Jetson Nano);
otherwise the build is refused, never silently downgraded. INT8 calibration feeds images through
``edge.preprocess.preprocess`` exactly like the kiosk does, and keeps a calibration cache.
"""

import os
import time

from edge.errors import EngineError
from edge.lazy import require
from edge.preprocess import IMAGE_EXTENSIONS, load_image, preprocess_batch
from edge.tensorrt.runner import import_pycuda
from edge.tensorrt.trt_compat import TensorRT, has_qdq

DEFAULT_WORKSPACE_MB = 512
MAX_CALIBRATION_IMAGES = 500
MIN_CALIBRATION_IMAGES = 8


class BuildResult(object):
    """A serialised engine and what the build learnt on the way."""

    def __init__(self, blob, seconds, precision, caps, io, timing_cache, calibration):
        self.blob = blob
        self.seconds = seconds
        self.precision = precision
        self.caps = caps
        self.io = io
        self.timing_cache = timing_cache
        self.calibration = calibration

    def sidecar_extra(self):
        return {"build": {"platform": self.caps, "io": self.io, "timing_cache": self.timing_cache,
                          "calibration": self.calibration}}


def calibration_images(folder, limit=MAX_CALIBRATION_IMAGES):
    """Sorted image paths under ``folder`` (at most ``limit``, spread evenly)."""
    if not folder or not os.path.isdir(folder):
        raise EngineError("calibration folder {} does not exist. Fix: pass --calib DIR with a few hundred "
                          "images like the ones the kiosk will see".format(folder))
    paths = []
    for root, _dirs, files in sorted(os.walk(folder)):
        paths.extend(os.path.join(root, f) for f in sorted(files)
                     if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if len(paths) < MIN_CALIBRATION_IMAGES:
        raise EngineError("only {} images in {}; INT8 calibration needs at least {} (a few hundred is "
                          "better). Fix: add images to --calib".format(len(paths), folder,
                                                                      MIN_CALIBRATION_IMAGES))
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


def make_calibrator(compat, cuda, paths, input_spec, cache_path, batch_size=1):
    """An entropy calibrator (TensorRT's ``IInt8EntropyCalibrator2``) over preprocessed images."""
    base = compat.calibrator_base()
    if base is None:
        raise EngineError("TensorRT {} has no INT8 calibrator API. Fix: use --precision fp16".format(
            compat.version))
    np = require("numpy")

    class EntropyCalibrator(base):
        def __init__(self):
            base.__init__(self)
            self.paths = list(paths)
            self.index = 0
            self.batches = 0
            self.nbytes = int(np.prod(input_spec.shape(batch_size))) * 4
            self.device = cuda.mem_alloc(self.nbytes) if self.paths else None

        def get_batch_size(self):
            return int(batch_size)

        def get_batch(self, names, *_args):
            if self.index + batch_size > len(self.paths):
                return None
            images = [load_image(p) for p in self.paths[self.index:self.index + batch_size]]
            self.index += batch_size
            batch = np.ascontiguousarray(preprocess_batch(images, input_spec), dtype=np.float32)
            cuda.memcpy_htod(self.device, batch)
            self.batches += 1
            return [int(self.device)]

        def read_calibration_cache(self, *_args):
            if cache_path and os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache):
            if not cache_path:
                return
            os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
            tmp = cache_path + ".tmp"
            with open(tmp, "wb") as handle:
                handle.write(bytes(cache))
            os.replace(tmp, cache_path)

    return EntropyCalibrator()


def check_precision(compat, caps, precision, onnx_bytes, dynamic):
    """Refuse precisions this GPU/TensorRT cannot do fast (the user asked for speed, not a downgrade)."""
    if precision == "fp16" and caps["fast_fp16"] is False:
        raise EngineError("this GPU has no fast FP16; use --precision fp32")
    if precision != "int8":
        return None
    if caps["fast_int8"] is False:
        raise EngineError("this GPU has no fast INT8 (the Jetson Nano's Maxwell GPU has none); use "
                          "--precision fp16")
    if has_qdq(onnx_bytes):
        return "qdq"
    if compat.calibrator_base() is None:
        raise EngineError("TensorRT {} removed INT8 calibration (IInt8EntropyCalibrator2) and this model has "
                          "no Q/DQ quantisation nodes. Fix: use --precision fp16, or export a quantised "
                          "(Q/DQ) ONNX".format(compat.version))
    if dynamic:
        raise EngineError("INT8 calibration here supports static-batch models only. Fix: re-export without "
                          "--dynamic-batch, or use --precision fp16")
    return "calibrator"


def build_engine(onnx_path, precision="fp16", calib_dir=None, workspace_mb=DEFAULT_WORKSPACE_MB,
                 timing_cache=None, input_spec=None, calibration_cache=None, batch=1, compat=None, cuda=None,
                 log=None):
    """Build a serialised engine from ``onnx_path``; return a BuildResult (EngineError on refusal)."""
    log = log or (lambda _message: None)
    compat = compat if compat is not None else TensorRT()
    if precision not in ("fp32", "fp16", "int8"):
        raise EngineError("precision must be fp32, fp16 or int8, got {!r}".format(precision))
    with open(onnx_path, "rb") as handle:
        onnx_bytes = handle.read()
    trt = compat.trt
    logger = compat.logger()
    builder = trt.Builder(logger)
    caps = compat.platform_caps(builder)
    network = compat.create_network(builder)
    compat.parse_onnx(network, logger, onnx_bytes, source=onnx_path)
    config = builder.create_builder_config()
    compat.set_workspace(config, int(workspace_mb) << 20)
    dynamic = compat.add_batch_profile(builder, network, config, batch)
    int8_mode = check_precision(compat, caps, precision, onnx_bytes, dynamic)
    compat.set_precision_flag(config, precision)
    calibration = calibrator = None
    if int8_mode == "calibrator":
        if input_spec is None:
            raise EngineError("INT8 calibration needs the model's input description (build from a bundle)")
        cached = bool(calibration_cache and os.path.isfile(calibration_cache))
        paths = [] if cached and not calib_dir else calibration_images(calib_dir)
        if not paths and not cached:
            raise EngineError("INT8 needs calibration images. Fix: pass --calib DIR")
        if cuda is None:
            cuda = import_pycuda()
        calibrator = make_calibrator(compat, cuda, paths, input_spec, calibration_cache)
        config.int8_calibrator = calibrator
        calibration = {"images": len(paths), "cache": calibration_cache, "cache_reused": cached}
        log("calibrating INT8 on {} images{}".format(len(paths), " (cache found)" if cached else ""))
    elif int8_mode == "qdq":
        calibration = {"mode": "Q/DQ in the ONNX"}
    timing = None
    if timing_cache and hasattr(config, "create_timing_cache"):
        existing = b""
        if os.path.isfile(timing_cache):
            with open(timing_cache, "rb") as handle:
                existing = handle.read()
        compat.load_timing_cache(config, existing)
        timing = {"path": timing_cache, "loaded_bytes": len(existing)}
    log("building {} engine with TensorRT {} (workspace {} MiB){}".format(
        precision, compat.version, workspace_mb, "" if caps["fast_fp16"] is not None else
        "; this TensorRT does not report fast FP16/INT8"))
    start = time.time()
    blob = compat.build_serialized(builder, network, config)
    seconds = time.time() - start
    if timing is not None:
        data = compat.timing_cache_bytes(config)
        if data:
            tmp = timing_cache + ".tmp"
            os.makedirs(os.path.dirname(timing_cache) or ".", exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, timing_cache)
            timing["saved_bytes"] = len(data)
    io = [{"name": network.get_input(i).name, "shape": [int(d) for d in network.get_input(i).shape]}
          for i in range(network.num_inputs)]
    if calibrator is not None:
        calibration["batches"] = calibrator.batches
    return BuildResult(blob, seconds, precision, caps, io, timing, calibration)
