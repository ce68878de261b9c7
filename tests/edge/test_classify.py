"""classify/postprocess: decision rules on arrays (pure), and the full step on a real model."""

import json
import os

import cv2
import numpy as np
import pytest

from edge.backends import open_runner
from edge.bundle import Bundle, load_bundle, make_manifest
from edge.classify import DISCLAIMER, Classifier, classify, multilabel_decision, postprocess
from edge.description import InputSpec, ModelDescription
from edge.preprocess import load_image, preprocess
from edge.quality import QualityThresholds


def _bundle(task="multiclass", classes=("a", "b", "c", "d"), abstain=0.5, input_check=None):
    """An in-memory Bundle (no model file): postprocess only reads its description and id."""
    description = ModelDescription("tiny", task, list(classes), InputSpec(16, 16),
                                   display_names=[c.upper() for c in classes], abstain_threshold=abstain,
                                   input_check=input_check)
    manifest = make_manifest(description, "unit", "Unit", "0" * 64)
    return Bundle("/nonexistent", manifest, description, onnx_info=None)


CHECK = {"output": "ood_score", "threshold": 0.7, "method": "mahalanobis", "message": "not a chest X-ray"}


def test_multiclass_top3_and_confident():
    prediction = postprocess({"probabilities": np.array([[0.1, 0.6, 0.25, 0.05]], np.float32)}, _bundle())
    assert [name for name, _p in prediction.top3] == ["B", "C", "A"]
    assert prediction.top3[0][1] == pytest.approx(0.6)
    assert prediction.top1 == "b"
    assert not prediction.uncertain and not prediction.out_of_scope
    assert prediction.notes() == []


def test_multiclass_uncertain_below_abstain_threshold():
    outputs = {"probabilities": np.array([[0.45, 0.35, 0.15, 0.05]], np.float32)}
    assert postprocess(outputs, _bundle(abstain=0.5)).uncertain
    assert not postprocess(outputs, _bundle(abstain=0.4)).uncertain
    assert "Uncertain - retake the image or refer" in postprocess(outputs, _bundle(abstain=0.5)).notes()[0]


def test_two_classes_give_two_entries_and_ties_are_stable():
    outputs = {"probabilities": np.array([[0.5, 0.5]], np.float32)}
    prediction = postprocess(outputs, _bundle(classes=("x", "y")))
    assert [name for name, _p in prediction.top3] == ["X", "Y"]


def test_row_index_selects_the_image():
    outputs = {"probabilities": np.array([[0.9, 0.1, 0, 0], [0, 0, 0.1, 0.9]], np.float32)}
    assert postprocess(outputs, _bundle(), index=1).top1 == "d"


@pytest.mark.parametrize("probs, abstain, present, uncertain", [
    ([0.9, 0.1, 0.2], 0.7, [0], False),        # one finding confidently present
    ([0.1, 0.2, 0.05], 0.7, [], False),         # all confidently absent: "no finding"
    ([0.5, 0.1, 0.1], 0.7, [], True),           # one in the grey zone, none present
    ([0.8, 0.5, 0.1], 0.7, [0], False),         # grey zone beside a confident finding
    ([0.5, 0.1, 0.1], 0.3, [], True),           # 0.3 means the same band as 0.7
    ([0.75, 0.72, 0.0], 0.7, [0, 1], False),
])
def test_multilabel_rule(probs, abstain, present, uncertain):
    assert multilabel_decision(probs, abstain) == (present, uncertain)


def test_multilabel_prediction_lists_findings_not_a_distribution():
    bundle = _bundle(task="multilabel", classes=("effusion", "nodule", "mass", "edema"), abstain=0.7)
    prediction = postprocess({"probabilities": np.array([[0.92, 0.85, 0.4, 0.05]], np.float32)}, bundle)
    assert prediction.top3 == [("EFFUSION", pytest.approx(0.92)), ("NODULE", pytest.approx(0.85)),
                               ("MASS", pytest.approx(0.4))]
    assert prediction.present == ["effusion", "nodule"]
    assert not prediction.uncertain
    assert prediction.to_dict()["present"] == ["effusion", "nodule"]


