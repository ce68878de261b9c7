"""recipes.aux_cv: the 14 NIH findings as auxiliary targets; dropped images train only where no test
patient owns them; every module image tested once."""

import os

import numpy as np
import pytest
import torch

from recipes.aux_cv import _loss, _take, aux_cross_validate, extra_samples, multi_hot, nih_findings
from training.data import Sample

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data")
CLASSES = ["Normal", "Pneumonia"]


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside this checkout")
def test_the_nih_findings_are_the_fourteen_labels_and_dropped_images_are_the_rest():
    rows, names = nih_findings(SHARED)
    assert len(names) == 14 and "No Finding" not in names and "Effusion" in names and "Hernia" in names
    kept = set(sorted(rows)[:10])
    extra = extra_samples(rows, kept)
    assert len(extra) == len(rows) - 10 and not kept & {s.path for s in extra}
    hot = multi_hot([s.path for s in extra[:50]], rows, names)
    assert hot.shape == (50, 14)
    assert [int(hot[i].sum()) for i in range(50)] == [len(rows[s.path][0]) for s in extra[:50]]


def test_loss_ignores_rows_without_a_module_class():
    logits = torch.zeros(2, 2 + 3, requires_grad=True)
    main, aux = torch.tensor([-1, 1]), torch.zeros(2, 3)
    expected = float(np.log(2.0)) + 0.5 * float(np.log(2.0))
    assert _loss(logits, main, aux, 2, 0.5).item() == pytest.approx(expected, rel=1e-5)
    assert _loss(logits, torch.tensor([-1, -1]), aux, 2, 0.0).item() == 0.0


def test_rows_of_patients_in_no_fold_train_only():
    samples = [Sample("a", ("x",), "p1"), Sample("b", ("x",), "p2"), Sample("c", ("x",), "stranger")]
    data = (samples, torch.arange(3.0)[:, None], torch.tensor([0, 1, -1]), torch.zeros(3, 1))
    folds_of = {"p1": 0, "p2": 1}
    assert _take(data, folds_of, {0})[0].flatten().tolist() == [0.0]
    assert _take(data, folds_of, {1}, train_only=True)[0].flatten().tolist() == [1.0, 2.0]


def test_cross_validation_tests_every_image_once_and_learns():
    rng = np.random.default_rng(0)
    samples = [Sample("p{}.png".format(p), (CLASSES[p % 2],), "p{}".format(p)) for p in range(60)]
    y = torch.tensor([p % 2 for p in range(60)])
    x = torch.tensor(rng.normal(0, 1, (60, 8)), dtype=torch.float32) + 2.0 * y[:, None].float()
    hot = torch.stack([y.float(), 1 - y.float()], dim=1)
    files = (samples, x, y, hot)
    crops = (samples, x + 0.1, y, hot)
    extra_samples_ = [Sample("e{}.png".format(i), ("Other",), "e{}".format(i)) for i in range(10)]
    extra = (extra_samples_, torch.tensor(rng.normal(0, 1, (10, 8)), dtype=torch.float32),
             torch.full((10,), -1, dtype=torch.long), torch.zeros(10, 2))
    runs = {}
    for hidden in (0, 16):
        for weight in (0.0, 1.0):
            summary, per_fold = aux_cross_validate(files, crops, extra, CLASSES, 5, 0, weight, hidden=hidden)
            assert len(per_fold) == 5 and min(per_fold) > 0.8
            assert summary["per_class"]["Pneumonia"]["auroc"]["mean"] > 0.9
            runs[hidden, weight] = (per_fold, summary["ece"]["mean"])
    # A linear head's outputs share no weights: the auxiliary targets cannot move the module's outputs.
    assert runs[0, 0.0] == runs[0, 1.0]
    assert runs[16, 0.0] != runs[16, 1.0]
