"""Checkpoint -> ONNX model bundle, with a parity check against PyTorch (workstation side).

Pipeline: checkpoint -> ``training.nets.DeployModel`` (normalisation, temperature, softmax or
sigmoid inside) -> ``torch.onnx.export`` (TorchScript exporter, opset 13 by default: TensorRT
8.2's ceiling) -> ``onnx.checker`` -> onnxsim (a failure is reported loudly, never hidden) ->
shape inference -> optional FP16 conversion -> manifest in ``metadata_props`` -> parity on real
images through ONNX Runtime CPU -> model card, golden images, manifest.json.

The bundle is written to a temporary folder beside ``out_dir`` and renamed at the end, so a
failed export (parity included) leaves no bundle behind.
"""

import json
import logging
import os
import shutil
import sys
import tempfile
import warnings

from edge.bundle import (
    GOLDEN_DIR,
    GOLDEN_EXPECTED,
    MANIFEST,
    MODEL_CARD,
    MODEL_FILE,
    load_bundle,
    make_manifest,
    sha256_file,
    utc_now_iso,
    write_json_atomic,
)
from edge.description import ModelDescription
from edge.lazy import require
from edge.parity import TOLERANCES, compare_probabilities
from edge.preprocess import IMAGE_EXTENSIONS, load_image, preprocess, resize_to_input
from edge.quality import calibrate_blur_threshold
from edge.tensorrt.trt_compat import TRT8_UNSUPPORTED_OPS
from export.card import export_record, render_card
from export.errors import ExportError, ParityError

LOG = logging.getLogger("medkiosk.export")

DEFAULT_OPSET = 13
METADATA_MANIFEST = "medkiosk.manifest"
METADATA_DESCRIPTION = "medkiosk.description"
# Golden images stay in the bundle; expected outputs are compared with this tolerance by default.
GOLDEN_TOLERANCE = 1e-3
MAX_PARITY_IMAGES = 16
MAX_QUALITY_IMAGES = 2000  # validation images measured for the bundle's blur threshold
GOLDEN_COUNT = 4
GENERATED_IMAGES = 8
INSTALL_EXPORT = "pip install 'medkiosk[export]'"


def _torch():
    return require("torch", "pip install 'medkiosk[train]'")


def _onnx():
    return require("onnx", INSTALL_EXPORT)


def _np():
    return require("numpy", INSTALL_EXPORT)


def _warn_loudly(message):
    """A downgrade the user must see: log it and print it on stderr."""
    LOG.warning(message)
    sys.stderr.write("medkiosk: WARNING: {}\n".format(message))
    sys.stderr.flush()


class ExportSource(object):
    """What an export needs: a torch module returning probabilities, its description, checkpoint data."""

    def __init__(self, deploy_model, description, data=None, checkpoint_path=None):
        self.deploy_model = deploy_model
        self.description = description
        self.data = dict(data or {})
        self.checkpoint_path = checkpoint_path


def load_source(checkpoint):
    """A checkpoint path, a LoadedCheckpoint or an ExportSource -> ExportSource (DeployModel built)."""
    if isinstance(checkpoint, ExportSource):
        return checkpoint
    path = None
    loaded = checkpoint
    if isinstance(checkpoint, str) or hasattr(checkpoint, "__fspath__"):
        path = os.fspath(checkpoint)
        if not os.path.isfile(path):
            raise ExportError("checkpoint {}: no such file. Fix: pass the .pt file `medkiosk train` wrote "
                              "(e.g. runs/NAME/best.pt)".format(path))
        _torch()  # a missing torch is a one-line MissingDependencyError, not an ImportError
        from training.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
    _torch()
    from training.nets import DeployModel

    description = loaded.description
    if isinstance(description, dict):
        description = ModelDescription.from_dict(description)
    net = loaded.net
    net.eval()
    data = getattr(loaded, "data", None) or {}
    ood_head = _ood_head(data, description, path)
    deploy = DeployModel(net, description, ood_head=ood_head)
    deploy.eval()
    return ExportSource(deploy, description, data, path)


OOD_HEAD_KEYS = ("input_check_head", "ood_head", "input_check_state")


def _ood_head(data, description, path):
    """The input-check head the description promises, rebuilt from the checkpoint; None if none."""
    if not description.input_check:
        return None
    for key in OOD_HEAD_KEYS:
        if isinstance(data.get(key), dict):
            from training.ood import InputCheckHead

            return InputCheckHead.from_state(data[key]).eval()
    raise ExportError("checkpoint {}: the description has an input check ({!r}) but the checkpoint holds no "
                      "input-check head (looked for {}). Fix: re-run the input-check fit, or drop "
                      "input_check from the description".format(path, description.input_check.get("output"),
                                                     ", ".join(OOD_HEAD_KEYS)))


