"""recipes.cv: patient-disjoint folds, the fold statistics, Bayes at another class mix, the display rule."""

import math

import numpy as np
import pytest
import torch

from recipes.config import recipe_for
from recipes.cv import at_prevalence, cross_validate, display_decision, fold_of_patients, mean_ci
from training.data import Sample


def _samples(n_patients=60, per_patient=2):
    classes = ["Normal", "Pneumonia"]
    return [Sample("p{}-{}.png".format(p, i), (classes[p % 2],), "p{}".format(p))
            for p in range(n_patients) for i in range(per_patient)], classes


def test_folds_keep_each_patient_in_one_fold_and_mix_classes():
    samples, classes = _samples()
    folds = fold_of_patients(samples, classes, 5, seed=0)
    assert set(folds.values()) == set(range(5)) and len(folds) == 60
    for fold in range(5):
        labels = {s.labels[0] for s in samples if folds[s.patient_id] == fold}
        assert labels == set(classes)


def test_mean_ci_is_the_t_interval():
    mean, (low, high) = mean_ci([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9)
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert low == pytest.approx(0.9 - half, abs=1e-5) and high == pytest.approx(0.9 + half, abs=1e-5)
    assert mean_ci([0.5]) == (0.5, (0.5, 0.5))
    assert math.isnan(mean_ci([float("nan")])[0])


def test_at_prevalence_is_bayes():
    value = at_prevalence(0.9, 0.8, 0.5)
    assert value["ppv"] == pytest.approx(0.45 / 0.55) and value["npv"] == pytest.approx(0.4 / 0.45)
    assert value["accuracy"] == pytest.approx(0.85)
    fewer = at_prevalence(0.9, 0.8, 0.625)
    assert fewer["accuracy"] == pytest.approx(0.9 * 0.625 + 0.8 * 0.375)


def test_percentages_only_at_or_below_five_percent_ece():
    assert display_decision(0.05) == "percent"
    assert display_decision(0.0501) == "words"
    assert display_decision(float("nan")) == "words" and display_decision(None) == "words"


def test_cross_validate_on_separable_embeddings():
    samples, classes = _samples()
    rng = np.random.default_rng(0)
    y = torch.tensor([classes.index(s.labels[0]) for s in samples])
    x = torch.tensor(rng.normal(0, 1, (len(samples), 8)), dtype=torch.float32) + 3.0 * y[:, None].float()
    recipe = recipe_for("pediatric-pneumonia", head_epochs=40, head_lr=0.05, cv_folds=5)
    head = torch.nn.Linear(8, 2)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    trained = {k: v.clone() + 1.0 for k, v in initial.items()}
    head.load_state_dict(trained)
    result = cross_validate(recipe, head, initial, (samples, x, y), None, classes, "multiclass")
    assert result["k"] == 5 and len(result["folds"]) == 5 and result["patients"] == 60
    assert sum(row["images"] for row in result["folds"]) == len(samples)  # every image tested once
    assert result["summary"]["accuracy"]["mean"] > 0.95
    assert result["summary"]["per_class"]["Pneumonia"]["auroc"]["mean"] > 0.98
    assert all(torch.equal(head.state_dict()[k], trained[k]) for k in trained)  # the shipped head is kept
