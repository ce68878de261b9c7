"""Model bundles: the contract between export (the lab) and edge (the device).

A bundle is a folder::

    model.onnx        the graph: raw pixels in, calibrated probabilities out
    manifest.json     schema version 1 (see ``make_manifest``)
    model_card.md     intended use, data provenance, metrics, known failure modes
    golden/           sample images and expected.json with their expected outputs (required)
    signature.json    the maintainer's Ed25519 signature over every other file (edge/signing.py)

Optional manifest section ``quality``: ``{"blur_threshold": t, ...}`` measured on the validation
images at export; the kiosk's blur gate never demands more sharpness than that.

Optional manifest section ``calibration`` (written by training): ``{"ece_cv": e, "ece_cv_ci95": [lo, hi],
"display": "percent" | "words"}``. ``display_mode`` decides how probabilities are shown:

* with the section: percentages only when ``display`` is "percent" *and* ``ece_cv <= CALIBRATED_ECE_MAX``
  (a manifest asking for percentages with a worse cross-validated ECE still gets words);
* without it: the ECE the model card reports (``training.metrics.test.ece``, else the validation
  ECE after temperature scaling ``training.metrics.calibration.ece_after``) must be
  ``<= CALIBRATED_ECE_MAX``; a bundle that records no ECE at all shows words (no evidence of
  calibration, no percentages).

Words come from one table (``edge.classify.LIKELIHOOD_WORDS``).

Optional manifest section ``heatmap`` (``export --heatmap``): ``{"output": "heatmap", "method": "cam",
"shape": [K, h, w], ...}``: model.onnx has that extra output, float32 [N, K, h, w], one
class-activation map per class whose spatial mean is the class logit (``export.heatmap``).

``load_bundle`` validates all of it and raises ``BundleError`` naming the bundle, the field and
the fix; it never lets a raw traceback reach the user: a manifest over ``MAX_MANIFEST_BYTES``,
malformed or nested too deeply is one BundleError, and ``model_file`` must stay inside the folder.
The signature (``edge.signing``) is checked once the manifest's own fields and hash are read and
before the model is parsed; without a trusted signature the bundle is refused, unless the unit's
``Trust`` is in developer mode.
"""

import datetime
import os

from edge import __version__
from edge.bundle_files import RE_EXPORT, read_json_limited, sha256_file, write_json_atomic  # noqa: F401
from edge.description import DescriptionError, ModelDescription
from edge.errors import BundleError
from edge.i18n import N_, _
from edge.onnx_info import OnnxFormatError, read_onnx_info
from edge.signing import UNCHECKED, default_trust, signature_status

SCHEMA_VERSION = 1  # a bundle whose input is prepared as every medkiosk prepares it
# A bundle whose input needs a per-image contrast normalisation (``input.contrast``) is written as
# schema 2: a medkiosk older than the normalisation reads only schema 1 and refuses it, instead of
# feeding the model pixels it was not trained on.
CONTRAST_SCHEMA = 2
READ_SCHEMAS = (SCHEMA_VERSION, CONTRAST_SCHEMA)
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
MODEL_CARD = "model_card.md"
GOLDEN_DIR = "golden"
GOLDEN_EXPECTED = "expected.json"
REQUIRED_FIELDS = ("schema_version", "module", "model", "model_file", "model_sha256", "training",
                   "created", "version")
MAX_MANIFEST_BYTES = 1 << 20
MAX_EXPECTED_BYTES = 4 << 20
HEATMAP_FIELD = "heatmap"
CALIBRATION_FIELD = "calibration"
CALIBRATED_ECE_MAX = 0.05  # the largest ECE at which probabilities are shown as percentages
PERCENT, WORDS = "percent", "words"
DISPLAY_MODES = (PERCENT, WORDS)
HEATMAP_METHODS = ("cam",)


def utc_now_iso():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def schema_for(description):
    """The manifest schema a bundle of ``description`` is written as (see CONTRAST_SCHEMA)."""
    return CONTRAST_SCHEMA if description.input.contrast != "none" else SCHEMA_VERSION


