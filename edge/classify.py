"""One image -> one Prediction: preprocess, infer, postprocess.

``postprocess`` is pure (arrays + bundle -> Prediction) so the decision rules are testable
without a model. The rules:

* multiclass: the probabilities are a distribution; top-3 are its three largest entries;
  ``uncertain`` when the top probability is below the bundle's ``abstain_threshold``.
* multilabel: each probability is the chance that one finding is present (they do not sum to 1);
  top-3 are the three most probable findings. With ``t = max(abstain_threshold,
  1 - abstain_threshold)`` a finding is *confidently present* when ``p >= t`` and *confidently
  absent* when ``p <= 1 - t``.
  ``uncertain`` when no finding is confidently present and not every finding is confidently
  absent, i.e. the model can neither name a finding nor rule them all out.
* ``out_of_scope`` when the bundle has an input check and ``ood_score > threshold``; the
  message comes from the manifest (e.g. "not a chest X-ray") and the probabilities must not be shown.

Every image goes through ``edge.locate`` first (``prepare``): a camera frame is cut down to the
rectified film or screen and normalised (``edge.preprocess.normalise_crop``); a digital file comes
back unchanged. The quality gate judges that crop, never letterbox bars or the lightbox, and the
Prediction carries the localisation and a thumbnail of exactly what was analysed.
"""

import base64
import time

from edge.errors import BackendError
from edge.i18n import N_, _
from edge.lazy import require
from edge.locate import locate
from edge.overlay import UNCERTAIN_TEXT
from edge.preprocess import normalise_crop, preprocess
from edge.quality import assess_quality

DISCLAIMER = "Decision support only \u2014 not a diagnosis"
PERCENT = "percent"
UNCERTAIN_REASONS = {"multilabel": N_("no finding is clearly present or clearly absent"),
                     "multiclass": N_("no class is clearly more likely")}
# The one table of coarse words shown instead of percentages (bundles whose calibration is not
# shown to hold, and every uncertain result): a probability p gets the first word whose lower
# bound it reaches. Screen, CLI and LAN service all use it (``likelihood_word``).
LIKELIHOOD_WORDS = ((0.70, N_("likely")), (0.30, N_("possible")), (0.0, N_("unlikely")))
TOP_K = 3
THUMBNAIL_SIZE = 96
# Modules whose pictures are X-ray films or screens: their frames go through edge.locate. A
# bundle of another module opts in with ``"camera_localisation": true`` in its manifest's
# model.extra (and a listed one opts out with false); others (skin photos) are classified as given.
LOCALISED_MODULES = ("chest", "pediatric-pneumonia")
# Localisation methods whose crop is a photograph of an X-ray (normalised before the model);
# "whole" and "letterbox" are digital images, analysed as they are.
PHOTOGRAPHED = ("lightbox", "screen", "guide")


