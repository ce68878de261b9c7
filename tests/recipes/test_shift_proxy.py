"""recipes.shift_proxy: the re-exposure family on a real X-ray, and the per-fold rates at a threshold."""

import glob
import os

import numpy as np
import pytest

from edge.preprocess import load_image
from recipes.config import DEFAULT_DATA_ROOT
from recipes.shift_proxy import CONTRAST, exposure, fold_rates

CHILD = os.path.join(DEFAULT_DATA_ROOT, "chest-pediatric", "train", "NORMAL", "*.jpeg")


@pytest.fixture(scope="module")
def xray():
    paths = sorted(glob.glob(CHILD))
    if not paths:
        pytest.skip("no pediatric X-rays under {}".format(CHILD))
    return load_image(paths[0])


def test_exposure_darkens_then_brightens_lowers_contrast_and_keeps_the_shape(xray):
    dark, bright = exposure(xray, 0), exposure(xray, 1)  # gamma 0.6 brightens, 1.6 darkens
    assert dark.shape == bright.shape == xray.shape and dark.dtype == np.uint8
    assert dark.mean() > xray.mean() + 10 > bright.mean() + 20
    assert dark.std() < CONTRAST * xray.std() * 1.05
    assert np.array_equal(exposure(xray, 2), dark)  # deterministic, alternating


def testfold_rates_at_a_threshold():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95]])
    targets = np.array([0, 0, 1, 0, 1, 1])
    fold = np.array([0, 0, 0, 1, 1, 1])
    rates = fold_rates(probs, targets, fold, 0.75, 1)
    assert rates["specificity"]["folds"] == [1.0, 1.0] and rates["sensitivity"]["folds"] == [1.0, 1.0]
    rates = fold_rates(probs, targets, fold, 0.5, 1)
    assert rates["specificity"]["folds"] == [0.5, 1.0] and rates["accuracy"]["mean"] == pytest.approx(5 / 6)


def test_card_table_from_the_proxy_json(tmp_path):
    import json

    from recipes.card_shift import card_lines

    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4], [0.2, 0.8], [0.05, 0.95]])
    targets, fold = np.array([0, 0, 1, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1])
    path = tmp_path / "shift-proxy.json"
    path.write_text(json.dumps({"family": "exposure", "threshold": 0.5, "images": 6, "every": 3,
                                "clean": fold_rates(probs, targets, fold, 0.5, 1),
                                "degraded": fold_rates(probs, targets, fold, 0.75, 1)}))
    text = "\n".join(card_lines("pediatric-pneumonia", str(path)))
    assert "| as stored | 83.3%" in text and "| re-exposed | 100.0%" in text and "(0.500)" in text
    assert "intensity" not in text  # no trial JSON beside it
    rates = fold_rates(probs, targets, fold, 0.5, 1)
    (tmp_path / "intensity-trial.json").write_text(json.dumps({
        "proxy_images": 6, "augmented_images": 4, "shipped": {"processing": rates},
        "intensity": {"threshold": 0.6, "processing": fold_rates(probs, targets, fold, 0.75, 1)}}))
    rows = card_lines("pediatric-pneumonia", str(path))[-2:]
    assert rows[0].startswith("| processed: CLAHE") and "| 83.3%" in rows[0]
    assert "4 intensity renders" in rows[1] and "0.600" in rows[1] and "| 100.0%" in rows[1]
    assert card_lines("pediatric-pneumonia", str(tmp_path / "absent.json")) == []


@pytest.mark.parametrize("argv, option", [(["--every", "0"], "--every"), (["--threads", "-1"], "--threads")])
def test_a_count_below_one_is_refused_in_one_line_before_any_work(argv, option, capsys, monkeypatch):
    from recipes import shift_proxy

    monkeypatch.setattr(shift_proxy, "frozen_setup", None)  # any work past the check would fail loudly
    assert shift_proxy.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "medkiosk: error: {} {} is not a count. Fix: pass {} 1 or more\n".format(
        option, argv[1], option)
