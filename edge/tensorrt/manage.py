"""Engine life cycle on the device: find or build (``ensure_engine``), verify against the bundle's
golden images (``verify_bundle``) and rebuild every stale engine (``rebuild_engines``, run by the
``medkiosk-engines.service`` oneshot). Python 3.6 compatible.
"""

import os

from edge.bundle import MANIFEST, load_bundle
from edge.errors import EngineError, MedkioskError
from edge.parity import TOLERANCES
from edge.preprocess import load_image, preprocess
from edge.tensorrt import cache as engine_cache
from edge.tensorrt.builder import build_engine
from edge.tensorrt.gpu import detect_gpu
from edge.tensorrt.runner import EngineRunner, import_pycuda
from edge.tensorrt.trt_compat import TensorRT


def _quiet(_message):
    return None


class EngineResult(object):
    """An engine ready for this device: ``action`` is "cached" or "built"."""

    def __init__(self, bundle, path, action, precision, lookup, build=None):
        self.bundle = bundle
        self.path = path
        self.action = action
        self.precision = precision
        self.lookup = lookup
        self.build = build


class Device(object):
    """TensorRT + GPU identity (+ CUDA for calibration/inference), detected once per command."""

    def __init__(self, compat=None, gpu=None, cuda=None):
        self.compat = compat if compat is not None else TensorRT()
        self.cuda = cuda
        if gpu is None:
            gpu = detect_gpu(cuda)
        self.gpu = gpu

    @property
    def trt_version(self):
        return self.compat.version

    def cuda_driver(self):
        if self.cuda is None:
            self.cuda = import_pycuda()
        return self.cuda


def ensure_engine(bundle_path, cache_dir, precision="fp16", calib_dir=None, workspace_mb=512, force=False,
                  allow_build=True, batch=1, device=None, log=None):
    """The engine of a bundle for this TensorRT/GPU/precision: from the cache if fresh, else built."""
    log = log or _quiet
    bundle = load_bundle(bundle_path) if isinstance(bundle_path, str) else bundle_path
    device = device or Device()
    lookup = engine_cache.find_engine(cache_dir, bundle, device.trt_version, device.gpu, precision, batch)
    if lookup.fresh and not force:
        return EngineResult(bundle, lookup.path, "cached", precision, lookup)
    if not allow_build:
        raise EngineError("no usable {} engine for {} ({}). Fix: {}".format(
            precision, bundle.bundle_id, "; ".join(lookup.reasons), engine_cache.REBUILD_HINT))
    if not lookup.fresh:
        log("{}: {}".format(bundle.module_id, lookup.explain()))
    trt_version, gpu = device.trt_version, device.gpu
    calibration_cache = None
    if precision == "int8":
        calibration_cache = engine_cache.calibration_cache_path(cache_dir, bundle, trt_version, gpu, batch)
    result = build_engine(bundle.model_path, precision=precision, calib_dir=calib_dir,
                          workspace_mb=workspace_mb,
                          timing_cache=engine_cache.timing_cache_path(cache_dir, trt_version, gpu),
                          input_spec=bundle.description.input, calibration_cache=calibration_cache,
                          batch=batch, compat=device.compat, cuda=device.cuda, log=log)
    path = engine_cache.write_engine(cache_dir, bundle, result.blob, trt_version, gpu, precision, batch,
                                     result.seconds, result.sidecar_extra())
    log("{}: built {} engine in {:.1f} s -> {}".format(bundle.module_id, precision, result.seconds, path))
    lookup = engine_cache.find_engine(cache_dir, bundle, device.trt_version, device.gpu, precision, batch)
    if not lookup.fresh:
        raise EngineError("the engine just written is not usable ({}). Fix: check the disk".format(
            lookup.explain()))
    return EngineResult(bundle, path, "built", precision, lookup, result)


