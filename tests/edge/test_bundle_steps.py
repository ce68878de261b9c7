"""edge.bundle step by step (mutation survivors, issue 18): the lab's view of a bundle it made
(``load_lab_bundle``: no signature check, no golden images, the model hash checked unless told not
to), on a copy of the real test bundle."""

import json
import os
import shutil

import pytest

from edge.bundle import RE_EXPORT, load_bundle, load_lab_bundle
from edge.errors import BundleError


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
