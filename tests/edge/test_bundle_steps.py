"""edge.bundle step by step (mutation survivors, issue 18): the lab's view of a bundle it made
(``load_lab_bundle``: no signature check, no golden images, the model hash checked unless told not
to), on a copy of the real test bundle."""

import json
import os
import shutil

import pytest

from edge.bundle import load_bundle, load_lab_bundle
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
