"""The module set: which modules the kiosk offers, their bundles, and why one is not usable.

``discover_modules`` finds the installed bundles; a bundle that cannot be read (any BundleError,
any error while reading its manifest), a module id claimed by two bundles, or a module whose
golden images do not give the lab's results (checked when its runner is loaded,
``default_classifier_opener``) disables that module only, with one line on screen and in the
journal; the kiosk itself keeps running.
"""

import json
import os

from edge.errors import BundleError, MedkioskError

MANIFEST = "manifest.json"
MANIFEST_ID_LIMIT = 1 << 20  # bytes read to find a damaged bundle's module id for its message


class ModuleSlot(object):
    """One configured module: its bundle when installed, else why it is not usable."""

    def __init__(self, module_id, bundle=None, problem=None):
        self.module_id = module_id
        self.bundle = bundle
        self.problem = problem
        self.runner_info = None  # set by the inference worker once the runner is loaded
        self.preparer = None  # set with it: a FramePreparer the display thread uses (files and folders)

    @property
    def title(self):
        return self.bundle.title if self.bundle is not None else self.module_id

    @property
    def usable(self):
        return self.bundle is not None and self.problem is None

    def __repr__(self):
        return "ModuleSlot({!r}, installed={}, problem={!r})".format(
            self.module_id, self.bundle is not None, self.problem)


class ModuleSet(object):
    """The slots in the order M steps through them, and the one shown."""

    def __init__(self, slots, start=0):
        self.slots = list(slots)
        self.index = start

    @property
    def current(self):
        return self.slots[self.index]

    def next(self):
        self.index = (self.index + 1) % len(self.slots)
        return self.current

    def select(self, module_id):
        """Show the slot of ``module_id`` (a suggestion's target); False when there is none."""
        for index, slot in enumerate(self.slots):
            if slot.module_id == module_id:
                self.index = index
                return True
        return False

    def problems(self):
        """(module id, problem) of every slot that cannot run, for the journal at start."""
        return [(slot.module_id, slot.problem) for slot in self.slots if slot.problem]