class Prediction(object):
    """What the kiosk shows for one image."""

    def __init__(self, classes, display_names, probabilities, task, uncertain, bundle_id,
                 present=None, out_of_scope=False, out_of_scope_message=None, ood_score=None,
                 quality=None, backend=None, latency_ms=None, localisation=None, thumbnail=None,
                 heatmap=None, display=PERCENT):
        self.classes = list(classes)
        self.display_names = list(display_names)
        self.probabilities = [float(p) for p in probabilities]
        self.task = task
        self.uncertain = bool(uncertain)
        self.bundle_id = bundle_id
        self.present = list(present or [])
        self.out_of_scope = bool(out_of_scope)
        self.out_of_scope_message = out_of_scope_message
        self.ood_score = None if ood_score is None else float(ood_score)
        self.quality = quality
        self.backend = backend
        self.latency_ms = latency_ms
        self.localisation = localisation  # edge.locate.Localisation, or None (classified as given)
        self.thumbnail = thumbnail  # small BGR copy of exactly what the model saw, or None
        self.heatmap = heatmap  # [K, h, w] class-activation maps (edge.heatmap), or None
        self.suggested_module = None  # set by edge.suggest when another module's input check accepts
        self.display = display  # edge.bundle.display_mode: "percent" or "words"
        self.suggested_title = None

    @property
    def ranking(self):
        """Class indices, most probable first (stable for ties)."""
        return sorted(range(len(self.probabilities)), key=lambda i: (-self.probabilities[i], i))

    @property
    def top3(self):
        """[(display name, probability)] of the three most probable classes/findings."""
        return [(self.display_names[i], self.probabilities[i]) for i in self.ranking[:TOP_K]]

    @property
    def top1(self):
        """Class name (not display name) of the most probable class."""
        return self.classes[self.ranking[0]]

    @property
    def shows_percent(self):
        """Percentages only for a calibrated bundle's confident result; words otherwise (never an
        uncertain result next to a confident-looking number)."""
        return self.display == PERCENT and not self.uncertain

    def value_text(self, probability, percent_format=None):
        """What is shown for one probability: its percentage, or its likelihood word."""
        if self.shows_percent:
            return (percent_format or "{:.0%}").format(probability)
        return likelihood_word(probability)

    def suggestion_line(self, key=None):
        """"This looks like an image for <title> ..." when ``edge.suggest`` found a module; else None.
        ``key``: the kiosk key that switches to it; without one (CLI) the module id is named."""
        if not self.suggested_module:
            return None
        if key:
            return _("This looks like an image for {} - press {} to switch to it").format(
                self.suggested_title, key)
        return _("This looks like an image for {} - classify it with module '{}'").format(
            self.suggested_title, self.suggested_module)

    def notes(self):
        """Short lines to show under the top-3 (out of scope, suggestion, uncertain, image quality)."""
        lines = []
        if self.out_of_scope:
            lines.append("OUT OF SCOPE: {} - result not shown".format(self.out_of_scope_message))
            if self.suggested_module:
                lines.append(self.suggestion_line())
        if self.uncertain:  # the screen's banner, with why (its rows are words: never a percentage)
            reason = UNCERTAIN_REASONS["multilabel" if self.task == "multilabel" else "multiclass"]
            lines.append("{} ({})".format(_(UNCERTAIN_TEXT), _(reason)))
        if self.quality is not None and not self.quality.ok:
            lines.append(self.quality.message)
        return lines

    def to_dict(self):
        data = {
            "bundle_id": self.bundle_id,
            "task": self.task,
            "probabilities": {name: round(p, 6) for name, p in zip(self.classes, self.probabilities)},
            "top3": [{"name": name, "probability": round(p, 6), "word": likelihood_word(p)}
                     for name, p in self.top3],
            "display": PERCENT if self.shows_percent else "words",
            "top1": self.top1,
            "uncertain": self.uncertain,
            "out_of_scope": self.out_of_scope,
            "backend": self.backend,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
        }
        if self.task == "multilabel":
            data["present"] = list(self.present)
        if self.out_of_scope:
            data["out_of_scope_message"] = self.out_of_scope_message
        data["suggested_module"] = self.suggested_module
        if self.suggested_module:
            data["suggested_module_title"] = self.suggested_title
            data["suggestion"] = self.suggestion_line()
        if self.ood_score is not None:
            data["ood_score"] = round(self.ood_score, 6)
        if self.heatmap is not None:
            top = self.ranking[0]
            data["heatmap"] = {"class": self.classes[top], "shape": list(self.heatmap.shape[1:]),
                               "values": [[round(float(v), 4) for v in row] for row in self.heatmap[top]]}
        data["quality"] = self.quality.to_dict() if self.quality is not None else None
        if self.localisation is not None:
            data["localisation"] = self.localisation.to_dict()
            if self.thumbnail is not None:
                data["localisation"]["thumbnail_png_base64"] = _png_base64(self.thumbnail)
        return data

    def __repr__(self):
        return "Prediction({}, top3={}, uncertain={}, out_of_scope={})".format(
            self.bundle_id, [(n, round(p, 3)) for n, p in self.top3], self.uncertain, self.out_of_scope)


