"""Export to a bundle: real tiny PyTorch models, real ONNX files, ONNX Runtime on CPU."""

import glob
import json
import os

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from edge.bundle import load_bundle, load_lab_bundle  # noqa: E402
from edge.description import ModelDescription  # noqa: E402
from edge.onnx_info import read_onnx_info  # noqa: E402
from edge.preprocess import load_image, preprocess  # noqa: E402
from export import onnx_export  # noqa: E402
from export.errors import ExportError, ParityError  # noqa: E402
from tests.export.models import tiny_description, tiny_source  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "tiny")
    data = {"metrics": {"val_accuracy": 0.75}, "data_summary": {"train_images": 120},
            "attribution": "Project-generated synthetic shapes", "module_id": "tiny-mod"}
    return onnx_export.export_bundle(tiny_source(data=data), out, title="Tiny test")


def _read(path):
    with open(str(path), encoding="utf-8") as handle:
        return handle.read()


def _session(path):
    return onnx_export.onnx_session(path)


def test_export_writes_a_loadable_bundle(exported):
    bundle = load_bundle(exported)
    assert bundle.module_id == "tiny-mod"
    assert bundle.title == "Tiny test"
    assert bundle.description == tiny_description()
    assert bundle.onnx_info.opset == 13
    assert bundle.onnx_info.inputs[0]["shape"] == [1, 3, 32, 32]
    assert bundle.onnx_info.outputs[0]["name"] == "probabilities"
    export_info = bundle.manifest["export"]
    assert export_info["simplified"] is True
    assert export_info["parity"]["max_abs_diff"] <= 1e-4
    assert export_info["parity_images"] == "generated"
    assert bundle.manifest["training"]["metrics"] == {"val_accuracy": 0.75}
    card = _read(os.path.join(exported, "model_card.md"))
    assert "not a diagnosis" in card and "Project-generated synthetic shapes" in card
    assert "val_accuracy" in card and "`square`" in card
    # No temporary folders left beside the bundle.
    assert os.listdir(os.path.dirname(exported)) == ["tiny"]


def test_golden_images_reproduce_with_onnxruntime(exported):
    bundle = load_bundle(exported)
    samples = bundle.golden_samples()
    assert 2 <= len(samples) <= onnx_export.GOLDEN_COUNT
    session = _session(bundle.model_path)
    for sample in samples:
        image = load_image(sample.path)
        assert image.shape[:2] == (32, 32)  # stored at input size: no resize on the device
        probs = session.run(None, {"image": preprocess(image, bundle.description.input)})[0][0]
        assert np.abs(probs - np.array(sample.probabilities)).max() <= 1e-6
        assert bundle.description.classes[int(probs.argmax())] == sample.top1


def test_manifest_round_trips_through_onnx_metadata(exported):
    manifest = json.loads(_read(os.path.join(exported, "manifest.json")))
    model_path = os.path.join(exported, "model.onnx")
    for metadata in (read_onnx_info(model_path).metadata,
                     {p.key: p.value for p in onnx.load(model_path).metadata_props}):
        embedded = json.loads(metadata["medkiosk.manifest"])
        assert "model_sha256" not in embedded
        expected = dict(manifest)
        del expected["model_sha256"]
        assert embedded == expected
        description = ModelDescription.from_dict(json.loads(metadata["medkiosk.description"]))
        assert description == tiny_description()


def _perturb_one_weight(original):
    def postprocess(model, opset, fp16=False):
        model, info = original(model, opset, fp16)
        weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        values = onnx.numpy_helper.to_array(weight).copy()
        values.flat[0] += 5.0
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
        return model, info
    return postprocess


def test_parity_failure_writes_no_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "postprocess_graph", _perturb_one_weight(onnx_export.postprocess_graph))
    out = tmp_path / "bad"
    with pytest.raises(ParityError) as info:
        onnx_export.export_bundle(tiny_source(), str(out))
    assert "parity check failed" in str(info.value) and "No bundle was written" in str(info.value)
    assert os.listdir(str(tmp_path)) == []


