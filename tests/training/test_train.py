"""Training end to end on generated images: accuracy, artefacts, calibration, resume, multilabel, export.

All data is generated here (training.synth): no patient images. Sizes are tiny so the file runs in
about a minute on 2 CPU cores.
"""

import csv
import io
import json
import os

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402

from edge.preprocess import load_image, preprocess  # noqa: E402
from training.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from training.nets import DeployModel  # noqa: E402
from training.synth import generate_dataset  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.torch


TINY = dict(arch="mobilenet_v3_small", image_size=32, batch_size=8, seed=0, pretrained=False, workers=0,
            progress=False)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """EfficientNet-Lite0 (ImageNet weights, shipped offline) fine-tuned 4 epochs on 4 synthetic classes.

    2 epochs reached 0.92-0.96 test accuracy depending on the thread count; 4 epochs (about 15 s on
    one thread) reached 1.0, leaving margin above the 0.9 the test asks for.
    """
    root = tmp_path_factory.mktemp("shapes")
    data = str(root / "data")
    generate_dataset(data, num_classes=4, per_class=40, size=64, seed=0)
    config = TrainConfig(data=data, arch="efficientnet_lite0", epochs=4, out=str(root / "run"), image_size=64,
                         batch_size=8, lr=3e-3, seed=0, pretrained=True, workers=0, progress=False)
    return train(config)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    data = str(root / "data")
    generate_dataset(data, num_classes=3, per_class=12, size=32, seed=1)
    return data


def test_short_training_beats_chance_on_held_out_test_split(shapes_run, tmp_path):
    from training.evaluate import evaluate_run

    result = evaluate_run(shapes_run.run_dir, split="test", out=str(tmp_path / "eval"), bootstrap=50)
    metrics = result.metrics
    assert metrics["cases"] >= 20
    # Measured 1.0 (24 of 24) on one thread; chance is 0.25.
    assert metrics["accuracy"] >= 0.9
    assert metrics["macro_auroc"] >= 0.95
    for name in ("report.md", "metrics.json", "roc.png", "confusion.png", "reliability.png"):
        assert os.path.getsize(str(tmp_path / "eval" / name)) > 0, name
    with open(str(tmp_path / "eval" / "metrics.json")) as handle:
        stored = json.load(handle)
    assert stored["accuracy"] == metrics["accuracy"]
    assert set(stored["per_class"]) == {"circle", "square", "stripes", "triangle"}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "not a diagnosis" in report and "| circle |" in report
    # The headline numbers are recorded in the checkpoint for the model card.
    recorded = read_checkpoint(shapes_run.best_checkpoint)["training"]["metrics"]["evaluation"]["test"]
    assert recorded["accuracy"] == metrics["accuracy"]


def test_run_folder_holds_checkpoints_metrics_and_split(shapes_run):
    run = shapes_run.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "split.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    with open(os.path.join(run, "metrics.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(rows[0])
    assert len(shapes_run.history) == 4
    best = read_checkpoint(shapes_run.best_checkpoint)
    data = best["training"]["data"]
    splits = data["splits"]
    assert sum(splits[s]["images"] for s in ("train", "val", "test")) == 160
    assert data["classes"] == ["circle", "square", "stripes", "triangle"]
    assert best["config"]["arch"] == "efficientnet_lite0"
    assert "resume" in read_checkpoint(shapes_run.last_checkpoint)
    assert "resume" not in best


def test_temperature_is_fitted_on_validation_and_stored(shapes_run):
    loaded = load_checkpoint(shapes_run.best_checkpoint)
    calibration = loaded.training["metrics"]["calibration"]
    assert loaded.description.temperature == pytest.approx(calibration["temperature"])
    assert loaded.description.temperature != 1.0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert loaded.description.abstain_threshold == pytest.approx(calibration["abstain_threshold"])
    assert calibration["fitted_on"] == "val"


