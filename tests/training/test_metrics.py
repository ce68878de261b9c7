"""training.metrics: the paired files-vs-frames AUROC bootstrap, the one both ``training.photo_eval`` and
``recipes.camera_cv`` use (they each had a copy until the copies were merged)."""

import numpy as np
import pytest

from training.metrics import binary_auroc, paired_auroc_table, rank_auroc

CLASSES = ["Normal", "Pneumonia", "Effusion", "Absent"]
# What both copies printed for the fixed input below (photo_eval's through scikit-learn's AUROC,
# camera_cv's through the rank sum), before they became one function: byte for byte the same since.
BEFORE = {
    "Effusion": {"files": [0.348, 0.1027, 0.5871], "frames": [0.372, 0.1826, 0.5627],
              "difference": [0.024, -0.1161, 0.1607], "positives": 5},
    "Normal": {"files": [0.42, 0.1842, 0.6629], "frames": [0.49, 0.2536, 0.7245],
              "difference": [0.07, -0.0497, 0.2051], "positives": 20},
    "Pneumonia": {"files": [0.46, 0.215, 0.6962], "frames": [0.34, 0.1585, 0.555],
              "difference": [-0.12, -0.3394, 0.0833], "positives": 10},
}
POINTS = {name: {key: value[:1] if key != "positives" else value for key, value in row.items()}
          for name, row in BEFORE.items()}


def _fixed_input():
    """30 images, scores rounded to one decimal (ties), "Absent" with no positive (left out)."""
    rng = np.random.RandomState(7)
    labels = [["Normal"] if i % 3 else ["Pneumonia", "Effusion"] if i % 2 else ["Pneumonia"]
              for i in range(30)]
    files = np.round(rng.rand(30, 4), 1)
    frames = np.round(np.clip(files + rng.normal(0, 0.2, files.shape), 0, 1), 1)
    return labels, files, frames


def test_the_paired_bootstrap_gives_what_both_copies_gave():
    labels, files, frames = _fixed_input()
    assert paired_auroc_table(CLASSES, labels, files, frames, seed=3) == BEFORE
    assert paired_auroc_table(CLASSES, labels, files, frames, draws=0) == POINTS


def test_photo_eval_uses_it_with_its_1000_draws():
    from training.photo_eval import BOOTSTRAP, auroc_table

    labels, files, frames = _fixed_input()
    assert BOOTSTRAP == 1000
    assert auroc_table(CLASSES, labels, files, frames, seed=3) == BEFORE


def test_the_rank_sum_auroc_is_scikit_learns_with_ties_and_none_for_one_class():
    rng = np.random.RandomState(1)
    truth = (rng.rand(50) > 0.6).astype(np.int64)
    scores = np.round(rng.rand(50), 1)
    assert rank_auroc(truth, scores) == pytest.approx(binary_auroc(truth, scores), abs=1e-12)
    assert rank_auroc(np.ones(5, np.int64), scores[:5]) is None
    assert rank_auroc(np.zeros(5, np.int64), scores[:5]) is None
