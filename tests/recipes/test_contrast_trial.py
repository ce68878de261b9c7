"""The contrast normalisation on the training side: training inputs equal the device's (``edge.classify``),
stored renders are kept raw and normalised after loading (never a stale, unnormalised crop), the trial's
mode check and blank-frame check (recipes.contrast_trial)."""

import glob
import os

import numpy as np
import pytest
import torch

from edge.description import InputSpec, ModelDescription
from edge.errors import ConfigError
from edge.preprocess import load_image, preprocess
from recipes.config import DEFAULT_DATA_ROOT
from recipes.contrast_trial import _spread, blank_check, checked_modes
from recipes.data import cache_images, normalise_inputs, raw_spec
from training.data import Sample

CHILD = os.path.join(DEFAULT_DATA_ROOT, "chest-pediatric", "train", "*", "*.jpeg")
MODES = ("equalize", "clahe", "stretch")


@pytest.fixture(scope="module")
def samples():
    paths = sorted(glob.glob(CHILD))[::400][:6]
    if not paths:
        pytest.skip("no pediatric X-rays under {}".format(CHILD))
    return [Sample(p, (os.path.basename(os.path.dirname(p)),), str(i)) for i, p in enumerate(paths)]


class _Bundle(object):
    def __init__(self, spec):
        self.description = ModelDescription("efficientnet_lite0", "multiclass", ["NORMAL", "PNEUMONIA"], spec)
        self.module_id = "pediatric-pneumonia"


@pytest.mark.parametrize("mode", MODES)
def test_training_inputs_equal_the_device_path(mode, samples):
    """cache_images (training, embeddings) and edge.classify.prepare (the kiosk) feed the same pixels; the
    stored-then-normalised route (crops, negatives) is the same again."""
    from edge.classify import prepare

    spec = InputSpec(224, 224, contrast=mode)
    training = cache_images(samples, spec)
    device = np.concatenate([prepare(load_image(s.path), _Bundle(spec)).batch for s in samples])
    np.testing.assert_array_equal(training.numpy().astype(np.float32), device)
    after = normalise_inputs(cache_images(samples, raw_spec(spec)), mode)
    assert torch.equal(after, training)
    assert not torch.equal(after, cache_images(samples, InputSpec(224, 224)))


def test_raw_spec_drops_only_the_normalisation():
    spec = InputSpec(96, 128, colour="GRAY", resize="linear", contrast="clahe")
    raw = raw_spec(spec)
    assert raw.contrast == "none"
    assert raw.to_dict() == {k: v for k, v in spec.to_dict().items() if k != "contrast"}
    assert normalise_inputs(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "none").shape == (2, 1, 8, 8)


