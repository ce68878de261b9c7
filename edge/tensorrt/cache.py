"""The engine cache: one engine per (model, TensorRT version, GPU, precision, batch), with a sidecar.

Layout: ``<cache>/<module id>/<onnx sha256[:16]>-trt<version>-<gpu>-<precision>-b<batch>.engine``
plus ``<same>.engine.json`` (the sidecar: model description, manifest and engine hashes, TensorRT
version, GPU, precision, batch, build time, host, timing). The sidecar is written last, so an engine
without one is an interrupted build.

``find_engine`` compares the key *and* the sidecar (and the engine file's hash) before anything is
deserialised: an engine from another TensorRT, GPU or model is reported as stale and rebuilt, never
handed to TensorRT (whose answer would be "version tag does not match"). Python 3.6 compatible.
"""

import json
import os
import re
import socket

from edge.bundle import MANIFEST, sha256_file, utc_now_iso, write_json_atomic
from edge.errors import EngineError

# Where engines live on the device (the kiosk config's engine_cache defaults to it; the env var
# overrides it for the command line tools).
ENGINE_CACHE_ENV = "MEDKIOSK_ENGINE_CACHE"
DEFAULT_ENGINE_CACHE = "/var/lib/medkiosk/engines"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "medkiosk-engine"
SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
REBUILD_HINT = "rebuild it: `medkiosk export engine BUNDLE` (or `medkiosk export engines --models DIR`)"


def default_cache_dir():
    """The engine cache folder: $MEDKIOSK_ENGINE_CACHE, else DEFAULT_ENGINE_CACHE."""
    return os.environ.get(ENGINE_CACHE_ENV) or DEFAULT_ENGINE_CACHE


def slug(text):
    """Lower-case file-name-safe form: "NVIDIA Tegra X1" -> "nvidia-tegra-x1"."""
    return re.sub(r"[^a-z0-9._]+", "-", str(text).lower()).strip("-.") or "unknown"


def gpu_tag(gpu):
    """The GPU part of an engine key: the GPU's name, else its ``sm_XY``."""
    if isinstance(gpu, dict):
        if gpu.get("name"):
            return slug(gpu["name"])
        if gpu.get("sm"):
            return slug(gpu["sm"]).replace(".", "")  # "sm_5.3" -> "sm_53"
        raise EngineError("GPU identity {} has neither name nor sm. Fix: report this bug".format(gpu))
    return slug(gpu)


def engine_filename(onnx_sha256, trt_version, gpu, precision, batch=1):
    if precision not in PRECISIONS:
        raise EngineError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), precision))
    return "{}-trt{}-{}-{}-b{}{}".format(onnx_sha256[:16], slug(trt_version), gpu_tag(gpu), precision,
                                         int(batch), ENGINE_SUFFIX)


def engine_path(cache_dir, module_id, onnx_sha256, trt_version, gpu, precision, batch=1):
    return os.path.join(str(cache_dir), slug(module_id),
                        engine_filename(onnx_sha256, trt_version, gpu, precision, batch))


def sidecar_path(path):
    return path + SIDECAR_SUFFIX


def calibration_cache_path(cache_dir, bundle, trt_version, gpu, batch=1):
    """Where the INT8 calibration cache of a bundle lives (per TensorRT version and GPU)."""
    stem = engine_filename(bundle.sha256, trt_version, gpu, "int8", batch)[:-len(ENGINE_SUFFIX)]
    return os.path.join(str(cache_dir), slug(bundle.module_id), stem + ".calib")


def timing_cache_path(cache_dir, trt_version, gpu):
    """One timing cache per TensorRT version and GPU, shared by every model."""
    return os.path.join(str(cache_dir), "timing-trt{}-{}.cache".format(slug(trt_version), gpu_tag(gpu)))


def _read_sidecar(path):
    try:
        with open(sidecar_path(path)) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        return None, "sidecar unreadable ({})".format(exc)
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        return None, "sidecar is not a medkiosk engine record"
    return data, None


class EngineLookup(object):
    """Result of ``find_engine``: ``status`` is "fresh", "missing" or "stale"; ``reasons`` say why."""

    def __init__(self, status, path, sidecar=None, reasons=None, others=None):
        self.status = status
        self.path = path
        self.sidecar = sidecar
        self.reasons = list(reasons or [])
        self.others = list(others or [])

    @property
    def fresh(self):
        return self.status == "fresh"

    def explain(self):
        text = "; ".join(self.reasons) if self.reasons else self.status
        return "engine {} is {}: {}".format(self.path, self.status, text)

    def __repr__(self):
        return "EngineLookup({!r}, {!r}, reasons={!r})".format(self.status, self.path, self.reasons)


