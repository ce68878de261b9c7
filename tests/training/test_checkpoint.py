"""Checkpoints: round trip, self-contained export, atomic writes, clear errors for foreign files."""

import io
import os
import shutil

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402

from edge.description import InputSpec, ModelDescription  # noqa: E402
from edge.errors import MedkioskError  # noqa: E402
from training.checkpoint import (  # noqa: E402
    FORMAT,
    CheckpointError,
    build_net,
    load_checkpoint,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
    update_checkpoint,
)
from training.nets import DeployModel, default_normalisation  # noqa: E402

pytestmark = pytest.mark.torch


def tiny_description(arch="mobilenet_v3_small", task="multiclass", colour="RGB"):
    mean, std = default_normalisation(colour)
    return ModelDescription(arch, task, ["cat", "dog", "owl"], InputSpec(32, 32, colour=colour), mean, std,
                            display_names=["Cat", "Dog", "Owl"], temperature=1.3, abstain_threshold=0.4,
                            extra={"module": "zoo"})


def trained_like_net(description):
    torch.manual_seed(7)
    net = build_net(description)
    # Move BatchNorm statistics away from their defaults so the round trip checks buffers too.
    net.train()
    with torch.no_grad():
        net(torch.rand(8, description.input.channels, 32, 32) * 255)
    return net.eval()


def test_round_trip_restores_weights_buffers_description_and_metadata(tmp_path):
    description = tiny_description()
    net = trained_like_net(description)
    training = {"data": {"splits": {"train": {"images": 10}}}, "metrics": {"best_val_loss": 0.5}}
    data = make_checkpoint(net, description, epoch=3, val_loss=0.5, module={"id": "zoo", "title": "Zoo"},
                           training=training, config={"arch": description.arch})
    path = save_checkpoint(str(tmp_path / "best.pt"), data)
    loaded = load_checkpoint(path)
    assert loaded.description == description
    assert not loaded.net.training
    assert loaded.module == {"id": "zoo", "title": "Zoo"}
    assert loaded.training["metrics"]["best_val_loss"] == 0.5
    assert loaded.data["epoch"] == 3 and loaded.data["format"] == FORMAT
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.net.state_dict()[key]), key
    x = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(net(x), loaded.net(x))


def test_checkpoint_exports_with_nothing_else_beside_it(tmp_path):
    description = tiny_description(colour="GRAY")
    net = trained_like_net(description)
    source = tmp_path / "run"
    source.mkdir()
    save_checkpoint(str(source / "best.pt"), make_checkpoint(net, description, 1, 0.1))
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    shutil.copy(str(source / "best.pt"), str(lonely / "model.pt"))
    shutil.rmtree(str(source))
    loaded = load_checkpoint(str(lonely / "model.pt"))
    model = DeployModel(loaded.net, loaded.description).eval()
    x = torch.rand(1, 1, 32, 32) * 255
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, opset_version=13, dynamo=False, input_names=["image"],
                      output_names=["probabilities"])
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = torch.softmax(net(x) / 1.3, dim=1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    description = tiny_description()
    net = build_net(description)
    path = str(tmp_path / "last.pt")
    save_checkpoint(path, make_checkpoint(net, description, 1, 1.0))
    first = os.path.getsize(path)
    save_checkpoint(path, make_checkpoint(net, description, 2, 0.9))
    assert sorted(os.listdir(str(tmp_path))) == ["last.pt"]
    assert os.path.getsize(path) == first
    assert read_checkpoint(path)["epoch"] == 2


def test_update_checkpoint_rewrites_fields(tmp_path):
    description = tiny_description()
    data = make_checkpoint(build_net(description), description, 1, 1.0)
    path = save_checkpoint(str(tmp_path / "best.pt"), data)
    update_checkpoint(path, description=description.replace(temperature=2.5).to_dict())
    assert load_checkpoint(path).description.temperature == 2.5


def test_foreign_and_broken_files_are_clear_errors(tmp_path):
    missing = str(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(str(garbage))
    foreign = str(tmp_path / "foreign.pt")
    torch.save({"model": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a medkiosk checkpoint"):
        load_checkpoint(foreign)
    description = tiny_description()
    data = make_checkpoint(build_net(description), description, 1, 1.0)
    data["version"] = 99
    future = str(tmp_path / "future.pt")
    torch.save(data, future)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(future)
    data["version"] = 1
    data["description"]["arch"] = "resnet18"  # weights of one arch under another's name
    mismatched = str(tmp_path / "mismatched.pt")
    torch.save(data, mismatched)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(mismatched)
    assert issubclass(CheckpointError, MedkioskError)
