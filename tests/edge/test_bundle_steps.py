"""edge.bundle step by step (mutation survivors, issue 18): the lab's view of a bundle it made
(``load_lab_bundle``: no signature check, no golden images, the model hash checked unless told not
to), on a copy of the real test bundle."""

import json
import os
import shutil

import pytest

from edge.bundle import RE_EXPORT, _check_heatmap, load_bundle, load_lab_bundle
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
