"""The CPU recipe (recipes/) end to end on a tiny subset of the real X-rays (few images, 64x64, one epoch)."""

import json
import os

import numpy as np
import pytest
import torch

from export.card import EXPORT_RECORD_TITLE
from recipes.card import rewrite_card
from recipes.config import recipe_for
from recipes.evaluation import classification_metrics
from recipes.run import train_recipe
from tests.conftest import ARTIFACTS_ENV, ROOT, SHARED_DATA
from training.metrics import wilson_interval

PEDIATRIC = os.path.join(SHARED_DATA, "chest-pediatric", "train")
# The recipe's crop and embedding caches for the tests: beside the test bundle ($MEDKIOSK_TEST_ARTIFACTS,
# default build/test-artifacts), never the checkout's runs/ that real recipe runs fill.
RECIPE_CACHE = os.path.join(os.environ.get(ARTIFACTS_ENV) or os.path.join(ROOT, "build", "test-artifacts"),
                            "recipe-cache")


def _tree(folder):
    """{path: (size, mtime)} of every file under ``folder`` (empty when it does not exist)."""
    found = {}
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            stat = os.stat(os.path.join(parent, name))
            found[os.path.join(parent, name)] = (stat.st_size, stat.st_mtime)
    return found


def test_wilson_interval_and_metrics_on_known_predictions():
    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.83 and 0.94 < high < 0.95
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    metrics = classification_metrics(probs, np.array([0, 0, 1, 1]), ["n", "p"], "multiclass", 0.65)
    assert metrics["accuracy"] == 0.75
    assert metrics["confusion_matrix"]["counts"] == [[2, 0], [1, 1]]
    assert metrics["per_class"]["p"]["sensitivity"] == 0.5 and metrics["per_class"]["p"]["specificity"] == 1.0
    assert metrics["per_class"]["p"]["auroc"] == 1.0
    assert metrics["abstain"]["coverage"] == 0.75 and metrics["abstain"]["accuracy_answered"] == 1.0


def test_unknown_recipe_and_baseline_are_config_errors():
    from edge.errors import ConfigError

    with pytest.raises(ConfigError):
        recipe_for("skin")
    with pytest.raises(ConfigError):
        recipe_for("chest", baseline="alexnet")
    assert recipe_for("chest", baseline="vgg16_seed").arch == "vgg16_seed"


@pytest.mark.skipif(not os.path.isdir(PEDIATRIC),
                    reason="../shared/data/chest-pediatric is not beside this checkout")
def test_recipe_runs_end_to_end_on_a_tiny_subset(tmp_path, monkeypatch):
    import onnxruntime as ort

    from edge.bundle import load_bundle
    from edge.preprocess import load_image, preprocess
    from recipes import photo_data
    from training import ood
    from training.checkpoint import load_checkpoint

    # The crop and embedding caches in the tests' own folder (kept between runs like the test bundle, so
    # the negatives are not rendered again each run), never the checkout's runs/: left as found.
    runs_before = _tree(os.path.join(ROOT, "runs"))
    monkeypatch.setattr(photo_data, "CROPS_DIR", os.path.join(RECIPE_CACHE, "photo-crops"))
    monkeypatch.setattr(photo_data, "EMBED_DIR", os.path.join(RECIPE_CACHE, "embed-cache"))
    recipe = recipe_for("pediatric-pneumonia", image_size=64, limit_per_class=4, tune_epochs=1,
                                head_epochs=3)
    result = train_recipe(recipe, str(tmp_path / "run"), split_dir=os.path.join(ROOT, "splits"),
                                  models_dir=str(tmp_path / "models"), docs_dir=str(tmp_path / "docs"),
                                  with_skimage=False)
    bundle = load_bundle(result.bundle)
    description = bundle.description
    assert bundle.module_id == "pediatric-pneumonia" and description.classes == ["Normal", "Pneumonia"]
    assert description.input_check["output"] == "ood_score" and description.input_check["threshold"] == 1.0
    assert description.temperature != 1.0
    for name in ("report.md", "confusion_matrix.png", "roc.png", "reliability.png", "metrics.json"):
        assert os.path.getsize(str(tmp_path / "docs" / name)) > 0
    with open(os.path.join(result.bundle, "model_card.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "Kermany" in card and "CC BY 4.0" in card and "not a diagnosis" in card
    assert card.count("# " + EXPORT_RECORD_TITLE) == 1 and card.count("## Export parity") == 1
    # Rewriting the installed card from the run's metrics.json rebuilds it from data: the exporter's
    # record appears once, unchanged.
    rewrite_card(recipe, result.run_dir, str(tmp_path / "models"), os.path.join(ROOT, "splits"))
    with open(os.path.join(result.bundle, "model_card.md"), encoding="utf-8") as handle:
        again = handle.read()
    assert again.count("# " + EXPORT_RECORD_TITLE) == 1
    assert again.split(EXPORT_RECORD_TITLE)[1] == card.split(EXPORT_RECORD_TITLE)[1]
    with open(str(tmp_path / "docs" / "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    assert metrics["input_check"]["test_xrays"]["n"] == 8
    assert metrics["input_check"]["out_of_scope"]["all"]["n"] == len(ood.generated_images())

    # The recipe exports the class-activation heatmap (recipe.heatmap) as a third output.
    assert [o.name for o in ort.InferenceSession(os.path.join(result.bundle, "model.onnx"), providers=[
        "CPUExecutionProvider"]).get_outputs()] == ["probabilities", "ood_score", "heatmap"]
    with open(os.path.join(result.bundle, "manifest.json"), encoding="utf-8") as handle:
        calibration = json.load(handle)["calibration"]
    assert calibration["display"] == ("percent" if calibration["ece_cv"] <= 0.05 else "words")
    assert metrics["cv"]["shipped_recipe"]["k"] == 5 and len(metrics["cv"]["shipped_recipe"]["folds"]) == 5
    assert metrics["input_check"]["scope"]["other_test"]["n"] > 0
    # The child recipe's operating point: chosen on the CV, in the graph (abstain refitted), on the card.
    point = metrics["operating_point"]
    assert point["class"] == "Pneumonia" and point["pooled"]["specificity"] >= 0.95
    assert description.abstain_threshold == pytest.approx(point["abstain_threshold"], abs=1e-6)
    assert "## Operating point" in again and "{:.3f}**".format(point["threshold"]) in again
    # The ONNX graph's ood_score equals the PyTorch head's (export parity only checks probabilities).
    session = ort.InferenceSession(os.path.join(result.bundle, "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    images = [np.full((80, 80, 3), 255, np.uint8), load_image(bundle.golden_samples()[0].path)]
    loaded = load_checkpoint(result.checkpoint)
    head = ood.InputCheckHead.from_state(torch.load(result.checkpoint, weights_only=True)["ood_head"])
    for image in images:
        x = preprocess(image, description.input)
        probabilities, score = session.run(["probabilities", "ood_score"], {"image": x})
        with torch.no_grad():
            expected = head(loaded.net.features(torch.from_numpy(x)), None, torch.from_numpy(x)).item()
        assert score.shape == (1,)
        assert abs(float(score[0]) - expected) <= 1e-3 * max(1.0, abs(expected))
        assert abs(float(probabilities.sum()) - 1.0) < 1e-5
    assert float(session.run(None, {"image": preprocess(images[0], description.input)})[1][0]) > 1.0  # blank
    assert _tree(os.path.join(ROOT, "runs")) == runs_before
    assert os.path.isfile(os.path.join(RECIPE_CACHE, "photo-crops", "negatives-s1-64.pt"))