# --- checkpoint data: what training recorded ------------------------------------------------------

def _first(data, keys, default=None):
    for key in keys:
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, "", [], {}):
            return value
    return default


def training_summary(data):
    """The manifest's ``training`` section from checkpoint data (whatever training recorded)."""
    summary = dict(data["training"]) if isinstance(data.get("training"), dict) else {}
    summary.setdefault("data", _first(data, ["data_summary", "dataset", "data"], {}))
    summary.setdefault("metrics", _first(data, ["metrics", "val_metrics", "best_metrics"], {}))
    for key in ("attribution", "epochs", "config", "temperature_fit", "run"):
        value = _first(data, [key])
        if value is not None and key not in summary:
            summary[key] = value
    if not isinstance(summary["data"], dict):
        summary["data"] = {"source": summary["data"]}
    if not isinstance(summary["metrics"], dict):
        summary["metrics"] = {"value": summary["metrics"]}
    return _json_safe(summary)


def _json_safe(value):
    """Drop what JSON cannot hold (tensors, arrays become lists; unknown objects become strings)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def validation_images(data, checkpoint_path=None, limit=MAX_PARITY_IMAGES):
    """Image paths of the checkpoint's validation split, when recorded and present on this machine.

    Looked for in the checkpoint data, then in the run's ``split.json`` beside the checkpoint.
    """
    recorded = _first(data, ["splits.val", "val_images", "training.data.val_images"], [])
    if not recorded and checkpoint_path:
        split_file = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "split.json")
        if os.path.isfile(split_file):
            from training.splits import Split

            recorded = [sample.path for sample in Split.from_file(split_file).val]
    paths = []
    for entry in recorded if isinstance(recorded, (list, tuple)) else []:
        path = entry.get("path") if isinstance(entry, dict) else getattr(entry, "path", entry)
        if isinstance(path, str) and os.path.isfile(path):
            paths.append(path)
    # Spread over the split (it is sorted by path, i.e. by class folder) instead of the first few.
    step = max(1, len(paths) // limit)
    return paths[::step][:limit]


def generate_sample_images(folder, description, count=GENERATED_IMAGES, seed=0):
    """Write ``count`` project-generated images (shapes) into ``folder``; return their paths."""
    np = _np()
    cv2 = require("cv2", INSTALL_EXPORT)
    from training import synth

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    size = max(description.input.height, description.input.width)
    paths = []
    for index in range(count):
        image = synth.draw_shape_image(rng, index % synth.MAX_CLASSES, size)
        path = os.path.join(folder, "generated-{:02d}.png".format(index))
        cv2.imwrite(path, image)
        paths.append(path)
    return paths


def _expand_samples(sample_images):
    """Paths or folders -> sorted image paths."""
    if isinstance(sample_images, str):
        sample_images = [sample_images]
    paths = []
    for entry in sample_images:
        entry = str(entry)
        if os.path.isdir(entry):
            for root, _dirs, files in sorted(os.walk(entry)):
                paths.extend(os.path.join(root, f) for f in sorted(files)
                             if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
        else:
            paths.append(entry)
    if not paths:
        raise ExportError("no sample images in {}. Fix: pass image files or a folder of images "
                          "({})".format(sample_images, ", ".join(IMAGE_EXTENSIONS)))
    return paths[:MAX_PARITY_IMAGES]


# --- the graph ------------------------------------------------------------------------------------

def output_names(description):
    names = [description.output_name]
    if description.input_check:
        names.append(description.input_check["output"])
    return names


def torch_export(deploy_model, description, path, opset=DEFAULT_OPSET, dynamic_batch=False, names=None):
    """Run ``torch.onnx.export`` (TorchScript exporter) on the deploy model (outputs ``names``)."""
    torch = _torch()
    spec = description.input
    dummy = torch.full(spec.shape(1), 127.0, dtype=torch.float32)
    names = names or output_names(description)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {spec.name: {0: "batch"}}
        dynamic_axes.update({name: {0: "batch"} for name in names})
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo, which cannot emit opset 13.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(deploy_model, (dummy,), path, input_names=[spec.name], output_names=names,
                              opset_version=int(opset), dynamic_axes=dynamic_axes, do_constant_folding=True,
                              dynamo=False)
    except Exception as exc:  # torch raises many unrelated types; wrap them all with the cause
        raise ExportError("torch.onnx.export failed at opset {} ({}: {}). Fix: try another --opset, or "
                          "check the architecture exports with the TorchScript exporter".format(
                              opset, type(exc).__name__, exc)) from exc


def simplify(model):
    """onnxsim the model; return (model, info). A failure is reported loudly and the input is kept."""
    try:
        onnxsim = require("onnxsim", INSTALL_EXPORT)
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises RuntimeError, ValueError, its own types ...
        _warn_loudly("onnxsim failed ({}: {}); the bundle keeps the unsimplified graph".format(
            type(exc).__name__, exc))
        return model, {"simplified": False, "simplify_error": "{}: {}".format(type(exc).__name__, exc)}
    if not ok:
        _warn_loudly("onnxsim's own check of the simplified graph failed; the bundle keeps the "
                     "unsimplified graph")
        return model, {"simplified": False, "simplify_error": "onnxsim check failed"}
    return simplified, {"simplified": True}


def check_ops(model, opset):
    """The graph's op types; refuse ops newer than ``opset``, warn loudly about ones TensorRT 8 lacks."""
    ops = sorted({node.op_type for node in model.graph.node})
    if int(opset) < 14 and "HardSwish" in ops:
        raise ExportError("the graph uses HardSwish at opset {} (HardSwish needs opset 14). Fix: "
                          "report this exporter bug; TensorRT 8.2 needs opset <= 13".format(opset))
    unsupported = sorted(set(ops) & TRT8_UNSUPPORTED_OPS)
    if unsupported:
        _warn_loudly("the graph uses ONNX ops TensorRT 8.x cannot parse: {}; the bundle will run with ONNX "
                     "Runtime but `medkiosk export engine` will fail on a Jetson Nano".format(
                         ", ".join(unsupported)))
    return ops, unsupported


