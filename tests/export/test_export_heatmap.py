"""The class-activation heatmap output: real checkpoints exported with ``heatmap=True``, ONNX Runtime."""

import json
import os

import numpy as np
import onnxruntime
import pytest

pytest.importorskip("torch")

from edge.backends import open_runner  # noqa: E402
from edge.bundle import load_lab_bundle  # noqa: E402
from edge.errors import BundleError  # noqa: E402
from edge.preprocess import load_image, preprocess  # noqa: E402
from export import heatmap as export_heatmap  # noqa: E402
from export import onnx_export  # noqa: E402
from export.errors import ExportError, ParityError  # noqa: E402
from tests.export.models import tiny_description, tiny_source  # noqa: E402


@pytest.fixture(scope="module")
def heatmap_bundle(test_artifacts, tmp_path_factory):
    """The test bundle's own checkpoint (EfficientNet-Lite0, 64x64) exported with the heatmap."""
    checkpoint = os.path.join(test_artifacts.root, "run", "best.pt")
    out = str(tmp_path_factory.mktemp("heatmap") / "hm")
    return onnx_export.export_bundle(checkpoint, out, module_id="synth-test", title="Synthetic", heatmap=True)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_manifest_declares_the_heatmap_and_the_graph_has_it(heatmap_bundle):
    bundle = load_lab_bundle(heatmap_bundle)
    section = bundle.heatmap
    assert section["output"] == "heatmap" and section["method"] == "cam"
    assert section["shape"] == [4, 2, 2]  # 64x64 input, stride 32
    assert [o["name"] for o in bundle.onnx_info.outputs] == ["probabilities", "heatmap"]
    assert section["parity"]["ok"] and section["parity"]["relative_diff"] <= 1e-3
    # Only ops TensorRT 8.2 parses; the CAM adds none beyond those the classifier already had.
    assert bundle.manifest["export"]["tensorrt8_unsupported_ops"] == []


def test_spatial_mean_of_each_map_is_the_class_logit(heatmap_bundle, synth_images):
    """softmax(mean(heatmap) / T) reproduces the graph's own probabilities: the map explains them."""
    bundle = load_lab_bundle(heatmap_bundle)
    session = onnx_export.onnx_session(bundle.model_path)
    for name in sorted(synth_images):
        batch = preprocess(load_image(synth_images[name][0]), bundle.description.input)
        probs, heat = session.run(None, {"image": batch})
        logits = heat.mean(axis=(2, 3))
        assert np.abs(_softmax(logits / bundle.description.temperature) - probs).max() <= 1e-5


def test_runner_returns_the_heatmap_and_prediction_carries_it(heatmap_bundle, synth_images):
    from edge.classify import classify

    bundle = load_lab_bundle(heatmap_bundle)
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        image = load_image(synth_images["circle"][0])
        outputs = runner.infer(preprocess(image, bundle.description.input))
        assert outputs["heatmap"].shape == (1, 4, 2, 2) and outputs["heatmap"].dtype == np.float32
        prediction = classify(image, runner, bundle)
    assert prediction.heatmap.shape == (4, 2, 2)
    data = prediction.to_dict()
    assert data["heatmap"]["class"] == prediction.top1 and data["heatmap"]["shape"] == [2, 2]
    json.dumps(data)


def test_both_heatmap_and_input_check_outputs(tmp_path):
    """A resnet18 checkpoint with an input-check head: three outputs, each parity-checked."""
    import torch

    from training.checkpoint import build_net, make_checkpoint, save_checkpoint
    from training.ood import InputCheckHead, fit_mahalanobis, input_check_entry

    base = tiny_description(colour="GRAY", size=64).replace(arch="resnet18")
    net = build_net(base).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        embeddings = net.features(torch.rand((24, 1, 64, 64), generator=generator) * 255).numpy()
    head = InputCheckHead(fit_mahalanobis(embeddings, np.arange(24) % 4, 4), distance_threshold=5.0)
    description = base.replace(input_check=input_check_entry(head, 0.99))
    data = make_checkpoint(net, description, 1, 0.5, module={"id": "xray", "title": "X-ray"})
    data["ood_head"] = head.state()
    checkpoint = save_checkpoint(str(tmp_path / "best.pt"), data)
    out = onnx_export.export_bundle(checkpoint, str(tmp_path / "b"), golden=False, heatmap=True)
    bundle = load_lab_bundle(out)
    assert [o["name"] for o in bundle.onnx_info.outputs] == ["probabilities", "ood_score", "heatmap"]
    assert bundle.heatmap["shape"] == [4, 2, 2]
    image = np.random.default_rng(3).uniform(0, 255, (1, 1, 64, 64)).astype(np.float32)
    probs, ood, heat = onnx_export.onnx_session(bundle.model_path).run(None, {"image": image})
    deploy = onnx_export.load_source(checkpoint).deploy_model
    with torch.no_grad():
        want_probs, want_ood = deploy(torch.from_numpy(image))
    assert np.abs(probs - want_probs.numpy()).max() <= 1e-5 and np.abs(ood - want_ood.numpy()).max() <= 1e-4
    assert np.abs(_softmax(heat.mean(axis=(2, 3)) / description.temperature) - probs).max() <= 1e-5
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        outputs = runner.infer(image)
    assert sorted(outputs) == ["heatmap", "ood_score", "probabilities"]


