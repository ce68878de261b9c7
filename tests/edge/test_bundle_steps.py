"""edge.bundle step by step (mutation survivors, issue 18): the lab's view of a bundle it made
(``load_lab_bundle``: no signature check, no golden images, the model hash checked unless told not
to), on a copy of the real test bundle."""

import json
import os
import shutil

import pytest

from edge.bundle import (
    RE_EXPORT,
    _check_calibration,
    _check_heatmap,
    chance_level_warnings,
    display_mode,
    load_bundle,
    load_lab_bundle,
    make_manifest,
)
from edge.description import InputSpec, ModelDescription
from edge.errors import BundleError
from edge.onnx_info import OnnxInfo


@pytest.fixture()
def lab_copy(tiny_bundle, tmp_path):
    """The test bundle as the export leaves it with --no-golden, before signing."""
    path = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, path)
    os.remove(os.path.join(path, "signature.json"))
    shutil.rmtree(os.path.join(path, "golden"))
    return path


def _set_hash(path, value):
    manifest_path = os.path.join(path, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest["model_sha256"] = value
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)


def test_the_lab_loads_its_unsigned_bundle_without_golden_images(lab_copy):
    bundle = load_lab_bundle(lab_copy)
    assert bundle.signer is None
    assert bundle.signature_problem == "not checked (a lab tool reading a bundle it made)"
    with pytest.raises(BundleError, match="golden/expected.json"):
        load_bundle(lab_copy)  # a unit needs them


def test_the_lab_checks_the_model_hash_unless_told_not_to(lab_copy):
    _set_hash(lab_copy, "0" * 64)
    with pytest.raises(BundleError) as caught:
        load_lab_bundle(lab_copy)
    text = str(caught.value)
    assert "model_sha256" in text and "but the manifest expects 000000000000" in text
    assert load_lab_bundle(lab_copy, check_hash=False).manifest["model_sha256"] == "0" * 64


@pytest.mark.parametrize("text", ["[1, 2]", '{"samples": {"file": "a.png"}}', '{"samples": [1]}'])
def test_golden_expected_without_a_list_of_samples_is_refused(tiny_bundle, tmp_path, text):
    path = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, path)
    bundle = load_lab_bundle(path)
    with open(os.path.join(path, "golden", "expected.json"), "w") as handle:
        handle.write(text)
    with pytest.raises(BundleError) as caught:
        bundle.golden_samples()
    assert str(caught.value) == "bundle {}: golden/expected.json: has no list of samples. Fix: {}".format(
        path, RE_EXPORT)


def test_golden_expected_that_is_not_json_names_the_file(tiny_bundle, tmp_path):
    path = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, path)
    bundle = load_lab_bundle(path)
    with open(os.path.join(path, "golden", "expected.json"), "w") as handle:
        handle.write("{")
    with pytest.raises(BundleError) as caught:
        bundle.golden_samples()
    assert str(caught.value).startswith("bundle {}: golden/expected.json: is not valid JSON (".format(path))


