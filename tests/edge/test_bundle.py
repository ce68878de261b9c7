"""Bundle validation on a real exported bundle and tampered copies of it, and `bundle verify`.

The tiny bundle is signed with the session's test key (tests/conftest.py); tests that change a
bundle on purpose to reach a later check re-sign it with that key, as a maintainer would.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from edge.bundle import load_bundle, sha256_file, write_json_atomic
from edge.errors import BundleError
from edge.signing import SIGNING_KEY_ENV, sign_bundle
from edge.verify import FAIL, PASS, compare_golden, verify_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def copy(tiny_bundle, tmp_path):
    target = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, target)
    return target


def _edit_manifest(path, change, resign=True):
    manifest_path = os.path.join(path, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    change(manifest)
    write_json_atomic(manifest_path, manifest)
    if resign:
        sign_bundle(path, os.environ[SIGNING_KEY_ENV])


def _field(path, check_hash=True):
    with pytest.raises(BundleError) as info:
        load_bundle(path, check_hash=check_hash)
    return info.value


def test_valid_bundle_loads(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.description.num_classes == 4
    assert bundle.bundle_id.startswith(bundle.module_id + "@")
    assert len(bundle.golden_samples()) >= 1


def test_unknown_schema_version(copy):
    _edit_manifest(copy, lambda m: m.update(schema_version=99))
    error = _field(copy)
    assert error.field == "schema_version" and "99" in error.problem
    assert "update medkiosk" in error.fix


def test_missing_field(copy):
    _edit_manifest(copy, lambda m: m.pop("model_sha256"))
    assert _field(copy).field == "model_sha256"


def test_missing_model_description_field(copy):
    _edit_manifest(copy, lambda m: m["model"].pop("temperature"))
    assert _field(copy).field == "model.temperature"


def _flip_byte(model):
    with open(model, "r+b") as handle:
        handle.seek(os.path.getsize(model) // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_sha_mismatch(copy):
    model = os.path.join(copy, "model.onnx")
    _flip_byte(model)
    error = _field(copy)
    assert error.field == "model_sha256" and "tampered or truncated" in error.problem
    # The manifest's sha256 updated to match: the signature still tells.
    _edit_manifest(copy, lambda m: m.update(model_sha256=sha256_file(model)), resign=False)
    error = _field(copy)
    assert error.field == "manifest.json" and "differs from the signed file" in error.problem


def test_truncated_model(copy):
    model = os.path.join(copy, "model.onnx")
    with open(model, "r+b") as handle:
        handle.truncate(os.path.getsize(model) // 3)
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    assert _field(copy).field == "model_sha256"
    # Even when the hash check is skipped, a cut-off file is not read as a model.
    _edit_manifest(copy, lambda m: m.update(model_sha256=sha256_file(model)))
    assert _field(copy).field == "model.onnx"


def test_class_count_differs_from_onnx_output(copy):
    def add_class(manifest):
        manifest["model"]["classes"].append("extra")
        manifest["model"]["display_names"].append("Extra")
    _edit_manifest(copy, add_class)
    error = _field(copy)
    assert error.field == "model.classes" and "5 classes" in error.problem


def test_input_size_differs_from_onnx_input(copy):
    _edit_manifest(copy, lambda m: m["model"]["input"].update(height=32, width=32))
    error = _field(copy)
    assert error.field == "model.input" and "32x32" in error.problem


def test_input_name_differs_from_onnx_input(copy):
    _edit_manifest(copy, lambda m: m["model"]["input"].update(name="pixels"))
    assert _field(copy).field == "model.input.name"


def test_missing_model_card_and_bad_json(copy):
    os.remove(os.path.join(copy, "model_card.md"))
    assert _field(copy).field == "model_card.md"  # the signature lists it
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    assert _field(copy).field == "model_card.md"  # and the loader needs it
    with open(os.path.join(copy, "manifest.json"), "w") as handle:
        handle.write("{not json")
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    assert _field(copy).field == "manifest.json"


@pytest.mark.onnxruntime
def test_verify_passes_golden_images(tiny_bundle):
    bundle, checks = verify_bundle(tiny_bundle, backend="onnxruntime", precision="fp32")
    assert bundle is not None
    golden = [c for c in checks if c.name.startswith("golden ")]
    assert golden and all(c.status == PASS for c in golden)
    assert not any(c.failed for c in checks)


@pytest.mark.onnxruntime
def test_verify_fails_on_changed_expectations(copy):
    expected_path = os.path.join(copy, "golden", "expected.json")
    with open(expected_path) as handle:
        expected = json.load(handle)
    probs = expected["samples"][0]["probabilities"]
    probs[0], probs[1] = probs[0] + 0.05, probs[1] - 0.05
    os.remove(os.path.join(copy, "golden", expected["samples"][-1]["file"]))
    write_json_atomic(expected_path, expected)
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    _bundle, checks = verify_bundle(copy, backend="onnxruntime", precision="fp32")
    failed = [c for c in checks if c.failed]
    assert len(failed) == 2
    assert "max |diff| 0.05" in failed[0].detail
    assert "no such file" in failed[1].detail


def test_compare_golden_tolerates_near_ties_only():
    from edge.bundle import GoldenSample

    sample = GoldenSample("x.png", [0.5004, 0.4996], "a", 1e-3)
    assert compare_golden(sample, [0.4999, 0.5001], ["a", "b"])[0].status == PASS  # swap inside tolerance
    sample = GoldenSample("x.png", [0.9, 0.1], "a", 1e-3)
    check, diff = compare_golden(sample, [0.2, 0.8], ["a", "b"])
    assert check.status == FAIL and "top-1 b but expected a" in check.detail
    assert diff == pytest.approx(0.7)


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "edge"] + list(args), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


@pytest.mark.onnxruntime
def test_bundle_verify_cli(tiny_bundle, copy, tmp_path):
    _edit_manifest(copy, lambda m: m.update(schema_version=2))
    process = _cli("bundle", "verify", tiny_bundle, copy, str(tmp_path / "missing"),
                   "--backend", "onnxruntime", "--precision", "fp32")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "PASS: {}".format(tiny_bundle) in out
    assert "FAIL: {}".format(copy) in out and "schema_version: is 2" in out, out
    assert "FAIL: {}".format(tmp_path / "missing") in out
    assert "1 of 3 bundles passed" in out
    assert "Traceback" not in err


@pytest.mark.onnxruntime
def test_bundle_verify_cli_json(tiny_bundle):
    process = _cli("bundle", "verify", tiny_bundle, "--json",
                   "--backend", "onnxruntime", "--precision", "fp32")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert {c["status"] for c in report["bundles"][0]["checks"]} == {PASS}


def test_manifest_over_the_size_limit(copy):
    from edge.bundle import MAX_MANIFEST_BYTES

    _edit_manifest(copy, lambda m: m.update(padding="x" * MAX_MANIFEST_BYTES))
    error = _field(copy)
    assert error.field == "manifest.json" and "byte limit" in error.problem


def test_deeply_nested_manifest_is_one_error_not_a_recursion_error(copy):
    with open(os.path.join(copy, "manifest.json"), "w") as handle:
        handle.write("[" * 200000 + "]" * 200000)
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    error = _field(copy)
    assert error.field == "manifest.json" and "nested too deeply" in error.problem


def test_model_file_must_stay_inside_the_bundle(copy, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(os.path.join(copy, "model.onnx"), str(outside / "model.onnx"))
    for escape in ("../elsewhere/model.onnx", str(outside / "model.onnx"), "."):
        _edit_manifest(copy, lambda m, e=escape: m.update(model_file=e))
        error = _field(copy)
        assert error.field == "model_file" and "outside the bundle folder" in error.problem, escape


def test_golden_images_are_required(copy):
    shutil.rmtree(os.path.join(copy, "golden"))
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    error = _field(copy)
    assert error.field == "golden/expected.json" and "missing" in error.problem
    assert load_bundle(copy, require_golden=False).golden_samples() == []  # the lab's --no-golden export


def test_golden_file_must_stay_inside_golden(copy):
    expected_path = os.path.join(copy, "golden", "expected.json")
    with open(expected_path) as handle:
        expected = json.load(handle)
    expected["samples"][0]["file"] = "../../model.onnx"
    write_json_atomic(expected_path, expected)
    sign_bundle(copy, os.environ[SIGNING_KEY_ENV])
    with pytest.raises(BundleError) as info:
        load_bundle(copy).golden_samples()
    assert "outside the bundle folder" in str(info.value)


@pytest.mark.onnxruntime
def test_bundle_verify_reports_a_duplicate_module_id(tiny_bundle, copy):
    process = _cli("bundle", "verify", tiny_bundle, copy, "--backend", "onnxruntime", "--precision", "fp32")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert "PASS: {}".format(copy) in out
    assert "[FAIL] module id synth-test: claimed by 2 bundles" in out