def test_parity_failure_keeps_an_existing_bundle(tmp_path, monkeypatch, exported):
    out = tmp_path / "keep"
    onnx_export.export_bundle(tiny_source(), str(out))
    before = _read(out / "manifest.json")
    monkeypatch.setattr(onnx_export, "postprocess_graph", _perturb_one_weight(onnx_export.postprocess_graph))
    with pytest.raises(ParityError):
        onnx_export.export_bundle(tiny_source(seed=1), str(out))
    assert _read(out / "manifest.json") == before
    assert sorted(os.listdir(str(tmp_path))) == ["keep"]


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "important.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a bundle folder"):
        onnx_export.export_bundle(tiny_source(), str(out))
    assert os.listdir(str(out)) == ["important.txt"]
    assert sorted(os.listdir(str(tmp_path))) == ["notes"]


def test_fp16_dynamic_batch_and_input_check(tmp_path):
    check = {"output": "ood_score", "threshold": 3.0, "method": "logit-magnitude", "message": "not a shape"}
    description = tiny_description(colour="GRAY", input_check=check)
    out = onnx_export.export_bundle(tiny_source(description), str(tmp_path / "b"), fp16=True,
                                    dynamic_batch=True)
    bundle = load_bundle(out)
    info = bundle.onnx_info
    assert [o["name"] for o in info.outputs] == ["probabilities", "ood_score"]
    assert info.inputs[0]["dtype"] == "float32" and isinstance(info.inputs[0]["shape"][0], str)
    assert bundle.manifest["export"]["precision"] == "fp16"
    assert bundle.manifest["export"]["parity"]["tolerance"] == 1e-2
    model = onnx.load(bundle.model_path)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    golden = json.loads(_read(os.path.join(out, "golden", "expected.json")))
    assert golden["tolerance"] == 1e-2
    batch = np.random.default_rng(0).uniform(0, 255, (3, 1, 32, 32)).astype(np.float32)
    probs, ood = _session(bundle.model_path).run(None, {"image": batch})
    assert probs.shape == (3, 4) and ood.shape == (3,)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-2)


def test_onnxsim_failure_is_loud_not_silent(tmp_path, monkeypatch, capsys):
    import onnxsim

    def broken(model):
        raise RuntimeError("simulated onnxsim crash")
    monkeypatch.setattr(onnxsim, "simplify", broken)
    out = onnx_export.export_bundle(tiny_source(), str(tmp_path / "b"), golden=False)
    assert "WARNING: onnxsim failed (RuntimeError: simulated onnxsim crash)" in capsys.readouterr().err
    bundle = load_lab_bundle(out)
    assert bundle.manifest["export"]["simplified"] is False
    assert "simulated onnxsim crash" in bundle.manifest["export"]["simplify_error"]
    assert "simplified: NO" in _read(os.path.join(out, "model_card.md"))
    assert bundle.golden_samples() == []


def test_given_real_xray_samples(tmp_path, real_xray):
    description = tiny_description(colour="GRAY", size=48)
    samples = sorted(glob.glob(os.path.join(os.path.dirname(real_xray), "*.png")))[:3]
    out = onnx_export.export_bundle(tiny_source(description), str(tmp_path / "x"), sample_images=samples)
    bundle = load_bundle(out)
    assert bundle.manifest["export"]["parity_images"] == "given"
    assert bundle.manifest["export"]["parity"]["images"] == 3
    assert len(bundle.golden_samples()) == 3


def test_missing_sample_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="no sample images"):
        onnx_export.export_bundle(tiny_source(), str(tmp_path / "b"), sample_images=[str(tmp_path)])