def to_fp16(model):
    """FP16 weights and compute, float32 input and output (``keep_io_types``)."""
    float16 = require("onnxconverter_common.float16", INSTALL_EXPORT)
    try:
        return float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises assorted types on unsupported graphs
        raise ExportError("FP16 conversion failed ({}: {}). Fix: export without --fp16 and let TensorRT "
                          "build FP16 on the device".format(type(exc).__name__, exc)) from exc


def set_metadata(model, metadata):
    """Replace ``metadata_props`` keys in place."""
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for prop in keep:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)


def postprocess_graph(model, opset, fp16=False):
    """checker -> onnxsim -> shape inference -> (FP16); return (model, export info)."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError("onnx.checker rejected the exported graph ({}). Fix: try another "
                          "--opset".format(exc)) from exc
    model, info = simplify(model)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    info["ops"], info["tensorrt8_unsupported_ops"] = check_ops(model, opset)
    if fp16:
        model = to_fp16(model)
        onnx.checker.check_model(model)
    info["precision"] = "fp16" if fp16 else "fp32"
    return model, info


# --- running both sides ---------------------------------------------------------------------------

def load_inputs(paths, description):
    """Image paths -> list of (1, C, H, W) float32 arrays made by edge.preprocess."""
    return [preprocess(load_image(path), description.input) for path in paths]


def run_torch(deploy_model, inputs):
    """Probabilities [N, K] from the PyTorch deploy model, one image at a time."""
    torch = _torch()
    np = _np()
    rows = []
    with torch.no_grad():
        for batch in inputs:
            out = deploy_model(torch.from_numpy(batch))
            if isinstance(out, (tuple, list)):
                out = out[0]
            rows.append(out.detach().cpu().numpy().astype(np.float32)[0])
    return np.stack(rows)


def onnx_session(path):
    ort = require("onnxruntime", INSTALL_EXPORT)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs, input_name="image"):
    """Probabilities [N, K] from an ONNX Runtime session, one image at a time."""
    np = _np()
    output = session.get_outputs()[0].name
    return np.stack([session.run([output], {input_name: batch})[0][0] for batch in inputs]).astype(np.float32)


def parity_check(deploy_model, onnx_path, description, paths, precision):
    """Compare PyTorch and ONNX Runtime on images; raise ParityError unless within tolerance."""
    inputs = load_inputs(paths, description)
    reference = run_torch(deploy_model, inputs)
    candidate = run_onnx(onnx_session(onnx_path), inputs, description.input.name)
    result = compare_probabilities(reference, candidate, TOLERANCES[precision], min_top1_agreement=1.0)
    result["precision"] = precision
    result["images"] = len(paths)
    if not result["ok"]:
        raise ParityError(
            "parity check failed: ONNX Runtime ({}) differs from PyTorch on {} images: max |dprob| = {:.3g} "
            "(tolerance {:g}), top-1 agreement {:.1%} (need 100%). No bundle was written. Fix: check the "
            "exporter warnings above; try another --opset{}".format(
                precision, len(paths), result["max_abs_diff"], result["tolerance"], result["top1_agreement"],
                "" if precision == "fp32" else ", or export without --fp16"))
    return result, candidate


# --- bundle files ---------------------------------------------------------------------------------

def write_golden(folder, description, paths, probabilities, count=GOLDEN_COUNT, tolerance=GOLDEN_TOLERANCE):
    """Copy up to ``count`` images (covering different top-1 classes first) at the model's input size.

    Stored already resized, so the device's preprocessing does no resize and the golden check does
    not depend on the device's OpenCV version.
    """
    cv2 = require("cv2", INSTALL_EXPORT)
    os.makedirs(folder)
    top1 = probabilities.argmax(axis=1)
    chosen, seen = [], set()
    for index in range(len(paths)):
        if int(top1[index]) not in seen:
            chosen.append(index)
            seen.add(int(top1[index]))
    chosen += [i for i in range(len(paths)) if i not in chosen]
    chosen = sorted(chosen[:count])
    samples = []
    for number, index in enumerate(chosen):
        name = "{:02d}-{}.png".format(number, os.path.splitext(os.path.basename(paths[index]))[0][:40])
        target = os.path.join(folder, name)
        if not cv2.imwrite(target, resize_to_input(load_image(paths[index]), description.input)):
            raise ExportError("cannot write {}. Fix: check the output folder is writable".format(target))
        samples.append(target)
    return samples


def _replace_dir(tmp, out_dir):
    """Move the finished bundle into place; replace an existing bundle, refuse other folders."""
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir) or (os.listdir(out_dir) and not
                                          os.path.isfile(os.path.join(out_dir, MANIFEST))):
            raise ExportError("{} exists and is not a bundle folder. Fix: choose another --out or remove "
                              "it".format(out_dir))
        old = tempfile.mkdtemp(prefix=".{}.old-".format(os.path.basename(out_dir)),
                               dir=os.path.dirname(out_dir))
        os.rename(out_dir, os.path.join(old, "bundle"))
        os.rename(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.rename(tmp, out_dir)


def _parity_images(source, sample_images, tmp):
    """(image paths, where they come from): given, the checkpoint's validation split, or generated."""
    if sample_images:
        return _expand_samples(sample_images), "given"
    paths = validation_images(source.data, source.checkpoint_path)
    if paths:
        return paths, "validation split"
    return generate_sample_images(os.path.join(tmp, "generated"), source.description), "generated"