def test_a_signed_bundle_records_its_signer(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert isinstance(bundle.signer, str) and bundle.signer and bundle.signature_problem is None


def _heatmap_case(section, outputs=None, input_check=None):
    """``_check_heatmap`` on its own: an OnnxInfo as parse_onnx builds it (a model with a heatmap output
    comes only from the torch export, tested in tests/export/test_export_heatmap.py)."""
    description = ModelDescription("tiny", "multiclass", ["a", "b", "c"], InputSpec(16, 16),
                                   input_check=input_check)
    default = [{"name": "probabilities", "shape": [1, 3]}, {"name": "cam", "shape": [1, 3, 4, 5]},
               {"name": "ood_score", "shape": [1]}]
    info = OnnxInfo([{"name": "input", "shape": [1, 3, 16, 16]}], outputs or default, 17, {}, "test")
    return _check_heatmap("B", section, description, info)


GOOD = {"method": "cam", "shape": [3, 4, 5], "output": "cam"}


def test_a_heatmap_section_that_matches_is_accepted():
    assert _heatmap_case(None) is None and _heatmap_case(dict(GOOD)) is None
    one = [{"name": "probabilities", "shape": [1, 3]}, {"name": "cam", "shape": [1, 3, 1, 1]}]
    assert _heatmap_case(dict(GOOD, shape=[3, 1, 1]), one) is None  # one cell per map is a size
    assert _heatmap_case(dict(GOOD), [{"name": "probabilities", "shape": [1, 3]},
                                      {"name": "cam", "shape": ["N", 3, 4, 5]}]) is None  # symbolic batch


@pytest.mark.parametrize("change, field, problem", [
    ({"shape": None}, "heatmap.shape", "must be [classes, height, width], got None"),
    ({"shape": [3, 4]}, "heatmap.shape", "must be [classes, height, width], got [3, 4]"),
    ({"shape": [3, 4, 0]}, "heatmap.shape", "must be [classes, height, width], got [3, 4, 0]"),
    ({"shape": [3, True, 5]}, "heatmap.shape", "must be [classes, height, width], got [3, True, 5]"),
    ({"shape": [3, 4.0, 5]}, "heatmap.shape", "must be [classes, height, width], got [3, 4.0, 5]"),
    ({"shape": [2, 4, 5]}, "heatmap.shape", "has 2 maps for 3 classes"),
    ({"method": "gradcam"}, "heatmap.method", "must be one of cam, got 'gradcam'"),
    ({"method": None}, "heatmap.method", "must be one of cam, got None"),
    ({"output": "nope"}, "heatmap.output",
     "model.onnx has no separate output 'nope' (has ['cam', 'ood_score', 'probabilities'])"),
    ({"output": "probabilities"}, "heatmap.output",
     "model.onnx has no separate output 'probabilities' (has ['cam', 'ood_score', 'probabilities'])"),
    ({"shape": [3, 4, 6]}, "heatmap.shape", "manifest says [3, 4, 6] but model.onnx outputs [1, 3, 4, 5]"),
    ({"shape": [3, 5, 5]}, "heatmap.shape", "manifest says [3, 5, 5] but model.onnx outputs [1, 3, 4, 5]"),
])
def test_heatmap_section_refusals(change, field, problem):
    section = dict(GOOD, **change)
    with pytest.raises(BundleError) as caught:
        _heatmap_case(section)
    assert str(caught.value) == "bundle B: {}: {}. Fix: {}".format(field, problem, RE_EXPORT)


def test_heatmap_output_must_not_be_the_input_check_and_must_be_four_dimensional():
    check = {"output": "ood_score", "threshold": 0.5, "method": "mahalanobis", "message": "m"}
    with pytest.raises(BundleError, match=r"heatmap.output: model.onnx has no separate output 'ood_score'"):
        _heatmap_case(dict(GOOD, output="ood_score", shape=[3, 4, 5]), input_check=check)
    flat = [{"name": "probabilities", "shape": [1, 3]}, {"name": "cam", "shape": [1, 3, 20]}]
    with pytest.raises(BundleError, match=r"manifest says \[3, 4, 5\] but model.onnx outputs \[1, 3, 20\]"):
        _heatmap_case(dict(GOOD), flat)
    with pytest.raises(BundleError, match="must be \\[classes, height, width\\], got None"):
        _heatmap_case(["not", "an", "object"])


def _metrics_manifest(metrics=None, calibration=None):
    description = ModelDescription("tiny", "multiclass", ["a", "b", "c", "d"], InputSpec(16, 16))
    manifest = make_manifest(description, "unit", "Unit", "0" * 64, training={"data": {}, "metrics": metrics})
    if calibration is not None:
        manifest["calibration"] = calibration
    return manifest


@pytest.mark.parametrize("metrics, calibration, want", [
    ({}, {"ece_cv": 0.01, "display": "words"},
     ("words", "the manifest asks for words (cross-validated ECE 0.01)")),
    ({}, {"ece_cv": 0.06, "display": "percent"}, ("words", "cross-validated ECE 0.060 > 0.05")),
    ({}, {"ece_cv": 0.04, "display": "percent"}, ("percent", "cross-validated ECE 0.040 <= 0.05")),
    ({}, None, ("words", "no ECE recorded: calibration unknown")),
    ([1], None, ("words", "no ECE recorded: calibration unknown")),
    ({"test": {"ece": 0.07}}, None, ("words", "test ECE 0.070 > 0.05")),
    ({"calibration": {"ece_after": 0.02}}, None,
     ("percent", "validation ECE after temperature 0.020 <= 0.05")),
])
def test_display_mode_reasons_word_for_word(metrics, calibration, want):
    assert display_mode(_metrics_manifest(metrics, calibration)) == want


def test_calibration_that_is_not_an_object_is_refused_word_for_word():
    with pytest.raises(BundleError) as caught:
        _check_calibration("B", ["ece_cv", 0.01])
    assert str(caught.value) == "bundle B: calibration: must be an object. Fix: {}".format(RE_EXPORT)


def test_chance_level_lines_word_for_word():
    test = {"accuracy": 0.3, "accuracy_ci95": [0.2, 0.4], "macro_auroc": 0.45,
            "per_class": {"b": {"auroc": 0.3}, "a": {"auroc": 0.8, "auroc_ci95": [0.4, 0.5]}}}
    assert chance_level_warnings(_metrics_manifest({"test": test}), 4) == [
        "test accuracy's 95% CI reaches chance (20.0% <= 1/4)", "macro AUROC 0.450 <= 0.5 (chance)",
        "a AUROC 95% CI [0.400, 0.500] includes 0.5 (chance)", "b AUROC 0.300 <= 0.5 (chance)"]
    assert chance_level_warnings(_metrics_manifest({"test": {"accuracy": 0.9}}), 1) == [
        "test accuracy 90.0% <= chance 1/1 = 100.0%"]


def test_golden_file_paths_stay_in_the_bundle(tiny_bundle, tmp_path):
    path = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, path)
    bundle = load_lab_bundle(path)
    expected = os.path.join(path, "golden", "expected.json")
    with open(expected) as handle:
        data = json.load(handle)
    data["samples"] = data["samples"][:1]
    data["samples"][0]["file"] = "../model_card.md"  # golden/../model_card.md: inside the bundle
    with open(expected, "w") as handle:
        json.dump(data, handle)
    assert bundle.golden_samples()[0].path == os.path.join(path, "golden", "../model_card.md")
    data["samples"][0]["file"] = "../../x.png"
    with open(expected, "w") as handle:
        json.dump(data, handle)
    with pytest.raises(BundleError) as caught:
        bundle.golden_samples()
    assert str(caught.value) == ("bundle {}: golden/expected.json: file: 'golden/../../x.png' points outside "
                                 "the bundle folder. Fix: {}".format(path, RE_EXPORT))