def test_mobilenet_v3_at_opset_13_has_no_hardswish(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from tests.export.models import TinyDeploy

    description = tiny_description(size=32).replace(arch="mobilenet_v3_small")
    net = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    source = onnx_export.ExportSource(TinyDeploy(net, description), description)
    out = onnx_export.export_bundle(source, str(tmp_path / "m"), golden=False)
    ops = load_lab_bundle(out).manifest["export"]["ops"]
    assert "HardSwish" not in ops and "HardSigmoid" in ops
    assert load_lab_bundle(out).manifest["export"]["tensorrt8_unsupported_ops"] == []
    assert {n.op_type for n in onnx.load(os.path.join(out, "model.onnx")).graph.node} == set(ops)


def test_checkpoint_with_input_check_exports_ood_score(tmp_path):
    """A real training checkpoint (training.checkpoint) with a fitted input-check head (training.ood)."""
    import torch

    from training.checkpoint import build_net, make_checkpoint, save_checkpoint
    from training.ood import InputCheckHead, fit_mahalanobis, input_check_entry

    base = tiny_description(colour="GRAY", size=32).replace(arch="mobilenet_v3_small")
    net = build_net(base).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        embeddings = net.features(torch.rand((24, 1, 32, 32), generator=generator) * 255).numpy()
    head = InputCheckHead(fit_mahalanobis(embeddings, np.arange(24) % 4, 4), distance_threshold=5.0)
    description = base.replace(input_check=input_check_entry(head, 0.99))
    data = make_checkpoint(net, description, 1, 0.5, module={"id": "xray", "title": "X-ray"})
    data["ood_head"] = head.state()
    checkpoint = save_checkpoint(str(tmp_path / "best.pt"), data)
    out = onnx_export.export_bundle(checkpoint, str(tmp_path / "b"), golden=False)
    bundle = load_lab_bundle(out)
    assert [o["name"] for o in bundle.onnx_info.outputs] == ["probabilities", "ood_score"]
    image = np.random.default_rng(3).uniform(0, 255, (1, 1, 32, 32)).astype(np.float32)
    probs, ood = _session(bundle.model_path).run(None, {"image": image})
    deploy = onnx_export.load_source(checkpoint).deploy_model
    with torch.no_grad():
        want_probs, want_ood = deploy(torch.from_numpy(image))
    assert np.abs(probs - want_probs.numpy()).max() <= 1e-5 and np.abs(ood - want_ood.numpy()).max() <= 1e-4
    # Without the head the checkpoint cannot honour its description: a clear refusal.
    del data["ood_head"]
    save_checkpoint(checkpoint, data)
    with pytest.raises(ExportError, match="no input-check head"):
        onnx_export.export_bundle(checkpoint, str(tmp_path / "c"))
    assert not os.path.exists(str(tmp_path / "c"))


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot create the bundle folder"):
        onnx_export.export_bundle(tiny_source(), str(blocker / "bundle"))


def _architectures():
    try:
        from training.registry import ARCHITECTURES
    except ImportError:
        return []
    heavy = {"densenet121", "vgg16_seed", "resattn56"}  # 10-20 s each on 2 cores
    return [pytest.param(name, marks=pytest.mark.slow) if name in heavy else name
            for name in sorted(ARCHITECTURES) if name != "mobilenet_v3_small"]


@pytest.mark.parametrize("arch", _architectures())
def test_every_registered_architecture_exports_for_tensorrt8(arch, tmp_path):
    """Opset 13, simplified, parity, and no op the TensorRT 8.2 parser lacks (measured per arch)."""
    from training.checkpoint import build_net
    from training.nets import DeployModel
    from training.registry import ARCHITECTURES

    size = max(32, ARCHITECTURES[arch].size_multiple)
    description = tiny_description(size=size).replace(arch=arch)
    net = build_net(description)
    net.train()  # left in training mode on purpose: export must switch to inference mode itself
    source = onnx_export.ExportSource(DeployModel(net, description), description)
    out = onnx_export.export_bundle(source, str(tmp_path / arch), golden=False)
    info = load_lab_bundle(out).manifest["export"]
    assert info["simplified"] and info["tensorrt8_unsupported_ops"] == []
    assert "HardSwish" not in info["ops"] and info["parity"]["max_abs_diff"] <= 1e-4


def test_ops_tensorrt8_cannot_parse_are_reported_loudly(capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mod", ["a", "b"], ["c"], fmod=1), helper.make_node("Relu", ["c"], ["d"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    ops, unsupported = onnx_export.check_ops(helper.make_model(graph), 13)
    assert ops == ["Mod", "Relu"] and unsupported == ["Mod"]
    assert "TensorRT 8.x cannot parse: Mod" in capsys.readouterr().err
    hardswish = helper.make_graph([helper.make_node("HardSwish", ["a"], ["d"])], "h",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    with pytest.raises(ExportError, match="HardSwish at opset 13"):
        onnx_export.check_ops(helper.make_model(hardswish), 13)
