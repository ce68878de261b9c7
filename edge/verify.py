"""Checks shared by ``medkiosk bundle verify`` and ``medkiosk selftest``.

A check is a named result: PASS, FAIL, WARN (works, but not as well as asked) or SKIP (could not
be checked here, with the reason). ``verify_bundle`` runs every ``load_bundle`` check and then the
bundle's golden images through the chosen backend, comparing with ``golden/expected.json``.
"""

import os

from edge.errors import MedkioskError
from edge.lazy import require

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"


class Check(object):
    """One line of a checklist."""

    def __init__(self, name, status, detail=""):
        self.name = name
        self.status = status
        self.detail = detail

    @property
    def failed(self):
        return self.status == FAIL

    def line(self):
        return "[{}] {}{}".format(self.status, self.name, ": " + self.detail if self.detail else "")

    def to_dict(self):
        return {"name": self.name, "status": self.status, "detail": self.detail}

    def __repr__(self):
        return "Check({!r}, {}, {!r})".format(self.name, self.status, self.detail)


def compare_golden(sample, probabilities, class_names):
    """Check for one golden sample: max |diff| within its tolerance and the same top-1 class."""
    diffs = [abs(a - b) for a, b in zip(probabilities, sample.probabilities)]
    max_diff = max(diffs) if diffs else 0.0
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    top1 = class_names[best]
    problems = []
    if max_diff > sample.tolerance:
        problems.append("max |diff| {:.3g} > tolerance {:g}".format(max_diff, sample.tolerance))
    expected_top1 = class_names.index(sample.top1) if sample.top1 in class_names else None
    # A top-1 swap between two classes the lab itself found within tolerance of each other is no fault.
    near_tie = expected_top1 is not None and abs(
        sample.probabilities[expected_top1] - sample.probabilities[best]) <= 2 * sample.tolerance
    if top1 != sample.top1 and not near_tie:
        problems.append("top-1 {} but expected {}".format(top1, sample.top1))
    name = "golden {}".format(os.path.basename(sample.path))
    if problems:
        return Check(name, FAIL, "; ".join(problems)), max_diff
    detail = "top-1 {}, max |diff| {:.2g} <= {:g}".format(top1, max_diff, sample.tolerance)
    return Check(name, PASS, detail), max_diff


def run_golden(bundle, runner):
    """Checks for every golden image of ``bundle`` run through an opened ``runner``."""
    from edge.classify import classify
    from edge.preprocess import load_image

    np = require("numpy")
    try:
        samples = bundle.golden_samples()
    except MedkioskError as exc:
        return [Check("golden images", FAIL, str(exc))]
    if not samples:
        return [Check("golden images", FAIL, "the bundle has no golden images; its outputs on this "
                      "device cannot be compared with the lab's. Fix: re-export it with golden images")]
    checks = []
    buffer = np.empty(bundle.description.input.shape(1), dtype=np.float32)
    for sample in samples:
        try:
            prediction = classify(load_image(sample.path), runner, bundle, out=buffer)
        except MedkioskError as exc:
            checks.append(Check("golden {}".format(os.path.basename(sample.path)), FAIL, str(exc)))
            continue
        checks.append(compare_golden(sample, prediction.probabilities, bundle.description.classes)[0])
    return checks


def runner_checks(runner):
    """What the runner really uses: PASS, WARN on an auto fallback, FAIL when it downgraded GPU->CPU."""
    checks = [Check("backend", PASS, runner.describe())]
    if runner.fallback_reason:
        checks.append(Check("backend fallback", WARN, runner.fallback_reason))
    if runner.downgraded:
        checks.append(Check("backend downgrade", FAIL, runner.downgrade_reason))
    if runner.precision != runner.requested_precision:
        checks.append(Check("precision", WARN, "{} requested, running {} on {}".format(
            runner.requested_precision, runner.precision, runner.provider)))
    return checks


def signature_check(bundle):
    """PASS with the signer, or WARN when developer mode let an unsigned or altered bundle load."""
    if bundle.signature_problem:
        return Check("signature", WARN, bundle.signature_problem)
    return Check("signature", PASS, bundle.signature_line)


def verify_bundle(path, backend="auto", precision="fp16", engine_cache=None, trust=None, **options):
    """All checks of one bundle folder: signature/manifest/hash/ONNX contract, then golden images.

    Returns (bundle or None, [Check]).
    """
    from edge.backends import open_runner
    from edge.bundle import load_bundle

    name = "signature, manifest, sha256, ONNX contract"
    try:
        bundle = load_bundle(path, trust=trust)
    except MedkioskError as exc:
        return None, [Check(name, FAIL, str(exc))]
    checks = [signature_check(bundle), Check(name, PASS, "{} ({} classes, {}x{} {})".format(
        bundle.bundle_id, bundle.description.num_classes, bundle.description.input.height,
        bundle.description.input.width, bundle.description.input.colour))]
    try:
        with open_runner(bundle, backend=backend, precision=precision, engine_cache=engine_cache,
                         **options) as runner:
            checks.extend(runner_checks(runner))
            checks.extend(run_golden(bundle, runner))
    except MedkioskError as exc:
        checks.append(Check("backend {}".format(backend), FAIL, str(exc)))
    return bundle, checks


def duplicate_module_checks(bundles):
    """One FAIL per module id that more than one bundle folder claims (the kiosk would show only one)."""
    folders = {}
    for bundle in bundles:
        if bundle is not None:
            folders.setdefault(bundle.module_id, []).append(bundle.path)
    return [Check("module id {}".format(module_id), FAIL, "claimed by {} bundles: {}. Fix: keep one of them "
                  "(or give each its own module id when exporting)".format(len(paths), ", ".join(paths)))
            for module_id, paths in sorted(folders.items()) if len(paths) > 1]


def find_bundles(models_dir):
    """Bundle folders (holding manifest.json) directly under ``models_dir``, sorted."""
    if not os.path.isdir(models_dir):
        return []
    return sorted(os.path.join(models_dir, name) for name in os.listdir(models_dir)
                  if os.path.isfile(os.path.join(models_dir, name, "manifest.json")))