def _edit_manifest(path, **changes):
    manifest_path = os.path.join(path, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest.update(changes)
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)


def test_load_bundle_refusals_word_for_word(lab_copy):
    with pytest.raises(BundleError) as caught:
        load_bundle(lab_copy)
    assert str(caught.value) == (
        "bundle {}: golden/expected.json: missing: without golden images the model cannot be checked on "
        "this unit. Fix: re-export it with golden images (medkiosk export onnx CHECKPOINT --out DIR)".format(
            lab_copy))
    _edit_manifest(lab_copy, heatmap={"method": "cam", "shape": [4, 2, 2], "output": "cam"})
    with pytest.raises(BundleError) as caught:
        load_lab_bundle(lab_copy)
    assert str(caught.value).startswith("bundle {}: heatmap.output: model.onnx has no separate output "
                                        "'cam'".format(lab_copy))
    for bad in ("", 7):
        _edit_manifest(lab_copy, model_file=bad, heatmap=None)
        with pytest.raises(BundleError) as caught:
            load_lab_bundle(lab_copy)
        assert str(caught.value) == "bundle {}: model_file: must be a file name. Fix: {}".format(
            lab_copy, RE_EXPORT)


@pytest.mark.parametrize("section", [
    {"ece_cv": 0.0, "display": "percent"}, {"ece_cv": 1.0, "display": "words"},
    {"ece_cv": 0, "display": "words"},
    {"ece_cv": 0.1, "ece_cv_ci95": [0.05, 0.05], "display": "words"},
    {"ece_cv": 0.1, "ece_cv_ci95": [0, 1], "display": "words"}])
def test_calibration_sections_at_their_bounds_are_accepted(section):
    assert _check_calibration("B", section) is None


@pytest.mark.parametrize("section, field, problem", [
    ({"ece_cv": -0.01, "display": "words"}, "calibration.ece_cv", "must be a number in [0, 1], got -0.01"),
    ({"ece_cv": 1.01, "display": "words"}, "calibration.ece_cv", "must be a number in [0, 1], got 1.01"),
    ({"ece_cv": True, "display": "words"}, "calibration.ece_cv", "must be a number in [0, 1], got True"),
    ({"display": "words"}, "calibration.ece_cv", "must be a number in [0, 1], got None"),
    ({"ece_cv": 0.1, "ece_cv_ci95": [0.2, 0.1], "display": "words"}, "calibration.ece_cv_ci95",
     "must be [low, high], got [0.2, 0.1]"),
    ({"ece_cv": 0.1, "ece_cv_ci95": [0.1], "display": "words"}, "calibration.ece_cv_ci95",
     "must be [low, high], got [0.1]"),
    ({"ece_cv": 0.1, "ece_cv_ci95": [0.1, "x"], "display": "words"}, "calibration.ece_cv_ci95",
     "must be [low, high], got [0.1, 'x']"),
    ({"ece_cv": 0.1, "ece_cv_ci95": (0.1, 0.2), "display": "words"}, "calibration.ece_cv_ci95",
     "must be [low, high], got (0.1, 0.2)"),
    ({"ece_cv": 0.1, "display": "bars"}, "calibration.display", "must be one of percent, words, got 'bars'"),
    ({"ece_cv": 0.1}, "calibration.display", "must be one of percent, words, got None"),
])
def test_calibration_refusals_word_for_word(section, field, problem):
    with pytest.raises(BundleError) as caught:
        _check_calibration("B", section)
    assert str(caught.value) == "bundle B: {}: {}. Fix: {}".format(field, problem, RE_EXPORT)