def test_a_head_deeper_than_one_linear_layer_is_refused(tmp_path):
    from training.checkpoint import build_net
    from training.nets import DeployModel

    description = tiny_description(size=32).replace(arch="mobilenet_v3_small")
    source = onnx_export.ExportSource(DeployModel(build_net(description), description), description)
    with pytest.raises(ExportError, match="one-layer linear head.*without --heatmap"):
        onnx_export.export_bundle(source, str(tmp_path / "m"), golden=False, heatmap=True)
    assert not os.path.exists(str(tmp_path / "m"))


def test_an_architecture_without_a_feature_map_entry_is_refused(tmp_path):
    with pytest.raises(ExportError, match="tinynet is not one of"):
        onnx_export.export_bundle(tiny_source(), str(tmp_path / "t"), golden=False, heatmap=True)


def test_a_wrong_feature_map_entry_is_refused(tmp_path, monkeypatch):
    """A table entry whose map does not average to the logits would ship a misleading heatmap."""
    from training.checkpoint import build_net
    from training.nets import DeployModel

    description = tiny_description(size=32).replace(arch="resnet18")
    source = onnx_export.ExportSource(DeployModel(build_net(description), description), description)
    wrong = dict(export_heatmap.FEATURE_MAPS, resnet18=lambda net, x: export_heatmap._pooled_sequential_map(
        net, x) * 2.0)
    monkeypatch.setattr(export_heatmap, "FEATURE_MAPS", wrong)
    with pytest.raises(ExportError, match="does not average to the network's logits"):
        onnx_export.export_bundle(source, str(tmp_path / "r"), golden=False, heatmap=True)


def test_heatmap_parity_failure_writes_no_bundle(tmp_path, monkeypatch, test_artifacts):
    checkpoint = os.path.join(test_artifacts.root, "run", "best.pt")
    monkeypatch.setattr(export_heatmap, "HEATMAP_TOLERANCE", {"fp32": 0.0, "fp16": 0.0})
    with pytest.raises(ParityError, match="heatmap differs"):
        onnx_export.export_bundle(checkpoint, str(tmp_path / "p"), heatmap=True)
    assert os.listdir(str(tmp_path)) == []


def test_compare_heatmaps_boundary():
    reference = np.array([[[[1.0, -2.0]]]], dtype=np.float32)
    at = reference + np.float32(2.0 * 1e-3)  # exactly the fp32 tolerance of the range 2.0
    assert export_heatmap.compare_heatmaps(reference, at, "fp32")["ok"]
    over = reference + np.float32(2.0 * 1.01e-3)
    assert not export_heatmap.compare_heatmaps(reference, over, "fp32")["ok"]
    assert not export_heatmap.compare_heatmaps(reference, reference[..., :1], "fp32")["ok"]


def _edited(bundle_dir, tmp_path, change):
    import shutil

    target = str(tmp_path / "edited")
    shutil.copytree(bundle_dir, target)
    path = os.path.join(target, "manifest.json")
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    change(manifest["heatmap"])
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return target


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.update(shape=[4, 2]), "must be \\[classes, height, width\\]"),
    (lambda s: s.update(shape=[3, 2, 2]), "has 3 maps for 4 classes"),
    (lambda s: s.update(shape=[4, 7, 7]), "manifest says \\[4, 7, 7\\] but model.onnx outputs"),
    (lambda s: s.update(method="gradcam"), "heatmap.method"),
    (lambda s: s.update(output="saliency"), "no separate output 'saliency'"),
    (lambda s: s.update(output="probabilities"), "no separate output 'probabilities'"),
])
def test_bundle_refuses_a_heatmap_section_that_does_not_match(heatmap_bundle, tmp_path, change, problem):
    with pytest.raises(BundleError, match=problem):
        load_lab_bundle(_edited(heatmap_bundle, tmp_path, change))


def test_graft_onto_a_shipped_graph_matches_the_exported_heatmap(heatmap_bundle, tiny_bundle, synth_images):
    """The test bundle (same checkpoint, exported without heatmap) grafted: the same maps."""
    import onnx

    grafted = export_heatmap.graft_heatmap(onnx.load(os.path.join(tiny_bundle, "model.onnx")))
    assert [o.name for o in grafted.graph.output] == ["probabilities", "heatmap"]
    session = onnxruntime.InferenceSession(
        grafted.SerializeToString(), providers=["CPUExecutionProvider"])
    exported = onnx_export.onnx_session(load_lab_bundle(heatmap_bundle).model_path)
    batch = preprocess(load_image(synth_images["stripes"][0]), load_lab_bundle(tiny_bundle).description.input)
    got, want = session.run(["heatmap"], {"image": batch})[0], exported.run(["heatmap"], {"image": batch})[0]
    assert got.shape == (1, 4, 2, 2) and np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_graft_refuses_a_graph_without_a_pooled_linear_classifier():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(ExportError, match="no GlobalAveragePool -> Flatten -> Gemm"):
        export_heatmap.graft_heatmap(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_cli_flag(test_artifacts, tmp_path, capsys):
    from export.cli import main

    out = str(tmp_path / "cli")
    assert main(["export", "onnx", os.path.join(test_artifacts.root, "run", "best.pt"), "--out", out,
                 "--heatmap", "--no-golden"]) == 0
    assert ", heatmap 2x2)" in capsys.readouterr().out
    assert load_lab_bundle(out).heatmap["shape"] == [4, 2, 2]
    with open(os.path.join(out, "model_card.md")) as handle:
        card = handle.read()
    assert "Heatmap output `heatmap`: float32 [N, 4, 2, 2] class-activation maps (cam)" in card
    assert "Percentages: validation ECE after temperature" in card