def _write_golden_set(golden_dir, session, description, paths, onnx_probs, precision):
    """Golden PNGs and the outputs of the stored (resized) PNGs themselves, as the device will read them."""
    golden_paths = write_golden(golden_dir, description, paths, onnx_probs)
    probs = run_onnx(session, load_inputs(golden_paths, description), description.input.name)
    write_json_atomic(os.path.join(golden_dir, GOLDEN_EXPECTED), {
        "tolerance": max(GOLDEN_TOLERANCE, TOLERANCES[precision]),
        "precision": precision,
        "samples": [{"file": os.path.basename(p), "probabilities": [float(x) for x in row],
                     "top1": description.classes[int(row.argmax())]}
                    for p, row in zip(golden_paths, probs)],
    })


def _check_saved(model_path, description, paths, onnx_probs):
    """The final file (metadata added) must compute exactly what the checked one computed; its session."""
    session = onnx_session(model_path)
    final = compare_probabilities(onnx_probs, run_onnx(session, load_inputs(paths, description),
                                                       description.input.name), 1e-7, 1.0)
    if not final["ok"]:
        raise ExportError("the saved model.onnx differs from the parity-checked graph ({}). Fix: report "
                          "this bug".format(final))
    return session


def _graph_model(source, heatmap):
    """(torch module to export, its output names, manifest ``heatmap`` section or None)."""
    names = output_names(source.description)
    if not heatmap:
        return source.deploy_model, names, None
    from export.heatmap import HEATMAP_OUTPUT, with_heatmap

    model, section = with_heatmap(source.deploy_model, source.description)
    return model, names + [HEATMAP_OUTPUT], section


def _check_heatmap(graph_model, section, model_path, description, paths, precision):
    """Parity of the heatmap output (ONNX Runtime vs PyTorch); the section gains the figures."""
    from export.heatmap import compare_heatmaps, run_heatmaps

    inputs = load_inputs(paths, description)
    session = onnx_session(model_path)
    got = _np().stack([session.run([section["output"]], {description.input.name: b})[0][0] for b in inputs])
    result = compare_heatmaps(run_heatmaps(graph_model, inputs, -1), got, precision)
    if not result["ok"]:
        raise ParityError("parity check failed: the ONNX heatmap differs from PyTorch by {:.3g} of its "
                          "range (tolerance {:g}). No bundle was written. Fix: export without --heatmap, "
                          "or try another --opset".format(result["relative_diff"], result["tolerance"]))
    section["parity"] = dict(result, images=len(paths), precision=precision)