def _mismatches(sidecar, expected):
    reasons = []
    labels = {"onnx_sha256": "built from another model.onnx", "tensorrt": "built with TensorRT {}",
              "gpu_tag": "built for GPU {}", "precision": "built at precision {}",
              "batch": "built for batch {}"}
    for key, label in sorted(labels.items()):
        if sidecar.get(key) != expected[key]:
            reasons.append(label.format(sidecar.get(key)) + " (this device needs {})".format(
                expected[key] if key != "onnx_sha256" else str(expected[key])[:16]))
    return reasons


def find_engine(cache_dir, bundle, trt_version, gpu, precision, batch=1, check_engine_hash=True):
    """Look up the engine for ``bundle`` on this TensorRT/GPU; never deserialises anything."""
    path = engine_path(cache_dir, bundle.module_id, bundle.sha256, trt_version, gpu, precision, batch)
    expected = {"onnx_sha256": bundle.sha256, "tensorrt": str(trt_version), "gpu_tag": gpu_tag(gpu),
                "precision": precision, "batch": int(batch)}
    folder = os.path.dirname(path)
    others = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            candidate = os.path.join(folder, name)
            if name.endswith(ENGINE_SUFFIX) and candidate != path:
                sidecar, problem = _read_sidecar(candidate)
                why = problem or "; ".join(_mismatches(sidecar, expected)) or "same key under another name"
                others.append({"path": candidate, "why": why})
    if not os.path.isfile(path):
        reasons = ["no engine built yet for TensorRT {} on {} at {}".format(
            trt_version, gpu_tag(gpu), precision)]
        reasons += ["{} is unusable here: {}".format(os.path.basename(o["path"]), o["why"]) for o in others]
        return EngineLookup("missing", path, reasons=reasons, others=others)
    sidecar, problem = _read_sidecar(path)
    if sidecar is None:
        return EngineLookup("stale", path, reasons=[problem + " (interrupted build?)"], others=others)
    reasons = _mismatches(sidecar, expected)
    if not reasons and check_engine_hash:
        size = os.path.getsize(path)
        if size != sidecar.get("engine_bytes"):
            reasons.append("engine file has {} bytes, its sidecar says {} (truncated copy?)".format(
                size, sidecar.get("engine_bytes")))
        elif sha256_file(path) != sidecar.get("engine_sha256"):
            reasons.append("engine file does not match the sha256 in its sidecar (corrupted)")
    return EngineLookup("stale" if reasons else "fresh", path, sidecar, reasons, others)


def read_engine(lookup):
    """The engine bytes of a fresh lookup; EngineError otherwise (never loads a stale engine)."""
    if not lookup.fresh:
        raise EngineError("{}. Fix: {}".format(lookup.explain(), REBUILD_HINT))
    with open(lookup.path, "rb") as handle:
        return handle.read()


def write_engine(cache_dir, bundle, blob, trt_version, gpu, precision, batch=1, build_seconds=None,
                 extra=None):
    """Store an engine and then its sidecar (atomically, in that order); return the engine path."""
    path = engine_path(cache_dir, bundle.module_id, bundle.sha256, trt_version, gpu, precision, batch)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(sidecar_path(path)):
            os.remove(sidecar_path(path))  # the old record must not vouch for the new bytes
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise EngineError("cannot write the engine to {} ({}). Fix: pass a writable --cache folder".format(
            folder, exc.strerror)) from exc
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "module": {"id": bundle.module_id, "title": bundle.title},
        "bundle_id": bundle.bundle_id,
        "bundle_path": os.path.abspath(bundle.path),
        "model": bundle.description.to_dict(),
        "manifest_sha256": sha256_file(os.path.join(bundle.path, MANIFEST)),
        "onnx_sha256": bundle.sha256,
        "engine_sha256": sha256_file(path),
        "engine_bytes": len(blob),
        "tensorrt": str(trt_version),
        "gpu": gpu if isinstance(gpu, dict) else {"name": str(gpu)},
        "gpu_tag": gpu_tag(gpu),
        "precision": precision,
        "batch": int(batch),
        "built": utc_now_iso(),
        "build_seconds": None if build_seconds is None else round(float(build_seconds), 3),
        "builder_host": socket.gethostname(),
    }
    sidecar.update(extra or {})
    write_json_atomic(sidecar_path(path), sidecar)
    return path