def _manifest_module_id(folder):
    """The module id a damaged bundle's manifest claims, or None when even that cannot be read."""
    try:
        with open(os.path.join(folder, MANIFEST)) as handle:
            text = handle.read(MANIFEST_ID_LIMIT + 1)
        if len(text) > MANIFEST_ID_LIMIT:
            return None
        module_id = json.loads(text)["module"]["id"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return module_id if isinstance(module_id, str) else None


def _bundle_folders(models_dir):
    if os.path.isfile(os.path.join(models_dir, MANIFEST)):
        return [models_dir]
    if not os.path.isdir(models_dir):
        return []
    return sorted(os.path.join(models_dir, name) for name in os.listdir(models_dir)
                  if os.path.isfile(os.path.join(models_dir, name, MANIFEST)))


def _load_slot(folder):
    """A ModuleSlot for one bundle folder; a bundle that cannot be loaded becomes a slot with its problem."""
    from edge.bundle import load_bundle

    try:
        bundle = load_bundle(folder)
    except BundleError as exc:
        problem = str(exc)
    except Exception as exc:  # any failure reading one bundle (RecursionError...) disables it, not the kiosk
        problem = "bundle {}: cannot be read: {}: {}. Fix: re-install the bundle".format(
            folder, type(exc).__name__, exc)
    else:
        return ModuleSlot(bundle.module_id, bundle=bundle)
    module_id = _manifest_module_id(folder) or os.path.basename(folder.rstrip("/"))
    return ModuleSlot(module_id, problem="Model bundle damaged: {}".format(problem))


def _installed(folders):
    """module id -> slot; a module id claimed by two bundles is disabled, naming both folders."""
    found, where = {}, {}
    for folder in folders:
        slot = _load_slot(folder)
        module_id = slot.module_id
        if module_id not in found:
            found[module_id], where[module_id] = slot, [folder]
            continue
        where[module_id].append(folder)
        if slot.usable or found[module_id].usable:
            found[module_id] = ModuleSlot(module_id, problem=(
                "Duplicate module id '{}' in {}: the kiosk cannot tell which to run. Fix: remove all but "
                "one of these bundles".format(module_id, ", ".join(where[module_id]))))
    return found


def discover_modules(models_dir, module_ids, first=None):
    """ModuleSlots for ``module_ids`` (config order) from the bundles under ``models_dir``.

    ``models_dir`` may also be one bundle folder. ``first`` (``--module``) is put first when it
    is not listed. A listed module without a bundle is "not installed"; a bundle that fails
    validation, or a module id two bundles claim, is listed with its problem. Returns
    (slots, start index).
    """
    found = _installed(_bundle_folders(models_dir))
    ids = list(module_ids)
    if first and first not in ids:
        ids.insert(0, first)
    if not ids:
        ids = sorted(found)
    slots = []
    for module_id in ids:
        slot = found.get(module_id)
        if slot is None:
            slot = ModuleSlot(module_id, problem="No model bundle for '{}' in {}. Install it, or press M for "
                                                 "another module".format(module_id, models_dir))
        slots.append(slot)
    if first:
        start = ids.index(first)
    else:
        start = next((i for i, slot in enumerate(slots) if slot.usable), 0)
    return slots, start


def check_golden(classifier, bundle):
    """Run the bundle's golden images through the loaded runner; raise BundleError if any fails.

    A bundle whose manifest was edited (swapped class names, another model) gives other results
    on its golden images than the lab recorded: that module must not run.
    """
    from edge.verify import run_golden

    failed = [check for check in run_golden(bundle, classifier.runner) if check.failed]
    if failed:
        raise BundleError(bundle.path, "golden images", "{} of them give other results than the lab's "
                          "({})".format(len(failed), "; ".join(c.name + ": " + c.detail for c in failed)),
                          "re-install the bundle from its exporter; run `medkiosk bundle verify`")


def default_classifier_opener(backend="auto", precision="fp16", engine_cache=None, quality=None,
                              threads=None, golden=True):
    """A function slot -> loaded Classifier (runs in the inference thread).

    ``threads``: CPU inference threads (ONNX Runtime); None is the runtime's own default.
    ``golden``: check the bundle's golden images on the loaded runner first (a failure disables
    the module: the worker reports it as the slot's problem).
    """
    from edge.classify import Classifier
    from edge.quality import QualityThresholds

    thresholds = QualityThresholds.from_mapping(quality) if quality is not None else None

    def open_classifier(slot):
        classifier = Classifier.open(slot.bundle, backend=backend, precision=precision, threads=threads,
                                     engine_cache=engine_cache, quality_thresholds=thresholds)
        classifier = classifier.__enter__()
        if golden:
            try:
                check_golden(classifier, slot.bundle)
            except BaseException:
                classifier.__exit__(None, None, None)
                raise
        return classifier

    return open_classifier


def suggest_in_slots(prediction, image, slot, slots, open_classifier, prepared=None):
    """On refusal, offer the image to the other usable modules (``edge.suggest``); returns the id or None.

    ``open_classifier(slot)`` is the inference worker's (it keeps every runner). A module that cannot
    be opened for the check gets that problem (as when the user switches to it) and is skipped.
    """
    if not prediction.out_of_scope:
        return None
    from edge.suggest import Candidate, suggest_module

    candidates = []
    for other in [s for s in slots if s is not slot and s.usable and s.bundle.description.input_check]:
        candidate = Candidate(other.bundle, lambda other=other: open_classifier(other))
        try:
            candidate.classifier()
        except MedkioskError as exc:
            other.problem = "Module cannot run here: {}".format(exc)
            continue
        candidates.append(candidate)
    return suggest_module(prediction, image, slot.bundle, candidates, prepared)