def export_bundle(checkpoint, out_dir, opset=DEFAULT_OPSET, sample_images=None, module_id=None, title=None,
                  version="1.0.0", fp16=False, dynamic_batch=False, golden=True, key=None, heatmap=False):
    """Export a checkpoint to a bundle folder; return its path. Raises ExportError, writes nothing then.

    ``key`` (else $MEDKIOSK_SIGNING_KEY): the maintainer's Ed25519 private key that signs the bundle.
    ``heatmap``: add the class-activation map output (``export.heatmap``), declared in the manifest.
    """
    from edge.signing import UNCHECKED, sign_bundle, signing_key_from_env

    key = key or signing_key_from_env()
    source = load_source(checkpoint)
    # Inference mode for export and parity alike (BatchNorm statistics, no dropout), whatever the
    # caller's module was left in.
    source.deploy_model.eval()
    onnx = _onnx()
    description = source.description
    out_dir = os.path.abspath(str(out_dir))
    parent = os.path.dirname(out_dir)
    data = source.data
    module_id = module_id or _first(data, ["module_id", "module.id"]) or os.path.basename(out_dir)
    title = title or _first(data, ["title", "module.title"]) or module_id
    precision = "fp16" if fp16 else "fp32"
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".{}.tmp-".format(os.path.basename(out_dir)), dir=parent)
    except OSError as exc:
        raise ExportError("cannot create the bundle folder in {} ({}). Fix: choose a writable --out".format(
            parent, exc.strerror)) from exc
    try:
        raw_path = os.path.join(tmp, "raw.onnx")
        graph_model, names, heatmap_section = _graph_model(source, heatmap)
        torch_export(graph_model, description, raw_path, opset, dynamic_batch, names)
        model, info = postprocess_graph(onnx.load(raw_path), opset, fp16)
        os.remove(raw_path)
        info.update({"opset": int(opset), "dynamic_batch": bool(dynamic_batch), "created": utc_now_iso(),
                     "torch": _torch().__version__, "onnx": onnx.__version__,
                     "source": os.path.basename(source.checkpoint_path or "a PyTorch model")})
        training = training_summary(data)
        paths, info["parity_images"] = _parity_images(source, sample_images, tmp)
        extra = {"export": info}
        quality_paths = validation_images(data, source.checkpoint_path, limit=MAX_QUALITY_IMAGES)
        if quality_paths:
            extra["quality"] = calibrate_blur_threshold(load_image(path) for path in quality_paths)
        model_path = os.path.join(tmp, MODEL_FILE)
        onnx.save(model, model_path)
        parity, onnx_probs = parity_check(source.deploy_model, model_path, description, paths, precision)
        info["parity"] = {k: parity[k] for k in ("images", "max_abs_diff", "tolerance", "top1_agreement",
                                                  "precision")}
        if heatmap_section:
            _check_heatmap(graph_model, heatmap_section, model_path, description, paths, precision)
            extra["heatmap"] = heatmap_section
        manifest = make_manifest(description, module_id, title, None, training, version, int(opset),
                                 created=info["created"], extra=extra)
        embedded = dict(manifest)
        del embedded["model_sha256"]
        set_metadata(model, {METADATA_MANIFEST: json.dumps(embedded, sort_keys=True),
                             METADATA_DESCRIPTION: json.dumps(description.to_dict(), sort_keys=True)})
        onnx.save(model, model_path)
        session = _check_saved(model_path, description, paths, onnx_probs)
        if golden:
            _write_golden_set(os.path.join(tmp, GOLDEN_DIR), session, description, paths, onnx_probs,
                              precision)
        shutil.rmtree(os.path.join(tmp, "generated"), ignore_errors=True)
        manifest["model_sha256"] = sha256_file(model_path)
        with open(os.path.join(tmp, MODEL_CARD), "w", encoding="utf-8") as handle:
            handle.write(render_card(export_record(manifest)))
        write_json_atomic(os.path.join(tmp, MANIFEST), manifest)
        if key:
            sign_bundle(tmp, key)
        load_bundle(tmp, trust=UNCHECKED, require_golden=golden)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a bundle is no secret and the kiosk user reads it
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    load_bundle(out_dir, trust=UNCHECKED, require_golden=golden)
    return out_dir