def test_out_of_scope_from_ood_score():
    bundle = _bundle(input_check=CHECK)
    probs = np.array([[0.9, 0.05, 0.03, 0.02]], np.float32)
    inside = postprocess({"probabilities": probs, "ood_score": np.array([0.2], np.float32)}, bundle)
    outside = postprocess({"probabilities": probs, "ood_score": np.array([0.95], np.float32)}, bundle)
    assert not inside.out_of_scope and inside.ood_score == pytest.approx(0.2)
    assert outside.out_of_scope
    assert outside.out_of_scope_message == "not a chest X-ray"
    assert outside.notes()[0].startswith("OUT OF SCOPE: not a chest X-ray")
    assert outside.to_dict()["out_of_scope_message"] == "not a chest X-ray"


def test_to_dict_has_every_class_and_is_json():
    prediction = postprocess({"probabilities": np.array([[0.1, 0.6, 0.25, 0.05]], np.float32)}, _bundle())
    data = json.loads(json.dumps(prediction.to_dict()))
    assert set(data["probabilities"]) == {"a", "b", "c", "d"}
    assert data["top3"][0] == {"name": "B", "probability": pytest.approx(0.6), "word": "possible"}
    assert data["bundle_id"].startswith("unit@1.0.0+")


def test_disclaimer_text():
    assert DISCLAIMER == "Decision support only \u2014 not a diagnosis"


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.mark.onnxruntime
def test_classify_real_model_matches_runner(bundle, synth_images):
    image = load_image(next(iter(synth_images.values()))[0])
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        expected = runner.infer(preprocess(image, bundle.description.input))["probabilities"][0]
        prediction = classify(image, runner, bundle)
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)
    assert prediction.quality is None
    assert prediction.latency_ms > 0
    assert prediction.backend == "onnxruntime (CPUExecutionProvider, fp32)"
    assert prediction.bundle_id == bundle.bundle_id


@pytest.mark.onnxruntime
def test_classifier_reuses_its_buffer_and_checks_quality(bundle, synth_images, real_xray):
    with Classifier.open(bundle, backend="onnxruntime", precision="fp32",
                         quality_thresholds=QualityThresholds()) as classifier:
        buffer = classifier._buffer
        results = [classifier.classify(load_image(path)) for path in
                   [paths[0] for paths in synth_images.values()] + [real_xray]]
        dark = classifier.classify(np.full((48, 64, 3), 3, np.uint8))
    assert classifier._buffer is buffer
    assert all(abs(sum(r.probabilities) - 1.0) < 1e-4 for r in results)
    assert results[-1].quality.ok  # a real, sharp X-ray (grey PNG -> RGB model input)
    assert [name for name, _v in dark.quality.problems] == ["too dark"]
    assert any("too dark" in line for line in dark.notes())


# The camera path, on the shipped chest bundle (an X-ray module: its frames are localised).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_CHEST = os.path.join(ROOT, "models", "chest")


def _samples(name):
    return os.path.join(ROOT, "samples", "chest", name)


@pytest.fixture(scope="module")
def chest():
    bundle = load_bundle(SHIPPED_CHEST)
    with Classifier(open_runner(bundle, backend="onnxruntime", precision="fp32"),
                    quality_thresholds=QualityThresholds()) as classifier:
        yield classifier


@pytest.mark.onnxruntime
def test_digital_file_is_identity_with_identical_probabilities(chest, real_xray):
    image = load_image(real_xray)
    expected = chest.runner.infer(preprocess(image, chest.bundle.description.input))
    prediction = chest.classify(image)
    assert prediction.localisation.method == "whole" and prediction.localisation.crop is image
    np.testing.assert_array_equal(prediction.probabilities, [float(p) for p in expected["probabilities"][0]])
    assert prediction.ood_score == pytest.approx(float(np.asarray(expected["ood_score"]).reshape(-1)[0]))


@pytest.mark.onnxruntime
def test_camera_frame_is_classified_on_its_normalised_crop(chest):
    from edge.classify import analysed_image
    from edge.locate import locate

    frame = load_image(_samples("camera--film--pneumonia--00000398_002.jpg"))
    prediction = chest.classify(frame)
    loc = prediction.localisation
    assert loc.found and loc.method == "lightbox"
    expected = chest.runner.infer(preprocess(analysed_image(locate(frame)), chest.bundle.description.input))
    np.testing.assert_allclose(prediction.probabilities, expected["probabilities"][0], atol=1e-6)
    whole = chest.runner.infer(preprocess(frame, chest.bundle.description.input))["probabilities"][0]
    assert np.abs(np.asarray(prediction.probabilities) - whole).max() > 1e-3  # not the whole frame
    assert prediction.thumbnail.shape[2] == 3 and max(prediction.thumbnail.shape[:2]) == 96
    # The same frame with its localisation given (the kiosk's live outline) gives the same answer.
    again = chest.classify(frame, localisation=locate(frame))
    assert again.probabilities == prediction.probabilities


