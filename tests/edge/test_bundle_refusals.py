"""Every refusal of ``load_bundle``, on real bundle folders with real ONNX files (issue 18).

Each refused bundle is a valid one (``_write_bundle``; the first test loads it) with one thing
changed, so each test proves its own refusal and no other. The ONNX files are real protobufs
written by the ``onnx`` package (main venv; the Python 3.6 runs skip, they have no ``onnx``).
"""

import hashlib
import json
import os

import pytest

from edge import __version__
from edge.bundle import (
    MODEL_CARD,
    RE_EXPORT,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    load_bundle,
    make_manifest,
    sha256_file,
    write_json_atomic,
)
from edge.description import InputSpec, ModelDescription
from edge.errors import BundleError
from tests.make_test_bundle import resign

CLASSES = ("a", "b", "c", "d")
CHECK = {"output": "ood_score", "threshold": 0.7, "method": "mahalanobis", "message": "not a chest X-ray"}
FLOAT, UINT8 = 1, 2  # onnx.TensorProto element types
IMAGE = ("image", FLOAT, ["N", 3, 16, 16])
PROBS = ("probabilities", FLOAT, ["N", 4])
OOD = ("ood_score", FLOAT, ["N"])


def _write_bundle(folder, inputs=(IMAGE,), outputs=(PROBS,), input_check=None, change=None):
    """A bundle folder whose model.onnx declares ``inputs``/``outputs`` [(name, elem type, shape)]."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    graph = helper.make_graph(
        [], "refusals", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folder = str(folder)
    os.makedirs(folder)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    description = ModelDescription("tiny", "multiclass", list(CLASSES), InputSpec(16, 16),
                                   input_check=input_check)
    sha = sha256_file(os.path.join(folder, "model.onnx"))
    manifest = make_manifest(description, "unit", "Unit test", sha)
    if change:
        change(manifest)
    write_json_atomic(os.path.join(folder, "manifest.json"), manifest)
    with open(os.path.join(folder, MODEL_CARD), "w") as handle:
        handle.write("# Unit test model\n")
    _golden(folder, {"samples": []})  # a unit needs golden/expected.json; this graph has no nodes to run
    return folder


def _refusal(folder, check_hash=True):
    with pytest.raises(BundleError) as info:
        if check_hash:
            load_bundle(folder)  # the hash is checked by default
        else:
            load_bundle(folder, check_hash=False)
    error = info.value
    assert error.bundle == str(folder)
    assert str(error) == "bundle {}: {}: {}. Fix: {}".format(folder, error.field, error.problem, error.fix)
    return error


def test_the_helper_bundle_is_valid_and_its_properties_read_the_manifest(tmp_path):
    folder = _write_bundle(tmp_path / "ok")
    bundle = load_bundle(folder)
    sha = sha256_file(os.path.join(folder, "model.onnx"))
    assert (bundle.module_id, bundle.title, bundle.version) == ("unit", "Unit test", "1.0.0")
    assert bundle.sha256 == sha
    assert bundle.bundle_id == "unit@1.0.0+" + sha[:12]
    assert bundle.model_path == os.path.join(folder, "model.onnx")
    assert (bundle.input_name, bundle.output_name) == ("image", "probabilities")
    assert bundle.golden_samples() == []
    assert repr(bundle) == "Bundle({!r}, {})".format(folder, bundle.bundle_id)
    assert bundle.manifest["producer"] == "medkiosk " + __version__
    assert bundle.manifest["onnx"] == {"opset": None, "input": "image", "output": "probabilities"}
    assert bundle.manifest["training"] == {"data": {}, "metrics": {}}
    assert bundle.manifest["schema_version"] == SCHEMA_VERSION == 1


def test_fixed_batch_of_one_and_symbolic_sizes_are_accepted(tmp_path):
    assert load_bundle(_write_bundle(tmp_path / "one", inputs=[("image", FLOAT, [1, 3, 16, 16])]))
    assert load_bundle(_write_bundle(tmp_path / "sym", inputs=[("image", FLOAT, ["N", 3, "H", "W"])]))


@pytest.mark.parametrize("inputs, outputs, field, problem", [
    ([IMAGE, ("mask", FLOAT, ["N", 1, 16, 16])], [PROBS], "model.onnx inputs",
     "the model has 2 inputs, expected 1"),
    ([("pixels", FLOAT, ["N", 3, 16, 16])], [PROBS], "model.input.name",
     "manifest says 'image' but model.onnx has 'pixels'"),
    ([("image", UINT8, ["N", 3, 16, 16])], [PROBS], "model.input.dtype",
     "manifest says float32 but model.onnx takes uint8"),
    ([("image", FLOAT, ["N", 1, 16, 16])], [PROBS], "model.input",
     "manifest says RGB float32 NCHW 16x16 but model.onnx takes ['N', 1, 16, 16]"),
    ([("image", FLOAT, ["N", 3, 16, 32])], [PROBS], "model.input",
     "manifest says RGB float32 NCHW 16x16 but model.onnx takes ['N', 3, 16, 32]"),
    ([("image", FLOAT, ["N", 3, 32, 16])], [PROBS], "model.input",
     "manifest says RGB float32 NCHW 16x16 but model.onnx takes ['N', 3, 32, 16]"),
    ([("image", FLOAT, [3, 16, 16])], [PROBS], "model.input",
     "manifest says RGB float32 NCHW 16x16 but model.onnx takes [3, 16, 16]"),
    ([("image", FLOAT, [0, 3, 16, 16])], [PROBS], "model.input", "batch dimension 0 is invalid"),
    ([IMAGE], [("logits", FLOAT, ["N", 4])], "model.output_name",
     "manifest says 'probabilities' but model.onnx has 'logits'"),
    ([IMAGE], [("probabilities", FLOAT, ["N", 3])], "model.classes",
     "manifest lists 4 classes but model.onnx outputs ['N', 3]"),
    ([IMAGE], [("probabilities", FLOAT, [])], "model.classes",
     "manifest lists 4 classes but model.onnx outputs []"),
])
def test_model_that_does_not_match_the_manifest_is_refused(tmp_path, inputs, outputs, field, problem):
    error = _refusal(_write_bundle(tmp_path / "b", inputs=inputs, outputs=outputs))
    assert (error.field, error.problem, error.fix) == (field, problem, RE_EXPORT)


def test_model_without_outputs_is_refused_as_unreadable(tmp_path):
    # parse_onnx refuses a graph without outputs before _check_onnx_matches sees it.
    error = _refusal(_write_bundle(tmp_path / "b", outputs=[]))
    assert error.field == "model.onnx"
    assert error.problem == "is not a readable ONNX model (the graph has no inputs or no outputs)"


def test_input_check_without_an_ood_score_output_is_refused(tmp_path):
    """Otherwise out-of-scope would silently never trigger."""
    error = _refusal(_write_bundle(tmp_path / "b", input_check=CHECK))
    assert error.field == "model.input_check.output"
    assert error.problem == "model.onnx has no output 'ood_score'"
    assert error.fix == RE_EXPORT
    assert load_bundle(_write_bundle(tmp_path / "ok", outputs=[PROBS, OOD], input_check=CHECK))


def test_ood_score_as_first_output_is_refused_by_name(tmp_path):
    error = _refusal(_write_bundle(tmp_path / "b", outputs=[OOD, PROBS], input_check=CHECK))
    assert error.field == "model.output_name"


def test_missing_folder_manifest_model_and_card(tmp_path):
    error = _refusal(str(tmp_path / "nowhere"))
    assert (error.field, error.problem) == ("folder", "does not exist or is not a folder")
    assert error.fix == "pass the bundle folder (it holds manifest.json and model.onnx)"

    folder = _write_bundle(tmp_path / "no-model")
    os.unlink(os.path.join(folder, "model.onnx"))
    error = _refusal(folder)
    assert (error.field, error.problem, error.fix) == ("model.onnx", "missing",
                                                       "copy the complete bundle folder again")

    folder = _write_bundle(tmp_path / "no-card")
    os.unlink(os.path.join(folder, MODEL_CARD))
    error = _refusal(folder)
    assert (error.field, error.problem) == (MODEL_CARD, "missing")
    assert error.fix == "copy the complete bundle folder again, or " + RE_EXPORT

    folder = _write_bundle(tmp_path / "no-manifest")
    os.unlink(os.path.join(folder, "manifest.json"))
    error = _refusal(folder)
    assert (error.field, error.problem, error.fix) == ("manifest.json", "missing", RE_EXPORT)


def test_model_file_named_by_the_manifest_is_the_one_checked(tmp_path):
    folder = _write_bundle(tmp_path / "b", change=lambda m: m.update(model_file="net.onnx"))
    error = _refusal(folder)
    assert (error.field, error.problem) == ("net.onnx", "missing")
    os.rename(os.path.join(folder, "model.onnx"), os.path.join(folder, "net.onnx"))
    resign(folder)
    assert load_bundle(folder).model_path == os.path.join(folder, "net.onnx")


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not valid JSON ("),
    ("[1, 2]", "is not a JSON object"),
])
def test_invalid_manifest(tmp_path, text, problem):
    folder = _write_bundle(tmp_path / "b")
    with open(os.path.join(folder, "manifest.json"), "w") as handle:
        handle.write(text)
    error = _refusal(folder)
    assert error.field == "manifest.json" and error.problem.startswith(problem)
    if "JSON (" in error.problem:
        assert "line 1 column 2" in error.problem  # json's own message, with where it stopped
    assert error.fix == RE_EXPORT


def test_dangling_manifest_link_is_missing(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    manifest = os.path.join(folder, "manifest.json")
    os.rename(manifest, manifest + ".real")
    os.symlink(os.path.join(folder, "manifest.json.real", "inside-a-file"), manifest)
    error = _refusal(folder)
    assert error.field == "manifest.json"
    # A dangling link is not a file: refused before it is read.
    assert error.problem == "missing"


@pytest.mark.parametrize("field", REQUIRED_FIELDS[1:])
def test_each_required_field(tmp_path, field):
    error = _refusal(_write_bundle(tmp_path / "b", change=lambda m: m.pop(field)))
    assert (error.field, error.problem, error.fix) == (field, "missing from manifest.json", RE_EXPORT)


def test_schema_version_names_both_versions(tmp_path):
    error = _refusal(_write_bundle(tmp_path / "b", change=lambda m: m.pop("schema_version")))
    assert error.field == "schema_version"
    assert error.problem == "is None; this medkiosk {} reads schema 1 or 2".format(__version__)
    assert error.fix == "update medkiosk on this device, or re-export the bundle with this medkiosk version"
    error = _refusal(_write_bundle(tmp_path / "c", change=lambda m: m.update(schema_version=3)))
    assert error.problem == "is 3; this medkiosk {} reads schema 1 or 2".format(__version__)


def _with_contrast(manifest, mode="equalize"):
    manifest["model"]["input"]["contrast"] = mode


def test_a_contrast_normalised_bundle_is_schema_2_so_older_kiosks_refuse_it(tmp_path):
    """An older medkiosk reads only schema 1: a bundle whose input needs a contrast normalisation it
    does not know is refused there, never fed un-normalised pixels."""
    description = ModelDescription("tiny", "multiclass", list(CLASSES), InputSpec(16, 16, contrast="clahe"))
    assert make_manifest(description, "unit", "Unit", "0" * 64)["schema_version"] == 2
    plain = ModelDescription("tiny", "multiclass", list(CLASSES), InputSpec(16, 16))
    assert make_manifest(plain, "unit", "Unit", "0" * 64)["schema_version"] == 1
    bundle = load_bundle(_write_bundle(tmp_path / "ok", change=lambda m: (_with_contrast(m),
                                                                          m.update(schema_version=2))))
    assert bundle.description.input.contrast == "equalize"
    error = _refusal(_write_bundle(tmp_path / "hidden", change=_with_contrast))  # schema 1 + contrast
    assert error.field == "schema_version" and "contrast 'equalize' is written as schema 2" in error.problem
    error = _refusal(_write_bundle(tmp_path / "plain2", change=lambda m: m.update(schema_version=2)))
    assert error.field == "schema_version" and "'none' is written as schema 1" in error.problem


@pytest.mark.parametrize("module, field", [
    ({"title": "Unit"}, "module.id"),
    ({"id": "", "title": "Unit"}, "module.id"),
    ({"id": "unit"}, "module.title"),
    ({"id": "unit", "title": ""}, "module.title"),
    ("unit", "module.id"),
])
def test_module_id_and_title_are_required(tmp_path, module, field):
    error = _refusal(_write_bundle(tmp_path / "b", change=lambda m: m.update(module=module)))
    assert (error.field, error.problem, error.fix) == (field, "missing from manifest.json", RE_EXPORT)


def test_invalid_model_description_names_its_field(tmp_path):
    error = _refusal(_write_bundle(tmp_path / "b", change=lambda m: m["model"]["input"].update(dtype="int8")))
    assert error.field == "model.input.dtype"
    assert "int8" in error.problem and error.fix == RE_EXPORT


def test_unreadable_onnx_is_refused_even_without_the_hash_check(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    with open(os.path.join(folder, "model.onnx"), "wb") as handle:
        handle.write(b"\xff" * 64)
    resign(folder)  # signed as it is: the refusal is the ONNX reader's, not the signature's
    assert _refusal(folder).field == "model_sha256"
    error = _refusal(folder, check_hash=False)
    assert error.field == "model.onnx"
    assert error.problem.startswith("is not a readable ONNX model (")
    assert error.fix == "copy the bundle again from its source"


def test_hash_mismatch_message_shows_both_prefixes(tmp_path):
    folder = _write_bundle(tmp_path / "b", change=lambda m: m.update(model_sha256="f" * 64))
    actual = sha256_file(os.path.join(folder, "model.onnx"))
    error = _refusal(folder)
    assert error.problem == ("model.onnx has sha256 {}\u2026 but the manifest expects {}\u2026 (tampered or "
                             "truncated)".format(actual[:12], "f" * 12))
    assert error.fix == "copy the bundle again from its source; never edit model.onnx by hand"
    assert load_bundle(folder, check_hash=False).sha256 == "f" * 64


@pytest.mark.parametrize("quality, ok", [
    ({"blur_threshold": 0}, True),
    ({"blur_threshold": 0.0}, True),
    ({"blur_threshold": 12.5}, True),
    ({"blur_threshold": -0.001}, False),
    ({"blur_threshold": "12"}, False),
    ({}, False),
    ([12.5], False),
])
def test_quality_blur_threshold_boundary(tmp_path, quality, ok):
    folder = _write_bundle(tmp_path / "b", change=lambda m: m.update(quality=quality))
    if ok:
        assert load_bundle(folder).manifest["quality"] == quality
        return
    error = _refusal(folder)
    blur = quality.get("blur_threshold") if isinstance(quality, dict) else None
    assert (error.field, error.fix) == ("quality.blur_threshold", RE_EXPORT)
    assert error.problem == "must be a number >= 0, got {!r}".format(blur)


def _golden(folder, data):
    """Write golden/expected.json and sign the folder again with the session's test key."""
    os.makedirs(os.path.join(folder, "golden"), exist_ok=True)
    with open(os.path.join(folder, "golden", "expected.json"), "w") as handle:
        json.dump(data, handle)
    resign(folder)