def likelihood_word(probability):
    """The LIKELIHOOD_WORDS word for a probability, translated."""
    for low, word in LIKELIHOOD_WORDS:
        if probability >= low:
            return _(word)
    return _(LIKELIHOOD_WORDS[-1][1])


def _png_base64(image):
    ok, encoded = require("cv2").imencode(".png", image)
    return base64.b64encode(encoded.tobytes()).decode("ascii") if ok else None


def multilabel_decision(probabilities, abstain_threshold):
    """(present indices, uncertain) for per-finding probabilities; see the module docstring."""
    high = max(abstain_threshold, 1.0 - abstain_threshold)
    present = [i for i, p in enumerate(probabilities) if p >= high]
    all_absent = all(p <= 1.0 - high for p in probabilities)
    return present, (not present and not all_absent)


def postprocess(outputs, bundle, index=0, quality=None, backend=None, latency_ms=None, localisation=None,
                thumbnail=None):
    """Runner outputs (row ``index``) + bundle -> Prediction. Pure: no model, no I/O."""
    description = bundle.description
    probabilities = [float(p) for p in require("numpy").asarray(outputs["probabilities"])[index]]
    present = []
    if description.task == "multilabel":
        present, uncertain = multilabel_decision(probabilities, description.abstain_threshold)
        present = [description.classes[i] for i in present]
    else:
        uncertain = max(probabilities) < description.abstain_threshold
    out_of_scope, message, ood_score = False, None, None
    check = description.input_check
    if check and outputs.get("ood_score") is None:
        # Never skip the check silently: out-of-scope images would be classified as in scope.
        raise BackendError("{}: the bundle declares an input check but the runner returned no ood_score. "
                           "Fix: re-export the bundle (its model.onnx must output {!r})".format(
                               bundle.bundle_id, check["output"]))
    if check:
        ood_score = float(require("numpy").asarray(outputs["ood_score"]).reshape(-1)[index])
        if ood_score > float(check["threshold"]):
            out_of_scope, message = True, check["message"]
    heatmap = outputs.get("heatmap")
    return Prediction(description.classes, description.display_names, probabilities, description.task,
                      uncertain, bundle.bundle_id, present=present, out_of_scope=out_of_scope,
                      out_of_scope_message=message, ood_score=ood_score, quality=quality,
                      backend=backend, latency_ms=latency_ms, localisation=localisation, thumbnail=thumbnail,
                      heatmap=None if heatmap is None else require("numpy").asarray(heatmap)[index],
                      display=getattr(bundle, "display", PERCENT))


class Prepared(object):
    """One frame made ready for the runner: its input batch, its quality verdict, the time it took,
    where the X-ray was found and a thumbnail of the analysed image."""

    def __init__(self, batch, quality, prepare_ms, localisation=None, thumbnail=None):
        self.batch = batch
        self.quality = quality
        self.prepare_ms = prepare_ms
        self.localisation = localisation
        self.thumbnail = thumbnail


def localises(bundle):
    """True when ``bundle``'s images are X-rays to find in camera frames (see LOCALISED_MODULES)."""
    choice = bundle.description.extra.get("camera_localisation")
    if choice is not None:
        return bool(choice)
    return bundle.module_id in LOCALISED_MODULES


def analysed_image(localisation):
    """The image the model sees for a Localisation: a photographed crop normalised, a digital one as is."""
    if localisation.method in PHOTOGRAPHED:
        return normalise_crop(localisation.crop)
    return localisation.crop


def thumbnail(image, size=THUMBNAIL_SIZE):
    """A small BGR copy of ``image`` (longest side ``size``)."""
    cv2 = require("cv2")
    height, width = image.shape[:2]
    scale = min(1.0, float(size) / max(height, width))
    dims = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    small = cv2.resize(image, dims, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_GRAY2BGR) if small.ndim == 2 else small