@pytest.mark.onnxruntime
def test_letterboxed_xray_is_judged_on_the_xray_not_the_bars(chest, real_xray):
    image = load_image(real_xray)
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, 280:1000] = cv2.resize(image, (720, 720))
    prediction = chest.classify(frame)
    assert prediction.localisation.method == "letterbox"
    assert prediction.quality.ok, prediction.quality.problems  # no "too dark" from the black bars


@pytest.mark.onnxruntime
def test_skin_or_test_modules_are_not_localised(bundle, synth_images):
    from edge.classify import localises

    assert not localises(bundle)
    with Classifier(open_runner(bundle, backend="onnxruntime", precision="fp32")) as classifier:
        prediction = classifier.classify(load_image(next(iter(synth_images.values()))[0]))
    assert prediction.localisation is None and prediction.thumbnail is None
    assert "localisation" not in prediction.to_dict()


@pytest.mark.onnxruntime
def test_cli_classify_json_reports_the_localisation_of_a_camera_frame():
    import base64
    import subprocess
    import sys

    root = ROOT
    frame = _samples("camera--monitor--effusion--00012123_001.jpg")
    # Popen, not run(capture_output=...): this file also runs under Python 3.6.
    process = subprocess.Popen([sys.executable, "-m", "edge", "classify", frame, "--bundle", SHIPPED_CHEST,
                                "--backend", "onnxruntime", "--json"], cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=root))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    image = json.loads(out.decode("utf-8"))["images"][0]
    loc = image["localisation"]
    assert loc["found"] is True and loc["method"] == "screen" and loc["frame_size"] == [1280, 720]
    with open(_samples("camera-frames.json")) as handle:
        truth = json.load(handle)["camera--monitor--effusion--00012123_001.jpg"]["quad"]
    from edge.locate import quad_iou

    assert quad_iou(loc["quad"], truth) >= 0.9
    thumbnail = cv2.imdecode(np.frombuffer(base64.b64decode(loc["thumbnail_png_base64"]), np.uint8),
                             cv2.IMREAD_COLOR)
    assert max(thumbnail.shape[:2]) == 96


def test_normalise_crop_undoes_cast_and_compression_and_is_pure(real_xray):
    from edge.preprocess import normalise_crop

    grey = load_image(real_xray)[:, :, 0].astype(np.float32)
    film = 230 * (0.1 + 0.7 * grey / 255.0)  # a film's compressed grey range on a lightbox
    photo = np.clip(np.dstack([film * 1.08, film, film * 0.9]), 0, 255).astype(np.uint8)  # colour cast
    before = photo.copy()
    out = normalise_crop(photo)
    assert np.array_equal(photo, before)  # pure
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    low, high = np.percentile(out[:, :, 0], [0.5, 99.5])
    assert low <= 2 and high >= 250  # the grey range is stretched back
    assert np.corrcoef(out[:, :, 0].astype(np.float32).ravel(), grey.ravel())[0, 1] > 0.95  # the same X-ray
    assert abs(float(out.mean()) - float(grey.mean())) < abs(float(photo.mean()) - float(grey.mean()))


def test_normalise_crop_keeps_a_blank_screen_blank():
    from edge.preprocess import NORMALISE_MAX_GAIN, normalise_crop

    rng = np.random.RandomState(0)
    blank = np.clip(120 + rng.normal(0, 4, (200, 160, 3)), 0, 255).astype(np.uint8)
    out = normalise_crop(blank)[:, :, 0].astype(np.float32)
    smoothed = cv2.GaussianBlur(cv2.cvtColor(blank, cv2.COLOR_BGR2GRAY), (0, 0), 1.0).astype(np.float32)
    assert out.std() == pytest.approx(smoothed.std() * NORMALISE_MAX_GAIN, rel=0.05)  # gain capped
    assert out.std() < 15  # still blank, not noise stretched to the full grey range
