"""The bundles shipped in models/: they load, reproduce their golden outputs, classify real X-rays of
their committed test split above a measured floor, and flag images that are not chest X-rays.

Fast (ONNX Runtime CPU, ~40 X-rays per module, no training). The floors are the accuracy measured on
exactly these images when the bundle was built, minus a margin for ONNX Runtime/OpenCV differences
between machines; a failing floor means the bundle or the preprocessing changed.
"""

import glob
import os

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_DATA

MODELS = os.path.join(ROOT, "models")
BUNDLES = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(MODELS, "*", "manifest.json")))
PER_CLASS = 20
# module: (images folder below ../shared/data, accuracy measured on the first PER_CLASS test images of
# each class, margin). See docs/models/<module>/report.md for the full test-split evaluation.
FLOORS = {
    "pediatric-pneumonia": ("chest-pediatric/train", 0.95, 0.05),
    "chest": ("chest-nih/images", 0.5857, 0.05),
}


def _session(bundle):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(bundle.model_path, sess_options=options, providers=["CPUExecutionProvider"])


def _run(session, bundle, images):
    from edge.preprocess import preprocess

    probs, scores = [], []
    for image in images:
        out = session.run(None, {bundle.input_name: preprocess(image, bundle.description.input)})
        probs.append(out[0][0])
        scores.append(float(out[1][0]) if len(out) > 1 else float("nan"))
    return np.array(probs), np.array(scores)


def test_models_folder_ships_the_chest_modules():
    ids = sorted(os.path.basename(b) for b in BUNDLES)
    assert ids == ["chest", "pediatric-pneumonia"], ids
    assert not os.path.exists(os.path.join(MODELS, "skin")), "no skin model may ship (no licensed photos)"


@pytest.fixture(scope="module", params=BUNDLES, ids=[os.path.basename(b) for b in BUNDLES])
def shipped(request):
    from edge.bundle import load_bundle

    bundle = load_bundle(request.param)
    return bundle, _session(bundle)


def test_bundle_is_complete_and_small(shipped):
    bundle, _session = shipped
    assert os.path.basename(bundle.path) == bundle.module_id
    assert os.path.getsize(bundle.model_path) < 20 * 1024 * 1024
    assert bundle.description.input_check["output"] == "ood_score"
    assert bundle.description.temperature > 0 and 0 < bundle.description.abstain_threshold < 1
    with open(os.path.join(bundle.path, "model_card.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "not a diagnosis" in card
    assert ("Wang" in card and "nihcc.app.box.com" in card) or ("Kermany" in card and "CC BY 4.0" in card)


def test_golden_images_reproduce(shipped):
    from edge.preprocess import load_image

    bundle, session = shipped
    samples = bundle.golden_samples()
    assert len(samples) >= 2
    probs, _scores = _run(session, bundle, [load_image(s.path) for s in samples])
    for sample, row in zip(samples, probs):
        np.testing.assert_allclose(row, sample.probabilities, atol=sample.tolerance)
        assert bundle.description.classes[int(row.argmax())] == sample.top1


def _test_images(bundle):
    from training.splits import Split

    folder, measured, margin = FLOORS[bundle.module_id]
    images_dir = os.path.join(SHARED_DATA, folder)
    if not os.path.isdir(images_dir):
        pytest.skip("../shared/data/{} is not beside this checkout".format(folder))
    split = Split.from_file(os.path.join(ROOT, "splits", bundle.module_id + ".json"), root=images_dir)
    chosen = []
    for cls in bundle.description.classes:
        chosen += [s for s in split.test if s.labels[0] == cls][:PER_CLASS]
    return chosen, measured, margin


def test_real_test_xrays_are_classified_above_the_measured_floor(shipped):
    from edge.preprocess import load_image

    bundle, session = shipped
    samples, measured, margin = _test_images(bundle)
    classes = bundle.description.classes
    probs, scores = _run(session, bundle, [load_image(s.path) for s in samples])
    truth = np.array([classes.index(s.labels[0]) for s in samples])
    accuracy = float((probs.argmax(1) == truth).mean())
    assert measured is not None, "record the measured accuracy {:.4f} in FLOORS".format(accuracy)
    assert accuracy >= measured - margin, (accuracy, measured)
    # The input check accepts real X-rays (threshold set for 99% acceptance on validation).
    assert float((scores > bundle.description.input_check["threshold"]).mean()) <= 0.10


def test_images_that_are_not_chest_xrays_are_flagged(shipped):
    from training import ood

    bundle, session = shipped
    # Seed 3: the recipes fit the input check's out-of-scope score on generated images of seed 1.
    images = ood.generated_images(count=4, size=224, seed=3)
    _probs, scores = _run(session, bundle, list(images.values()))
    flagged = scores > bundle.description.input_check["threshold"]
    missed = [name for name, hit in zip(images, flagged) if not hit]
    assert not missed, "accepted as chest X-rays: {}".format(missed)


def test_real_photos_are_flagged(shipped):
    pytest.importorskip("skimage")
    from training import ood

    bundle, session = shipped
    photos = ood.skimage_photos(("astronaut", "coffee", "chelsea", "rocket", "camera", "moon"))
    _probs, scores = _run(session, bundle, list(photos.values()))
    flagged = scores > bundle.description.input_check["threshold"]
    assert flagged.mean() >= 5 / 6, dict(zip(photos, scores.round(2)))


# module: the module of the other patient group, whose first PER_CLASS test images per class (adults only
# from NIH) must be refused; CROSS_FLOORS: (share refused as measured when the bundles were built, margin).
OTHER_GROUP = {
    "chest": "pediatric-pneumonia",
    "pediatric-pneumonia": "chest",
}
CROSS_FLOORS = {"chest": (1.0, 0.05), "pediatric-pneumonia": (1.0, 0.05)}


def test_the_other_patient_groups_xrays_are_refused(shipped):
    """Adult module on children's test X-rays, child module on adults' (NIH, age >= 18) test X-rays."""
    from edge.bundle import load_bundle
    from edge.preprocess import load_image

    bundle, session = shipped
    other = load_bundle(os.path.join(MODELS, OTHER_GROUP[bundle.module_id]))
    samples, _measured, _margin = _test_images(other)
    if other.module_id == "chest":
        import csv

        with open(os.path.join(SHARED_DATA, "chest-nih", "labels.csv"), encoding="utf-8") as handle:
            ages = {row["image"]: int(row["age"]) for row in csv.DictReader(handle)}
        samples = [s for s in samples if ages[os.path.basename(s.path)] >= 18]
    _probs, scores = _run(session, bundle, [load_image(s.path) for s in samples])
    refused = float((scores > bundle.description.input_check["threshold"]).mean())
    measured, margin = CROSS_FLOORS[bundle.module_id]
    assert measured is not None, "record the measured refusal rate {:.4f} in CROSS_FLOORS".format(refused)
    assert refused >= measured - margin, (refused, measured)


def test_manifest_says_whether_percentages_may_be_shown(shipped):
    """``calibration``: the 5-fold CV ECE and the display rule (percent only at ECE <= 0.05)."""
    bundle, _session = shipped
    section = bundle.manifest["calibration"]
    low, high = section["ece_cv_ci95"]
    assert 0.0 <= low <= section["ece_cv"] <= high <= 1.0
    assert section["display"] == ("percent" if section["ece_cv"] <= 0.05 else "words")


def test_bundle_carries_the_class_activation_heatmap(shipped):
    bundle, session = shipped
    section = bundle.manifest["heatmap"]
    assert section["output"] == "heatmap" and section["method"] == "cam"
    assert "heatmap" in [output.name for output in session.get_outputs()]
