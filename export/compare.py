"""``medkiosk export compare``: the same images through every backend available here.

Reference: PyTorch when given a checkpoint (and torch is installed), else ONNX Runtime FP32 on the
bundle. Candidates: ONNX Runtime FP32, an FP16 ONNX when asked, and TensorRT at each asked precision
when ``tensorrt`` imports (on a device). Each candidate must stay within its precision's tolerance
on the probabilities and agree on the top-1 class for >= 99% of images.
"""

import os
import shutil
import tempfile

from edge.bundle import load_lab_bundle
from edge.errors import MedkioskError, MissingDependencyError
from edge.lazy import require
from edge.parity import MIN_TOP1_AGREEMENT, TOLERANCES, compare_probabilities
from edge.preprocess import IMAGE_EXTENSIONS, load_image, preprocess
from export.errors import ExportError

INSTALL_EXPORT = "pip install 'medkiosk[export]'"


def image_paths(folder, limit):
    if not os.path.isdir(folder):
        raise ExportError("--images {} is not a folder. Fix: pass a folder of images".format(folder))
    paths = []
    for root, _dirs, files in sorted(os.walk(folder)):
        paths.extend(os.path.join(root, f) for f in sorted(files)
                     if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ExportError("no images in {} ({}). Fix: pass a folder of images".format(
            folder, ", ".join(IMAGE_EXTENSIONS)))
    step = max(1, len(paths) // int(limit))
    return paths[::step][:int(limit)]


def _onnxruntime_probs(model, inputs, description):
    from export.onnx_export import onnx_session, run_onnx

    return run_onnx(onnx_session(model), inputs, description.input.name)


def _fp16_onnx(src, dst):
    """An FP16 copy of an ONNX file (float32 input/output kept)."""
    onnx = require("onnx", INSTALL_EXPORT)
    from export.onnx_export import to_fp16

    onnx.save(to_fp16(onnx.load(src)), dst)
    return dst


def _export_checkpoint(source, workdir, fp16):
    """Export a checkpoint's deploy model to plain ONNX files (no bundle, no parity gate)."""
    onnx = require("onnx", INSTALL_EXPORT)
    from export.onnx_export import postprocess_graph, torch_export

    raw = os.path.join(workdir, "raw.onnx")
    torch_export(source.deploy_model, source.description, raw)
    models = {}
    model, _info = postprocess_graph(onnx.load(raw), 13)
    models["fp32"] = os.path.join(workdir, "fp32.onnx")
    onnx.save(model, models["fp32"])
    if fp16:
        models["fp16"] = _fp16_onnx(models["fp32"], os.path.join(workdir, "fp16.onnx"))
    return models


def _tensorrt_available():
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, "tensorrt is not installed here ({})".format(exc)
    return True, None


def compare_backends(model, images, precisions=("fp32",), int8_tolerance=None, cache_dir=None,
                     calib_dir=None, limit=200, tolerances=None):
    """Run the comparison; return a JSON-ready report with ``ok``."""
    tolerances = dict(TOLERANCES, **(tolerances or {}))
    if int8_tolerance is not None:
        tolerances["int8"] = float(int8_tolerance)
    precisions = list(precisions)
    paths = image_paths(images, limit)
    workdir = tempfile.mkdtemp(prefix="medkiosk-compare-")
    skipped = []
    try:
        bundle = None
        if isinstance(model, str) and os.path.isdir(model):
            bundle = load_lab_bundle(model)
            description = bundle.description
            inputs = [preprocess(load_image(p), description.input) for p in paths]
            reference_name = "onnxruntime-fp32 (bundle)"
            bundle_precision = bundle.manifest.get("export", {}).get("precision", "fp32")
            models = {bundle_precision: bundle.model_path}
            if "fp16" in precisions and "fp16" not in models:
                try:
                    models["fp16"] = _fp16_onnx(bundle.model_path, os.path.join(workdir, "fp16.onnx"))
                except MissingDependencyError as exc:  # a Jetson has no onnx package: skip that row
                    skipped.append({"name": "onnxruntime-fp16", "precision": "fp16", "ok": None,
                                    "skipped": str(exc)})
            reference = _onnxruntime_probs(bundle.model_path, inputs, description)
            if bundle_precision != "fp32":
                reference_name = "onnxruntime-{} (bundle)".format(bundle_precision)
        else:
            from export.onnx_export import load_source, run_torch

            source = load_source(model)
            description = source.description
            inputs = [preprocess(load_image(p), description.input) for p in paths]
            reference_name = "pytorch"
            reference = run_torch(source.deploy_model, inputs)
            models = _export_checkpoint(source, workdir, "fp16" in precisions)
        backends = list(skipped)
        for precision in ("fp32", "fp16"):
            if precision not in models or (bundle is not None and models[precision] == bundle.model_path):
                continue
            if precision != "fp32" and precision not in precisions:
                continue
            probs = _onnxruntime_probs(models[precision], inputs, description)
            backends.append(dict(compare_probabilities(reference, probs, tolerances[precision]),
                                 name="onnxruntime-" + precision, precision=precision))
        available, why = _tensorrt_available()
        for precision in precisions:
            name = "tensorrt-" + precision
            if not available:
                backends.append({"name": name, "precision": precision, "skipped": why, "ok": None})
                continue
            try:
                probs = _tensorrt_probs(bundle, model, workdir, cache_dir, precision, calib_dir or images,
                                        inputs, description)
            except MedkioskError as exc:
                backends.append({"name": name, "precision": precision, "ok": False, "error": str(exc)})
                continue
            backends.append(dict(compare_probabilities(reference, probs, tolerances[precision]),
                                 name=name, precision=precision))
        ran = [b for b in backends if b["ok"] is not None]
        problem = None if ran else ("nothing was compared: the reference is the only backend that ran here. "
                                    "Fix: add --precisions fp32,fp16, or run on a device with TensorRT")
        return {
            "problem": problem,
            "model": os.path.abspath(model) if isinstance(model, str) else repr(model),
            "images": len(paths),
            "image_folder": os.path.abspath(images),
            "reference": reference_name,
            "tolerances": {p: tolerances[p] for p in precisions},
            "min_top1_agreement": MIN_TOP1_AGREEMENT,
            "backends": backends,
            "ok": bool(ran) and all(b["ok"] for b in ran),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tensorrt_probs(bundle, model, workdir, cache_dir, precision, calib_dir, inputs, description):
    """Build (or find) the engine for the bundle and run the inputs through TensorRT."""
    from edge.tensorrt import cache as engine_cache
    from edge.tensorrt.manage import Device, ensure_engine
    from edge.tensorrt.runner import EngineRunner

    if bundle is None:
        from export.onnx_export import export_bundle

        bundle = load_lab_bundle(export_bundle(model, os.path.join(workdir, "bundle"), golden=False))
    device = Device()
    result = ensure_engine(bundle, cache_dir or os.path.join(workdir, "engines"), precision=precision,
                           calib_dir=calib_dir if precision == "int8" else None, device=device)
    runner = EngineRunner(engine_cache.read_engine(result.lookup), compat=device.compat,
                          cuda=device.cuda_driver())
    return runner.run_images(inputs, description.output_name)


def format_report(report):
    """Human-readable table of a comparison report."""
    lines = ["{} images from {}; reference: {}".format(report["images"], report["image_folder"],
                                                       report["reference"])]
    for backend in report["backends"]:
        if backend.get("skipped"):
            lines.append("  SKIPPED {:<18} {}".format(backend["name"], backend["skipped"]))
        elif backend.get("error"):
            lines.append("  FAIL    {:<18} {}".format(backend["name"], backend["error"]))
        else:
            lines.append("  {:<7} {:<18} max |dprob| {:.2g} (tolerance {:g}), mean {:.2g}, top-1 agreement "
                         "{:.1%}".format("ok" if backend["ok"] else "FAIL", backend["name"],
                                         backend["max_abs_diff"], backend["tolerance"],
                                         backend["mean_abs_diff"], backend["top1_agreement"]))
    if report.get("problem"):
        lines.append(report["problem"])
    lines.append("compare: {}".format("PASSED" if report["ok"] else "FAILED"))
    return "\n".join(lines)