def prepare(image_bgr, bundle, out=None, quality_thresholds=None, localisation=None):
    """The CPU half of classify: for an X-ray module locate the X-ray (unless ``localisation`` of
    this very frame is given, e.g. by the kiosk's live outline) and normalise a photographed crop;
    preprocess (into ``out`` when given) and judge quality on the crop, not on what surrounds it."""
    start = time.perf_counter()
    if localisation is None and localises(bundle):
        localisation = locate(image_bgr)
    crop = localisation.crop if localisation is not None else image_bgr
    analysed = analysed_image(localisation) if localisation is not None else image_bgr
    batch = preprocess(analysed, bundle.description.input, out=out)
    quality = assess_quality(crop, quality_thresholds) if quality_thresholds is not None else None
    return Prepared(batch, quality, (time.perf_counter() - start) * 1000.0, localisation=localisation,
                    thumbnail=thumbnail(analysed) if localisation is not None else None)


def infer_prepared(prepared, runner, bundle):
    """The runner half of classify: infer and postprocess; latency counts both halves."""
    start = time.perf_counter()
    outputs = runner.infer(prepared.batch)
    latency_ms = prepared.prepare_ms + (time.perf_counter() - start) * 1000.0
    return postprocess(outputs, bundle, quality=prepared.quality, backend=runner.describe(),
                       latency_ms=latency_ms, localisation=prepared.localisation,
                       thumbnail=prepared.thumbnail)


def classify(image_bgr, runner, bundle, out=None, quality_thresholds=None, localisation=None):
    """BGR uint8 image -> Prediction. ``out``: reusable input buffer; quality gate when thresholds given."""
    return infer_prepared(prepare(image_bgr, bundle, out=out, quality_thresholds=quality_thresholds,
                                  localisation=localisation), runner, bundle)


class FramePreparer(object):
    """``prepare`` for one bundle, writing into a ring of reusable input buffers.

    A pipeline prepares frame N+1 while the runner still reads frame N's buffer, so the ring has
    ``depth`` buffers: the caller must not have more than ``depth`` prepared frames alive at once.
    """

    def __init__(self, bundle, quality_thresholds=None, depth=2):
        self.bundle = bundle
        self.quality_thresholds = quality_thresholds
        shape = bundle.description.input.shape(1)
        np = require("numpy")
        self._buffers = [np.empty(shape, dtype=np.float32) for _ in range(int(depth))]
        self._next = 0

    def __call__(self, image_bgr, localisation=None):
        out = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        return prepare(image_bgr, self.bundle, out=out, quality_thresholds=self.quality_thresholds,
                       localisation=localisation)


class Classifier(object):
    """A loaded runner + its bundle + a reusable input buffer: ``classify(image)`` for the kiosk loop."""

    def __init__(self, runner, quality_thresholds=None):
        self.runner = runner
        self.bundle = runner.bundle
        if quality_thresholds is not None:
            quality_thresholds = quality_thresholds.for_bundle(self.bundle)
        self.quality_thresholds = quality_thresholds
        np = require("numpy")
        self._buffer = np.empty(self.bundle.description.input.shape(1), dtype=np.float32)

    @classmethod
    def open(cls, bundle, backend="auto", precision="fp16", engine_cache=None, quality_thresholds=None,
             **options):
        """An unloaded Classifier for ``bundle`` via ``edge.backends.open_runner``; use it with ``with``."""
        from edge.backends import open_runner

        runner = open_runner(bundle, backend=backend, precision=precision, engine_cache=engine_cache,
                             **options)
        return cls(runner, quality_thresholds=quality_thresholds)

    def classify(self, image_bgr, localisation=None):
        return classify(image_bgr, self.runner, self.bundle, out=self._buffer,
                        quality_thresholds=self.quality_thresholds, localisation=localisation)

    def preparer(self, depth=2):
        """A FramePreparer with this classifier's thresholds, for another thread to prepare frames."""
        return FramePreparer(self.bundle, self.quality_thresholds, depth=depth)

    def infer_prepared(self, prepared):
        return infer_prepared(prepared, self.runner, self.bundle)

    def notices(self):
        return self.runner.notices()

    def __enter__(self):
        self.runner.load()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.runner.close()
        return False