def make_manifest(description, module_id, title, model_sha256, training=None, version="1.0.0",
                  opset=None, created=None, extra=None):
    """Build a manifest dictionary (shared by export and tests): schema 1, or 2 when the input needs a
    contrast normalisation (``schema_for``)."""
    manifest = {
        "schema_version": schema_for(description),
        "module": {"id": module_id, "title": title},
        "model": description.to_dict(),
        "model_file": MODEL_FILE,
        "model_sha256": model_sha256,
        "onnx": {"opset": opset, "input": description.input.name, "output": description.output_name},
        "training": training if training is not None else {"data": {}, "metrics": {}},
        "created": created or utc_now_iso(),
        "version": version,
        "producer": "medkiosk {}".format(__version__),
    }
    if extra:
        manifest.update(extra)
    return manifest


class GoldenSample(object):
    """One golden image and the probabilities the lab computed for it."""

    def __init__(self, path, probabilities, top1, tolerance):
        self.path = path
        self.probabilities = [float(p) for p in probabilities]
        self.top1 = top1
        self.tolerance = float(tolerance)


class Bundle(object):
    """A validated model bundle."""

    def __init__(self, path, manifest, description, onnx_info, signer=None, signature_problem=None):
        self.path = str(path)
        self.manifest = manifest
        self.description = description
        self.onnx_info = onnx_info
        self.signer = signer
        self.signature_problem = signature_problem

    @property
    def signature_line(self):
        """'signed by key ID', or the developer-mode problem when the signature was not enforced."""
        return self.signature_problem or "signed by key {}".format(self.signer)

    @property
    def module_id(self):
        return self.manifest["module"]["id"]

    @property
    def title(self):
        return self.manifest["module"]["title"]

    @property
    def version(self):
        return self.manifest["version"]

    @property
    def sha256(self):
        return self.manifest["model_sha256"]

    @property
    def bundle_id(self):
        """Short identifier shown in logs and JSON output: module@version+sha."""
        return "{}@{}+{}".format(self.module_id, self.version, self.sha256[:12])

    @property
    def model_path(self):
        return os.path.join(self.path, self.manifest["model_file"])

    @property
    def display(self):
        """PERCENT or WORDS: how this bundle's probabilities are shown (``display_mode``)."""
        return display_mode(self.manifest)[0]

    @property
    def heatmap(self):
        """The manifest's validated ``heatmap`` section, or None when the model has no heatmap output."""
        return self.manifest.get(HEATMAP_FIELD)

    @property
    def input_name(self):
        return self.onnx_info.inputs[0]["name"]

    @property
    def output_name(self):
        return self.onnx_info.outputs[0]["name"]

    def golden_samples(self):
        """The golden images with their expected outputs; empty when the bundle has none."""
        expected_path = os.path.join(self.path, GOLDEN_DIR, GOLDEN_EXPECTED)
        if not os.path.exists(expected_path):
            return []
        data = read_json_limited(self.path, expected_path, "golden/expected.json", MAX_EXPECTED_BYTES)
        entries = data.get("samples", []) if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BundleError(self.path, "golden/expected.json", "has no list of samples", RE_EXPORT)
        samples = []
        for entry in entries:
            for key in ("file", "probabilities", "top1"):
                if key not in entry:
                    raise BundleError(self.path, "golden/expected.json: " + key, "missing in a sample",
                                      RE_EXPORT)
            inside(self.path, os.path.join(GOLDEN_DIR, str(entry["file"])), "golden/expected.json: file")
            if len(entry["probabilities"]) != self.description.num_classes:
                raise BundleError(self.path, "golden/expected.json: probabilities",
                                  "has {} values for {} classes".format(
                                      len(entry["probabilities"]), self.description.num_classes), RE_EXPORT)
            samples.append(GoldenSample(os.path.join(self.path, GOLDEN_DIR, entry["file"]),
                                        entry["probabilities"], entry["top1"],
                                        entry.get("tolerance", data.get("tolerance", 1e-3))))
        return samples

    def __repr__(self):
        return "Bundle({!r}, {})".format(self.path, self.bundle_id)


def inside(bundle_path, relative, field):
    """The absolute path of ``relative`` in the bundle; BundleError when it points outside the folder."""
    root = os.path.realpath(bundle_path)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.isabs(relative) or os.path.commonpath([root, target]) != root or target == root:
        raise BundleError(bundle_path, field, "{!r} points outside the bundle folder".format(relative),
                          RE_EXPORT)
    return target