def test_golden_samples_read_with_their_tolerance(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    _golden(folder, {"tolerance": 0.01, "samples": [
        {"file": "one.png", "probabilities": [0.7, 0.1, 0.1, 0.1], "top1": "a"},
        {"file": "two.png", "probabilities": [0.1, 0.7, 0.1, 0.1], "top1": "b", "tolerance": 0.2}]})
    one, two = load_bundle(folder).golden_samples()
    assert one.path == os.path.join(folder, "golden", "one.png")
    assert (one.probabilities, one.top1, one.tolerance) == ([0.7, 0.1, 0.1, 0.1], "a", 0.01)
    assert (two.top1, two.tolerance) == ("b", 0.2)


def test_golden_default_tolerance(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    _golden(folder, {"samples": [{"file": "one.png", "probabilities": [1, 0, 0, 0], "top1": "a"}]})
    (sample,) = load_bundle(folder).golden_samples()
    assert sample.tolerance == 1e-3


@pytest.mark.parametrize("sample, field, problem", [
    ({"file": "x.png", "probabilities": [0.5, 0.5, 0, 0]}, "golden/expected.json: top1",
     "missing in a sample"),
    ({"file": "x.png", "top1": "a"}, "golden/expected.json: probabilities", "missing in a sample"),
    ({"probabilities": [1, 0, 0, 0], "top1": "a"}, "golden/expected.json: file", "missing in a sample"),
    ({"file": "x.png", "probabilities": [0.5, 0.5, 0], "top1": "a"}, "golden/expected.json: probabilities",
     "has 3 values for 4 classes"),
])
def test_golden_sample_shape_is_checked(tmp_path, sample, field, problem):
    folder = _write_bundle(tmp_path / "b")
    _golden(folder, {"samples": [sample]})
    bundle = load_bundle(folder)
    with pytest.raises(BundleError) as info:
        bundle.golden_samples()
    assert (info.value.field, info.value.problem, info.value.fix) == (field, problem, RE_EXPORT)
    assert info.value.bundle == folder


def test_golden_expected_json_that_is_not_json(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    _golden(folder, {})
    with open(os.path.join(folder, "golden", "expected.json"), "w") as handle:
        handle.write("{")
    with pytest.raises(BundleError) as info:
        load_bundle(folder).golden_samples()
    assert (info.value.field, info.value.bundle) == ("golden/expected.json", folder)


def test_golden_expected_json_without_samples_has_none(tmp_path):
    folder = _write_bundle(tmp_path / "b")
    _golden(folder, {"tolerance": 0.01})
    assert load_bundle(folder).golden_samples() == []


def test_sha256_file_reads_every_chunk(tmp_path):
    path = str(tmp_path / "blob")
    data = os.urandom(10000)
    with open(path, "wb") as handle:
        handle.write(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == sha256_file(path, chunk=7) == sha256_file(path, chunk=1) == expected


def test_make_manifest_created_and_extra(tmp_path):
    description = ModelDescription("tiny", "multiclass", list(CLASSES), InputSpec(16, 16))
    manifest = make_manifest(description, "m", "M", "0" * 64, training={"data": {"n": 1}}, version="2.0.0",
                             opset=13, created="2026-01-01T00:00:00+00:00", extra={"quality": {"x": 1}})
    assert manifest["created"] == "2026-01-01T00:00:00+00:00"
    assert manifest["training"] == {"data": {"n": 1}} and manifest["version"] == "2.0.0"
    assert manifest["onnx"]["opset"] == 13 and manifest["quality"] == {"x": 1}
    assert manifest["model_file"] == "model.onnx"
    assert manifest["module"] == {"id": "m", "title": "M"}
    assert manifest["model"] == description.to_dict()
    stamp = make_manifest(description, "m", "M", "0" * 64)["created"]
    assert stamp.endswith("+00:00") and "." not in stamp


def test_write_json_atomic_flushes_and_fsyncs_the_whole_file_before_the_rename(tmp_path, monkeypatch):
    """A deleted flush or fsync leaves the manifest in the page cache only: a power cut loses it."""
    path = str(tmp_path / "manifest.json")
    seen = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        seen.append(("fsync", os.fstat(fd).st_size))
        return real_fsync(fd)

    def replace(src, dst):
        assert (src, dst) == (path + ".tmp", path)
        seen.append(("replace", os.path.getsize(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json_atomic(path, {"b": "x" * 100, "a": [1, 2, 3]})
    size = os.path.getsize(path)
    assert seen == [("fsync", size), ("replace", size)]
    with open(path) as handle:
        text = handle.read()
    assert json.loads(text) == {"a": [1, 2, 3], "b": "x" * 100}
    assert text.endswith("}\n") and '\n  "a": [' in text
    assert text.index('"b"') < text.index('"a"')  # key order kept, not sorted
    assert os.listdir(str(tmp_path)) == ["manifest.json"]