def test_stored_renders_are_raw_and_normalised_after_loading(monkeypatch, tmp_path):
    """A crop file made for one normalisation must never serve another: crops are stored raw."""
    from recipes import photo_data

    monkeypatch.setattr(photo_data, "CROPS_DIR", str(tmp_path))
    rng = np.random.RandomState(0)
    images = [np.clip(rng.normal(110, 25, (300, 260, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    monkeypatch.setattr(photo_data, "negative_images", lambda seed: [("n{}".format(i), im)
                                                                     for i, im in enumerate(images)])
    spec = InputSpec(224, 224, contrast="equalize")
    names, normalised = photo_data.negatives(spec)
    stored = torch.load(os.path.join(str(tmp_path), "negatives-s1-224.pt"))["images"]
    expected_raw = np.stack([preprocess(im, InputSpec(224, 224))[0] for im in images]).astype(np.uint8)
    np.testing.assert_array_equal(stored.numpy(), expected_raw)
    np.testing.assert_array_equal(normalised.numpy(),
                                  np.stack([preprocess(im, spec)[0] for im in images]).astype(np.uint8))
    _names, plain = photo_data.negatives(InputSpec(224, 224))  # the same file serves the raw spec
    assert torch.equal(plain, stored) and names == ["n0", "n1", "n2"]


def test_the_embedding_cache_is_per_normalisation(monkeypatch):
    from dataclasses import replace

    from recipes import photo_data
    from recipes.config import recipe_for

    recipe = recipe_for("pediatric-pneumonia")
    made = []
    # EmbeddingCache's constructor reads every shard of its folder: record the folder instead.
    monkeypatch.setattr(photo_data, "EmbeddingCache", made.append)
    for mode in ("none",) + MODES:
        photo_data.embedding_cache(replace(recipe, contrast=mode))
    folders = dict(zip(("none",) + MODES, made))
    assert folders["none"].endswith("efficientnet_lite0-224-imagenet")  # the cache made before the field
    assert len(set(folders.values())) == 4


def test_checked_modes_refuses_an_unknown_mode_and_names_the_choices():
    assert checked_modes("none, equalize") == ["none", "equalize"]
    with pytest.raises(ConfigError) as info:
        checked_modes("equalize,gamma")
    assert "'gamma'" in str(info.value) and "Fix:" in str(info.value) and "stretch" in str(info.value)
    with pytest.raises(ConfigError):
        checked_modes(" , ")


def test_blank_check_counts_frames_below_the_contrast_terms_threshold(samples):
    from recipes.config import recipe_for

    recipe = recipe_for("pediatric-pneumonia")
    xrays = cache_images(samples, InputSpec(224, 224))
    rng = np.random.RandomState(1)
    blank = torch.from_numpy(np.clip(rng.normal(128, 2, (1, 3, 224, 224)), 0, 255).astype(np.uint8))
    blank[:, 1:] = blank[:, :1]
    negatives = (["blank-wall", "xray-like"], torch.cat([blank, xrays[:1]]))
    for mode in ("none",) + MODES:
        result = blank_check(recipe, negatives, xrays, mode)
        threshold = recipe.contrast_fraction * float(_spread(normalise_inputs(xrays, mode)).min())
        assert result["threshold"] == pytest.approx(threshold)
        assert result["refused_by_contrast"] == 1 and result["names"] == ["blank-wall"], mode


def test_card_table_from_the_trial_json(tmp_path):
    import json

    from recipes.card_shift import card_lines
    from recipes.shift_proxy import fold_rates

    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95]])
    targets, fold = np.array([0, 0, 1, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1])
    low, high = fold_rates(probs, targets, fold, 0.5, 1), fold_rates(probs, targets, fold, 0.75, 1)
    path = tmp_path / "shift-proxy.json"
    path.write_text(json.dumps({"family": "exposure", "threshold": 0.5, "images": 6, "every": 3,
                                "clean": low, "degraded": high}))
    assert "Contrast normalisation" not in "\n".join(card_lines("pediatric-pneumonia", str(path)))
    ece = {"ece_cv": {"mean": 0.012, "ci95": [0.01, 0.014]}}
    rows = [{"mode": mode, "clean": low, "operating_point": ece, "exposure": high, "processing": low}
            for mode in ("none", "clahe")]
    (tmp_path / "contrast-trial.json").write_text(json.dumps({"proxy_images": 6, "candidates": rows}))
    text = card_lines("pediatric-pneumonia", str(path))
    table = [line for line in text if line.startswith("| CLAHE") or line.startswith("| none")]
    assert len(table) == 2 and "CLAHE (clip 2, 8x8 tiles)" in table[1]
    assert table[1].endswith("| 0.012 [0.010, 0.014] | 100.0% [100.0, 100.0] | 75.0% [-242.7, 392.7] |")


@pytest.mark.onnxruntime
def test_a_recipe_with_a_normalisation_ships_it_and_the_device_applies_it(tmp_path):
    """A tiny child recipe with CLAHE: the bundle declares it, export parity and the golden images were
    computed through it, and the kiosk's Classifier (edge.classify) reproduces the golden outputs, which
    the same graph fed unnormalised pixels does not."""
    import json

    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from recipes.config import ROOT, recipe_for
    from recipes.run import train_recipe

    recipe = recipe_for("pediatric-pneumonia", image_size=64, limit_per_class=4, tune_epochs=1, head_epochs=3,
                        contrast="clahe")
    result = train_recipe(recipe, str(tmp_path / "run"), split_dir=os.path.join(ROOT, "splits"),
                          models_dir=str(tmp_path / "models"), docs_dir=None, with_skimage=False)
    with open(os.path.join(result.bundle, "manifest.json"), encoding="utf-8") as handle:
        assert json.load(handle)["model"]["input"]["contrast"] == "clahe"
    bundle = load_bundle(result.bundle)
    assert bundle.description.input.contrast == "clahe"
    golden = bundle.golden_samples()
    assert len(golden) >= 2
    plain = InputSpec.from_dict(dict(bundle.description.input.to_dict(), contrast="none"))
    with Classifier(open_runner(bundle, backend="onnxruntime", precision="fp32")) as classifier:
        gaps = []
        for sample in golden:
            image = load_image(sample.path)
            np.testing.assert_allclose(classifier.classify(image).probabilities, sample.probabilities,
                                       atol=sample.tolerance)
            unnormalised = classifier.runner.infer(preprocess(image, plain))["probabilities"][0]
            gaps.append(float(np.abs(np.asarray(unnormalised) - sample.probabilities).max()))
    assert max(gaps) > 1e-3, gaps  # the golden outputs need the normalisation
