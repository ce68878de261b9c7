"""Per-bundle blur threshold: measured on the validation images at export, applied by the classifier."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.errors import BundleError
from edge.quality import QualityThresholds, assess_quality, calibrate_blur_threshold, sharpness
from tests.make_test_bundle import resign


def _with_quality(bundle_dir, tmp_path, quality):
    copy = str(tmp_path / "bundle")
    shutil.copytree(bundle_dir, copy)
    path = os.path.join(copy, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    manifest["quality"] = quality
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return resign(copy)


def test_export_stores_a_blur_threshold_measured_on_validation_images(tiny_bundle):
    quality = load_bundle(tiny_bundle).manifest["quality"]
    assert quality["images"] >= 10
    assert 0 < quality["blur_threshold"] == pytest.approx(0.5 * quality["sharpness_percentile_1"], rel=1e-3)


def test_calibration_is_half_the_first_percentile():
    rng = np.random.RandomState(0)
    images = [np.clip(rng.normal(128, s, (64, 64, 3)), 0, 255).astype(np.uint8) for s in (5, 10, 20, 40)]
    result = calibrate_blur_threshold(images)
    assert result["blur_threshold"] == pytest.approx(0.5 * min(sharpness(i) for i in images), rel=1e-3)
    assert calibrate_blur_threshold([]) is None


def test_bundle_threshold_only_ever_lowers_the_configured_one(tiny_bundle, tmp_path):
    bundle = load_bundle(_with_quality(tiny_bundle, tmp_path, {"blur_threshold": 12.5}))
    assert QualityThresholds(blur_threshold=60).for_bundle(bundle).blur_threshold == 12.5
    assert QualityThresholds(blur_threshold=5).for_bundle(bundle).blur_threshold == 5


def test_invalid_quality_section_is_a_bundle_error(tiny_bundle, tmp_path):
    with pytest.raises(BundleError) as error:
        load_bundle(_with_quality(tiny_bundle, tmp_path, {"blur_threshold": "sharp"}))
    assert "quality.blur_threshold" in str(error.value)


@pytest.mark.onnxruntime
def test_real_xray_flagged_by_the_camera_default_passes_a_calibrated_bundle(real_xray, tiny_bundle, tmp_path):
    # A real NIH X-ray, shown the way a 640 px camera frame would carry it: smooth, yet not blurred.
    image = cv2.resize(cv2.imread(real_xray), (640, 640), interpolation=cv2.INTER_LINEAR)
    measured = sharpness(image)
    assert not assess_quality(image, QualityThresholds(blur_threshold=measured * 2)).ok
    bundle_dir = _with_quality(tiny_bundle, tmp_path, {"blur_threshold": measured / 2})
    with Classifier.open(load_bundle(bundle_dir), backend="onnxruntime",
                         quality_thresholds=QualityThresholds(blur_threshold=measured * 2)) as classifier:
        assert classifier.classify(image).quality.ok
        blurred = cv2.GaussianBlur(image, (0, 0), 6)
        assert [name for name, _ in classifier.classify(blurred).quality.problems] == ["blurry"]


@pytest.mark.parametrize("module", ["chest", "pediatric-pneumonia"])
def test_shipped_bundles_calibrate_the_blur_gate_on_their_whole_validation_split(module):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "models", module)
    if not os.path.isdir(path):
        pytest.skip("models/{} is not in this checkout".format(module))
    bundle = load_bundle(path)
    quality = bundle.manifest["quality"]
    assert quality["images"] >= 50
    thresholds = QualityThresholds().for_bundle(bundle)
    assert thresholds.blur_threshold == quality["blur_threshold"] < QualityThresholds().blur_threshold
    for sample in bundle.golden_samples():
        assert assess_quality(cv2.imread(sample.path), thresholds).ok, sample.path