def _check_onnx_matches(path, description, info):
    if len(info.inputs) != 1:
        raise BundleError(path, "model.onnx inputs", "the model has {} inputs, expected 1".format(
            len(info.inputs)), RE_EXPORT)
    model_input = info.inputs[0]
    spec = description.input
    if model_input["name"] != spec.name:
        raise BundleError(path, "model.input.name", "manifest says {!r} but model.onnx has {!r}".format(
            spec.name, model_input["name"]), RE_EXPORT)
    if model_input["dtype"] != spec.dtype:
        raise BundleError(path, "model.input.dtype", "manifest says {} but model.onnx takes {}".format(
            spec.dtype, model_input["dtype"]), RE_EXPORT)
    shape = model_input["shape"]
    expected = [None, spec.channels, spec.height, spec.width]
    if len(shape) != 4 or any(isinstance(got, int) and got != want
                              for got, want in zip(shape[1:], expected[1:])):
        raise BundleError(path, "model.input", "manifest says {} {} NCHW {}x{} but model.onnx takes {}"
                          .format(spec.colour, spec.dtype, spec.height, spec.width, shape), RE_EXPORT)
    if isinstance(shape[0], int) and shape[0] < 1:
        raise BundleError(path, "model.input", "batch dimension {} is invalid".format(shape[0]), RE_EXPORT)
    if len(info.outputs) < 1:
        raise BundleError(path, "model.onnx outputs", "the model has no output", RE_EXPORT)
    output = info.outputs[0]
    if output["name"] != description.output_name:
        raise BundleError(path, "model.output_name", "manifest says {!r} but model.onnx has {!r}".format(
            description.output_name, output["name"]), RE_EXPORT)
    check = description.input_check
    if check and check["output"] not in [o["name"] for o in info.outputs]:
        raise BundleError(path, "model.input_check.output", "model.onnx has no output {!r}".format(
            check["output"]), RE_EXPORT)
    out_shape = output["shape"]
    if not out_shape or out_shape[-1] != description.num_classes:
        raise BundleError(path, "model.classes", "manifest lists {} classes but model.onnx outputs {}".format(
            description.num_classes, out_shape), RE_EXPORT)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _recorded_ece(manifest):
    """(ECE, where it comes from) as the model card reports it, or (None, None)."""
    metrics = (manifest.get("training") or {}).get("metrics") or {}
    for key, where in (("test", N_("test ECE")), ("calibration", N_("validation ECE after temperature"))):
        section = metrics.get(key) if isinstance(metrics, dict) else None
        value = section.get("ece" if key == "test" else "ece_after") if isinstance(section, dict) else None
        if _number(value):
            return float(value), where
    return None, None


def display_mode(manifest):
    """(PERCENT or WORDS, the reason in one line) for a manifest; see the module docstring."""
    section = manifest.get(CALIBRATION_FIELD)
    if isinstance(section, dict):
        ece = section.get("ece_cv")
        if section.get("display") == WORDS:
            return WORDS, _("the manifest asks for words (cross-validated ECE {})").format(ece)
        if ece > CALIBRATED_ECE_MAX:
            return WORDS, _("cross-validated ECE {:.3f} > {}").format(ece, CALIBRATED_ECE_MAX)
        return PERCENT, _("cross-validated ECE {:.3f} <= {}").format(ece, CALIBRATED_ECE_MAX)
    ece, where = _recorded_ece(manifest)
    if ece is None:
        return WORDS, _("no ECE recorded: calibration unknown")
    if ece > CALIBRATED_ECE_MAX:
        return WORDS, _("{} {:.3f} > {}").format(_(where), ece, CALIBRATED_ECE_MAX)
    return PERCENT, _("{} {:.3f} <= {}").format(_(where), ece, CALIBRATED_ECE_MAX)