def test_trained_checkpoint_exports_and_onnx_matches_torch_on_real_images(shapes_run):
    loaded = load_checkpoint(shapes_run.best_checkpoint)
    model = DeployModel(loaded.net, loaded.description).eval()
    val_paths = read_checkpoint(shapes_run.best_checkpoint)["splits"]["val"][:6]
    batch = np.concatenate([preprocess(load_image(p), loaded.description.input) for p in val_paths])
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(batch),), buffer, opset_version=13, dynamo=False,
                      input_names=["image"], output_names=["probabilities"],
                      dynamic_axes={"image": {0: "n"}, "probabilities": {0: "n"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": batch})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    classes = loaded.description.classes
    truth = [classes.index(os.path.basename(os.path.dirname(p))) for p in val_paths]
    assert (got.argmax(axis=1) == truth).mean() >= 0.8


def test_export_bundle_from_a_trained_checkpoint(shapes_run, tmp_path):
    onnx_export = pytest.importorskip("export.onnx_export")
    from edge.bundle import load_bundle

    bundle_dir = onnx_export.export_bundle(shapes_run.best_checkpoint, str(tmp_path / "bundle"),
                                           module_id="shapes", title="Synthetic shapes")
    bundle = load_bundle(bundle_dir)
    loaded = load_checkpoint(shapes_run.best_checkpoint)
    assert bundle.description.temperature == pytest.approx(loaded.description.temperature)
    assert bundle.description.classes == loaded.description.classes


def _interrupt_after_first_epoch(monkeypatch):
    import training.train as train_module

    original = train_module._write_metrics

    def write_then_stop(path, history):
        original(path, history)
        raise KeyboardInterrupt("simulated Ctrl-C after epoch {}".format(len(history)))

    monkeypatch.setattr(train_module, "_write_metrics", write_then_stop)


def test_resume_continues_from_the_saved_epoch_exactly(tiny_data, tmp_path, monkeypatch):
    straight = train(TrainConfig(data=tiny_data, epochs=2, out=str(tmp_path / "straight"), **TINY))
    interrupted = str(tmp_path / "interrupted")
    with monkeypatch.context() as patch:
        _interrupt_after_first_epoch(patch)
        with pytest.raises(KeyboardInterrupt):
            train(TrainConfig(data=tiny_data, epochs=2, out=interrupted, **TINY))
    assert read_checkpoint(os.path.join(interrupted, "last.pt"))["epoch"] == 1
    split_file = os.path.join(interrupted, "split.json")
    with open(split_file) as handle:
        split_before = handle.read()
    resumed = train(TrainConfig(data=tiny_data, epochs=2, out=interrupted, resume=True, **TINY))
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    with open(split_file) as handle:
        assert handle.read() == split_before
    a = read_checkpoint(straight.last_checkpoint)
    b = read_checkpoint(resumed.last_checkpoint)
    assert b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert [r["val_loss"] for r in straight.history] == [r["val_loss"] for r in resumed.history]


def test_resume_refuses_changed_settings_and_missing_run(tiny_data, tmp_path):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        train(TrainConfig(data=tiny_data, epochs=1, out=str(tmp_path / "none"), resume=True, **TINY))
    run = str(tmp_path / "run")
    train(TrainConfig(data=tiny_data, epochs=1, out=run, calibrate=False, **TINY))
    changed = dict(TINY, seed=5)
    with pytest.raises(ConfigError, match="seed"):
        train(TrainConfig(data=tiny_data, epochs=2, out=run, resume=True, **changed))


def test_multilabel_training_from_csv_and_export(tiny_data, tmp_path):
    classes = sorted(os.listdir(tiny_data))
    module_file = tmp_path / "module.json"
    module_file.write_text(json.dumps({
        "id": "ml-test", "title": "Multilabel test", "classes": classes, "task": "multilabel",
        "multi_finding": "multilabel", "image_size": 32, "augmentation": "none"}))
    rows = []
    for index, cls in enumerate(classes):
        for number, name in enumerate(sorted(os.listdir(os.path.join(tiny_data, cls)))):
            labels = [cls] if number % 3 else [cls, classes[(index + 1) % len(classes)]]
            rows.append({"image": "{}/{}".format(cls, name), "finding_labels": "|".join(labels),
                         "patient_id": "p{}-{}".format(index, number // 2)})
    csv_path = tmp_path / "labels.csv"
    with open(str(csv_path), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "finding_labels", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    config = dict(TINY, image_size=None)
    result = train(TrainConfig(data=tiny_data, csv=str(csv_path), module=str(module_file), epochs=1,
                               out=str(tmp_path / "run"), **config))
    loaded = load_checkpoint(result.best_checkpoint)
    assert loaded.description.task == "multilabel"
    assert loaded.description.input.height == 32
    assert loaded.module == {"id": "ml-test", "title": "Multilabel test"}
    model = DeployModel(loaded.net, loaded.description).eval()
    x = torch.rand(3, 3, 32, 32) * 255
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, opset_version=13, dynamo=False, input_names=["image"],
                      output_names=["probabilities"])
    got = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = torch.sigmoid(loaded.net(x) / loaded.description.temperature).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    from training.evaluate import evaluate_run

    metrics = evaluate_run(result.run_dir, split="test", out=str(tmp_path / "eval"), bootstrap=0).metrics
    assert metrics["task"] == "multilabel" and "confusion_matrices" in metrics
    assert os.path.isfile(str(tmp_path / "eval" / "report.md"))
    on_csv = evaluate_run(result.run_dir, csv=str(csv_path), data=tiny_data, out=str(tmp_path / "eval-csv"),
                          bootstrap=0).metrics
    assert on_csv["cases"] == len(rows)


def test_balancing_options_train(tiny_data, tmp_path):
    for balance in ("sampler", "weights"):
        result = train(TrainConfig(data=tiny_data, epochs=1, out=str(tmp_path / balance), balance=balance,
                                   calibrate=False, **TINY))
        assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])


def test_early_stopping_keeps_the_best_epoch(tiny_data, tmp_path, monkeypatch):
    import training.train as train_module

    losses = iter([0.5, 0.7, 0.9, 1.1])  # validation loss forced to rise after epoch 1
    monkeypatch.setattr(train_module, "val_metrics", lambda logits, targets, task: (next(losses), 0.5))
    result = train(TrainConfig(data=tiny_data, epochs=4, patience=1, out=str(tmp_path / "run"),
                               calibrate=False, **TINY))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert read_checkpoint(result.best_checkpoint)["epoch"] == 1
    assert read_checkpoint(result.last_checkpoint)["epoch"] == 2
