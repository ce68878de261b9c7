"""Cross-module refusal with a suggestion (edge.suggest): two real exported bundles with fitted input
checks (tests/group_bundles.py: an X-ray module and a shapes module), real images, ONNX Runtime."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from edge.bundle import load_bundle
from edge.classify import Classifier
from edge.suggest import Candidate, suggest_module
from tests.conftest import SHARED_DATA
from tests.group_bundles import build_group_bundles, held_out

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def groups(test_artifacts, tmp_path_factory):
    """{module id: Bundle}; built once into the test artefacts (the Python 3.6 run reuses them)."""
    root = os.path.join(test_artifacts.root, "groups")
    if not all(os.path.isfile(os.path.join(root, m, "manifest.json")) for m in ("xray-test", "shapes-test")):
        pytest.importorskip("torch", reason="building the group bundles needs torch")
        if not os.path.isdir(os.path.join(SHARED_DATA, "chest-nih")):
            pytest.skip("../shared/data/chest-nih is not beside this checkout")
        build_group_bundles(test_artifacts.root, SHARED_DATA)
    return {m: load_bundle(os.path.join(root, m)) for m in ("xray-test", "shapes-test")}


def _images(test_artifacts, module_id, count):
    return held_out(test_artifacts.root, SHARED_DATA, module_id, count)


class Counting(object):
    """A Candidate opener that opens the real classifier and counts how often it was asked."""

    def __init__(self, bundle):
        self.bundle, self.calls, self.opened = bundle, 0, []

    def __call__(self):
        self.calls += 1
        classifier = Classifier.open(self.bundle, backend="onnxruntime", precision="fp32").__enter__()
        self.opened.append(classifier)
        return classifier

    def close(self):
        for classifier in self.opened:
            classifier.__exit__(None, None, None)


def _accepts(classifier, image):
    score = float(classifier.runner.infer(classifier.preparer(1)(image).batch)["ood_score"][0])
    return score <= float(classifier.bundle.description.input_check["threshold"])


def test_a_refused_image_names_the_module_whose_check_accepts_it(groups, test_artifacts):
    from edge.preprocess import load_image

    opener = Counting(groups["shapes-test"])
    candidate = Candidate(groups["shapes-test"], opener)
    suggested = 0
    with Classifier.open(groups["xray-test"], backend="onnxruntime", precision="fp32") as xray:
        for path in _images(test_artifacts, "shapes-test", 12):
            image = load_image(path)
            prepared = xray.preparer(1)(image)
            prediction = xray.infer_prepared(prepared)
            found = suggest_module(prediction, image, xray.bundle, [candidate], prepared)
            expected = prediction.out_of_scope and _accepts(candidate.classifier(), image)
            assert found == ("shapes-test" if expected else None), path
            assert prediction.to_dict()["suggested_module"] == found
            suggested += bool(found)
    opener.close()
    assert suggested > 0 and opener.calls == 1  # opened once, on the first refusal
    data = prediction.to_dict() if found else None
    if data:
        assert data["suggested_module_title"] == "Shapes test module"
        assert "Shapes test module" in data["suggestion"]


def test_an_accepted_image_costs_no_other_inference(groups, test_artifacts):
    from edge.preprocess import load_image

    opener = Counting(groups["shapes-test"])
    with Classifier.open(groups["shapes-test"], backend="onnxruntime", precision="fp32") as shapes:
        candidates = [Candidate(groups["xray-test"], opener)]
        for path in _images(test_artifacts, "xray-test", 4):  # this backbone's shapes check keeps X-rays
            image = load_image(path)
            prediction = shapes.classify(image)
            assert not prediction.out_of_scope
            assert suggest_module(prediction, image, shapes.bundle, candidates) is None
            assert prediction.to_dict()["suggested_module"] is None
    assert opener.calls == 0


def test_a_module_without_an_input_check_is_never_suggested(groups, tiny_bundle, test_artifacts):
    from edge.preprocess import load_image

    opener = Counting(load_bundle(tiny_bundle))
    with Classifier.open(groups["xray-test"], backend="onnxruntime", precision="fp32") as xray:
        shapes = _images(test_artifacts, "shapes-test", 6)
        refused = [p for p in (xray.classify(load_image(path)) for path in shapes) if p.out_of_scope]
        assert refused
        for prediction in refused:
            assert suggest_module(prediction, None, xray.bundle, [Candidate(opener.bundle, opener)]) is None
    assert opener.calls == 0


def test_the_same_module_is_never_suggested_for_itself(groups, test_artifacts):
    from edge.preprocess import load_image

    opener = Counting(groups["xray-test"])
    with Classifier.open(groups["xray-test"], backend="onnxruntime", precision="fp32") as xray:
        image = load_image(_images(test_artifacts, "shapes-test", 1)[0])
        prediction = xray.classify(image)
        prediction.out_of_scope = True
        itself = [Candidate(groups["xray-test"], opener)]
        assert suggest_module(prediction, image, xray.bundle, itself) is None
    assert opener.calls == 0


def test_cli_json_carries_out_of_scope_and_the_suggested_module(groups, test_artifacts, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for module_id, bundle in groups.items():
        shutil.copytree(bundle.path, str(models / module_id))
    images = _images(test_artifacts, "shapes-test", 12)
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "edge", "classify", "--backend", "onnxruntime", "--bundle",
               str(models / "xray-test")]
    process = subprocess.Popen(command + ["--json"] + images, cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    document = json.loads(out.decode("utf-8"))
    entries = document["images"]
    assert all("suggested_module" in e for e in entries)
    assert any(e["out_of_scope"] and e["suggested_module"] == "shapes-test" for e in entries)
    assert all(e["suggested_module"] is None for e in entries if not e["out_of_scope"])
    # the text output names the module too
    process = subprocess.Popen(command + images, cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    assert "This looks like an image for Shapes test module - classify it with module 'shapes-test'" in \
        out.decode("utf-8"), err


def test_lan_service_json_carries_the_suggestion(groups, test_artifacts, tmp_path):
    """edge.serve's Service (the LAN service's classify path) on the same two modules."""
    pytest.importorskip("flask")
    from types import SimpleNamespace

    from edge.serve.service import Service

    models = tmp_path / "models"
    models.mkdir()
    for module_id, bundle in groups.items():
        shutil.copytree(bundle.path, str(models / module_id))
    settings = SimpleNamespace(models_dir=str(models), modules=["xray-test", "shapes-test"],
                               backend="onnxruntime", precision="fp32", engine_cache=None, quality=None,
                               cpu_threads=1, state_dir=str(tmp_path / "state"), max_upload_bytes=4 << 20,
                               max_pixels=4000000, min_free_mb=1)
    os.makedirs(settings.state_dir)
    service = Service(settings).open()
    try:
        bodies = []
        for path in _images(test_artifacts, "shapes-test", 8):
            with open(path, "rb") as handle:
                bodies.append(service.classify(handle.read(), "xray-test", "device-1"))
    finally:
        service.close()
    refused = [b["prediction"] for b in bodies if b["prediction"]["out_of_scope"]]
    assert refused and any(p["suggested_module"] == "shapes-test" for p in refused)
    assert all("suggested_module" in b["prediction"] for b in bodies)
    assert any(note.startswith("This looks like an image for Shapes test module") for b in bodies
               for note in b["notes"])