def _check_calibration(path, section):
    """The optional ``calibration`` section written by training (see the module docstring)."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise BundleError(path, "calibration", "must be an object", RE_EXPORT)
    ece, interval = section.get("ece_cv"), section.get("ece_cv_ci95")
    if not _number(ece) or not 0.0 <= ece <= 1.0:
        raise BundleError(path, "calibration.ece_cv", "must be a number in [0, 1], got {!r}".format(ece),
                          RE_EXPORT)
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2 and all(
            _number(v) for v in interval) and interval[0] <= interval[1]):
        raise BundleError(path, "calibration.ece_cv_ci95", "must be [low, high], got {!r}".format(interval),
                          RE_EXPORT)
    if section.get("display") not in DISPLAY_MODES:
        raise BundleError(path, "calibration.display", "must be one of {}, got {!r}".format(
            ", ".join(DISPLAY_MODES), section.get("display")), RE_EXPORT)


def chance_level_warnings(manifest, num_classes):
    """Lines for ``bundle verify`` when the bundle's own test metrics are no better than chance:
    accuracy (or its 95% CI's low end) <= 1/classes; macro AUROC <= 0.5 or its 95% CI holding 0.5;
    a class whose AUROC 95% CI holds 0.5 (or whose AUROC is <= 0.5)."""
    test = ((manifest.get("training") or {}).get("metrics") or {}).get("test")
    if not isinstance(test, dict):
        return []
    lines, chance = [], 1.0 / max(1, num_classes)
    accuracy, low = test.get("accuracy"), (test.get("accuracy_ci95") or [None])[0]
    if _number(accuracy) and accuracy <= chance:
        lines.append(_("test accuracy {:.1%} <= chance 1/{} = {:.1%}").format(accuracy, num_classes, chance))
    elif _number(low) and low <= chance:
        lines.append(_("test accuracy's 95% CI reaches chance ({:.1%} <= 1/{})").format(low, num_classes))
    entries = [("macro AUROC", test.get("macro_auroc"), test.get("macro_auroc_ci95"))]
    per_class = test.get("per_class") if isinstance(test.get("per_class"), dict) else {}
    entries += [("{} AUROC".format(name), v.get("auroc"), v.get("auroc_ci95"))
                for name, v in sorted(per_class.items()) if isinstance(v, dict)]
    for name, value, interval in entries:
        if _number(value) and value <= 0.5:
            lines.append(_("{} {:.3f} <= 0.5 (chance)").format(name, value))
        elif isinstance(interval, list) and len(interval) == 2 and all(_number(v) for v in interval) \
                and interval[0] <= 0.5 <= interval[1]:
            lines.append(_("{} 95% CI [{:.3f}, {:.3f}] includes 0.5 (chance)").format(name, *interval))
    return lines


def _check_heatmap(path, section, description, info):
    """The optional ``heatmap`` section: a known method, shape [K, h, w], an output model.onnx has."""
    if section is None:
        return
    shape = section.get("shape") if isinstance(section, dict) else None
    if not isinstance(shape, list) or len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise BundleError(path, "heatmap.shape", "must be [classes, height, width], got {!r}".format(shape),
                          RE_EXPORT)
    if shape[0] != description.num_classes:
        raise BundleError(path, "heatmap.shape", "has {} maps for {} classes".format(
            shape[0], description.num_classes), RE_EXPORT)
    if section.get("method") not in HEATMAP_METHODS:
        raise BundleError(path, "heatmap.method", "must be one of {}, got {!r}".format(
            ", ".join(HEATMAP_METHODS), section.get("method")), RE_EXPORT)
    outputs = {o["name"]: o["shape"] for o in info.outputs}
    name = section.get("output")
    taken = (description.output_name, (description.input_check or {}).get("output"))
    if name not in outputs or name in taken:
        raise BundleError(path, "heatmap.output", "model.onnx has no separate output {!r} (has {})".format(
            name, sorted(outputs)), RE_EXPORT)
    got = outputs[name]
    if len(got) != 4 or any(isinstance(g, int) and g != w for g, w in zip(got[1:], shape)):
        raise BundleError(path, "heatmap.shape", "manifest says {} but model.onnx outputs {}".format(
            shape, got), RE_EXPORT)


def load_bundle(path, check_hash=True, trust=None, require_golden=True):
    """Load and validate the bundle folder at ``path``; raise BundleError on any problem.

    ``trust`` (edge.signing.Trust; default: the process's, see ``edge.signing.default_trust``)
    decides which signatures are accepted and whether developer mode lets an unsigned bundle load.
    ``require_golden=False`` is for the lab only (an export made with --no-golden); a unit needs them.
    """
    path = str(path)
    if not os.path.isdir(path):
        raise BundleError(path, "folder", "does not exist or is not a folder",
                          "pass the bundle folder (it holds manifest.json and model.onnx)")
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise BundleError(path, MANIFEST, "missing", RE_EXPORT)
    manifest = read_json_limited(path, manifest_path, MANIFEST, MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict):
        raise BundleError(path, MANIFEST, "is not a JSON object", RE_EXPORT)
    version = manifest.get("schema_version")
    if version not in READ_SCHEMAS:
        raise BundleError(path, "schema_version", "is {!r}; this medkiosk {} reads schema {}".format(
            version, __version__, " or ".join(str(known) for known in READ_SCHEMAS)),
            "update medkiosk on this device, or re-export the bundle with this medkiosk version")
    for field in REQUIRED_FIELDS:
        if field not in manifest:
            raise BundleError(path, field, "missing from manifest.json", RE_EXPORT)
    module = manifest["module"]
    for field in ("id", "title"):
        if not isinstance(module, dict) or not module.get(field):
            raise BundleError(path, "module." + field, "missing from manifest.json", RE_EXPORT)
    try:
        description = ModelDescription.from_dict(manifest["model"])
    except DescriptionError as exc:
        raise BundleError(path, "model." + exc.field, exc.problem, RE_EXPORT) from exc
    if version != schema_for(description):  # e.g. a contrast normalisation hidden in a schema-1 manifest
        raise BundleError(path, "schema_version", "is {}, but model.input.contrast {!r} is written as "
                          "schema {}".format(version, description.input.contrast, schema_for(description)),
                          RE_EXPORT)
    if not isinstance(manifest["model_file"], str) or not manifest["model_file"]:
        raise BundleError(path, "model_file", "must be a file name", RE_EXPORT)
    model_path = inside(path, manifest["model_file"], "model_file")
    if not os.path.isfile(model_path):
        raise BundleError(path, manifest["model_file"], "missing", "copy the complete bundle folder again")
    if not os.path.isfile(os.path.join(path, MODEL_CARD)):
        raise BundleError(path, MODEL_CARD, "missing",
                          "copy the complete bundle folder again, or " + RE_EXPORT)
    if require_golden and not os.path.isfile(os.path.join(path, GOLDEN_DIR, GOLDEN_EXPECTED)):
        raise BundleError(path, GOLDEN_DIR + "/" + GOLDEN_EXPECTED, "missing: without golden images the "
                          "model cannot be checked on this unit", "re-export it with golden images "
                          "(medkiosk export onnx CHECKPOINT --out DIR)")
    if check_hash:
        actual = sha256_file(model_path)
        if actual != manifest["model_sha256"]:
            raise BundleError(path, "model_sha256",
                              "model.onnx has sha256 {}… but the manifest expects {}… (tampered or "
                              "truncated)".format(actual[:12], str(manifest["model_sha256"])[:12]),
                              "copy the bundle again from its source; never edit model.onnx by hand")
    # Before the model is parsed: every file as the maintainer signed it (or developer mode says not).
    signer, problem = signature_status(path, trust or default_trust())
    try:
        info = read_onnx_info(model_path)
    except (OnnxFormatError, IndexError) as exc:
        raise BundleError(path, manifest["model_file"], "is not a readable ONNX model ({})".format(exc),
                          "copy the bundle again from its source") from exc
    quality = manifest.get("quality")
    if quality is not None:
        blur = quality.get("blur_threshold") if isinstance(quality, dict) else None
        if not isinstance(blur, (int, float)) or blur < 0:
            raise BundleError(path, "quality.blur_threshold", "must be a number >= 0, got {!r}".format(blur),
                              RE_EXPORT)
    _check_onnx_matches(path, description, info)
    _check_heatmap(path, manifest.get(HEATMAP_FIELD), description, info)
    _check_calibration(path, manifest.get(CALIBRATION_FIELD))
    return Bundle(path, manifest, description, info, signer=signer, signature_problem=problem)


def load_lab_bundle(path, check_hash=True):
    """The lab's view of a bundle it made (export, compare, benchmarks): every check ``load_bundle``
    makes except the two a unit needs, a trusted signature and golden images (``--no-golden``)."""
    return load_bundle(path, check_hash=check_hash, trust=UNCHECKED, require_golden=False)