def verify_bundle(bundle_path, cache_dir, precision="fp16", allow_build=True, calib_dir=None, device=None,
                  log=None):
    """Run the bundle's golden images through TensorRT and compare with the lab's outputs.

    Returns a JSON-ready report with ``ok`` and human-readable ``lines``.
    """
    bundle = load_bundle(bundle_path, require_golden=False)  # no golden images: reported below
    device = device or Device()
    samples = bundle.golden_samples()
    lines = []
    report = {"bundle": bundle.bundle_id, "precision": precision, "tensorrt": device.trt_version,
              "gpu": engine_cache.gpu_tag(device.gpu), "samples": [], "ok": False, "lines": lines}
    if not samples:
        lines.append("{} has no golden images (golden/expected.json). Fix: re-export it with "
                     "`medkiosk export onnx` (golden images are on by default)".format(bundle.bundle_id))
        return report
    result = ensure_engine(bundle, cache_dir, precision=precision, calib_dir=calib_dir,
                           allow_build=allow_build, device=device, log=log)
    report["engine"] = result.path
    report["engine_action"] = result.action
    runner = EngineRunner(engine_cache.read_engine(result.lookup), compat=device.compat,
                          cuda=device.cuda_driver())
    output = bundle.description.output_name
    classes = bundle.description.classes
    failures = 0
    for sample in samples:
        probs = runner.run(preprocess(load_image(sample.path), bundle.description.input))[output][0]
        tolerance = max(sample.tolerance, TOLERANCES[precision])
        diff = max(abs(float(p) - e) for p, e in zip(probs, sample.probabilities))
        top1 = classes[int(probs.argmax())]
        ok = diff <= tolerance and top1 == sample.top1
        failures += 0 if ok else 1
        report["samples"].append({"file": os.path.basename(sample.path), "max_abs_diff": diff,
                                  "tolerance": tolerance, "top1": top1, "expected_top1": sample.top1,
                                  "ok": ok})
        lines.append("{} {}: top-1 {} (lab: {}), max |dprob| {:.2g} (tolerance {:g})".format(
            "ok  " if ok else "FAIL", os.path.basename(sample.path), top1, sample.top1, diff, tolerance))
    report["ok"] = failures == 0
    report["failures"] = failures
    lines.append("{} {} engine {} ({}, TensorRT {} on {}): {}/{} golden images match".format(
        bundle.bundle_id, precision, os.path.basename(result.path), result.action, device.trt_version,
        engine_cache.gpu_tag(device.gpu), len(samples) - failures, len(samples)))
    return report


def find_bundles(models_dir):
    """Bundle folders (holding manifest.json) directly under ``models_dir``."""
    if not os.path.isdir(models_dir):
        raise EngineError("models folder {} does not exist. Fix: pass --models DIR (e.g. "
                          "/opt/medkiosk/models)".format(models_dir))
    return [os.path.join(models_dir, name) for name in sorted(os.listdir(models_dir))
            if os.path.isfile(os.path.join(models_dir, name, MANIFEST))]


def rebuild_engines(models_dir, cache_dir, precision="fp16", device=None, log=None, verify=False):
    """Make sure every bundle under ``models_dir`` has a fresh engine; count failures, never hide them.

    With ``verify`` each bundle's golden images are also run through its engine; a mismatch counts
    as a failure.
    """
    log = log or _quiet
    bundles = find_bundles(models_dir)
    summary = {"fresh": 0, "built": 0, "failed": 0, "verified": 0, "errors": [], "bundles": len(bundles)}
    if not bundles:
        log("no bundles under {}".format(models_dir))
        return summary
    device = device or Device()
    for path in bundles:
        try:
            result = ensure_engine(path, cache_dir, precision=precision, device=device, log=log)
        except MedkioskError as exc:
            summary["failed"] += 1
            summary["errors"].append({"bundle": path, "error": str(exc)})
            log("FAILED {}: {}".format(path, exc))
            continue
        summary["fresh" if result.action == "cached" else "built"] += 1
        log("{}: {} engine {} ({})".format(result.bundle.module_id, precision, result.path, result.action))
        if verify:
            try:
                report = verify_bundle(path, cache_dir, precision=precision, allow_build=False, device=device)
            except MedkioskError as exc:
                report = {"ok": False, "lines": [str(exc)]}
            if report["ok"]:
                summary["verified"] += 1
            else:
                summary["failed"] += 1
                summary["errors"].append({"bundle": path,
                                          "error": "golden check failed: " + report["lines"][-1]})
                log("FAILED {}: golden images do not match ({})".format(path, report["lines"][-1]))
    return summary
