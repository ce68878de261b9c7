"""Calibration and evaluation maths on constructed cases with known answers."""

import json
import math
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import numpy as np  # noqa: E402

from training.calibration import (  # noqa: E402
    abstain_threshold,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
)
from training.evaluate import compute_metrics  # noqa: E402
from training.metrics import plot_confusion, plot_reliability, plot_roc, wilson_interval  # noqa: E402

pytestmark = pytest.mark.torch


def sampled_labels(logits, seed, task="multiclass"):
    """Labels drawn from the probabilities the logits state: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        return (rng.random(logits.shape) < torch.sigmoid(logits).numpy()).astype(np.float32)
    probs = torch.softmax(logits, dim=1).numpy()
    return np.array([rng.choice(probs.shape[1], p=p / p.sum()) for p in probs])


def test_fit_temperature_recovers_a_known_overconfidence():
    torch.manual_seed(0)
    logits = torch.randn(4000, 4) * 2.0
    labels = sampled_labels(logits, seed=1)
    # The model reports logits three times too large: the fitted T must undo that.
    temperature = fit_temperature(logits * 3.0, torch.as_tensor(labels), "multiclass")
    assert abs(temperature - 3.0) < 0.25
    summary = calibration_summary(logits * 3.0, torch.as_tensor(labels), "multiclass", temperature, 0.9)
    assert summary["nll_after"] < summary["nll_before"]
    assert summary["ece_after"] < summary["ece_before"]


def test_fit_temperature_multilabel_scalar():
    torch.manual_seed(1)
    logits = torch.randn(3000, 3) * 2.0
    labels = sampled_labels(logits, seed=2, task="multilabel")
    temperature = fit_temperature(logits / 2.0, torch.as_tensor(labels), "multilabel")
    assert abs(temperature - 0.5) < 0.08


def test_ece_of_a_constant_confidence_model():
    # Every prediction has confidence 0.8 and half are right: ECE = |0.5 - 0.8| = 0.3.
    probs = np.tile([0.8, 0.2], (10, 1))
    targets = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(probs, targets, "multiclass") == pytest.approx(0.3)
    assert expected_calibration_error(probs, np.zeros(10, dtype=int), "multiclass") == pytest.approx(0.2)


def test_abstain_threshold_keeps_the_requested_coverage():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=1000)
    for coverage in (0.5, 0.8, 0.95):
        threshold = abstain_threshold(probs, coverage)
        answered = (probs.max(axis=1) >= threshold).mean()
        assert coverage <= answered <= coverage + 0.002
    assert abstain_threshold(probs, 1.0) == 0.0


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_binary_metrics_sensitivity_specificity_and_confusion():
    # 6 negatives (5 right), 4 positives (3 right).
    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    predicted = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    logits = torch.tensor([[2.0, -2.0] if p == 0 else [-2.0, 2.0] for p in predicted])
    metrics, arrays = compute_metrics(logits, torch.as_tensor(targets), ["Normal", "Pneumonia"], "multiclass",
                                      bootstrap=20)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert metrics["confusion_matrix"] == [[5, 1], [1, 3]]
    assert metrics["binary"]["sensitivity"] == pytest.approx(0.75)
    assert metrics["binary"]["specificity"] == pytest.approx(5 / 6)
    assert metrics["per_class"]["Pneumonia"]["precision"] == pytest.approx(0.75)
    assert metrics["per_class"]["Normal"]["support"] == 6
    assert metrics["confusion_matrix_normalised"][0][0] == pytest.approx(5 / 6)
    assert set(arrays["rocs"]) == {"Normal", "Pneumonia"}


def test_multiclass_auroc_and_perfect_separation():
    logits = torch.eye(3).repeat(4, 1) * 5.0
    targets = torch.arange(3).repeat(4)
    metrics, _arrays = compute_metrics(logits, targets, ["a", "b", "c"], "multiclass", bootstrap=10)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_auroc"] == 1.0
    assert "binary" not in metrics
    assert "stored" not in metrics["abstain"]
    assert metrics["abstain"]["for_target_coverage"]["accuracy_answered"] == 1.0


def test_multilabel_metrics_and_plots(tmp_path):
    torch.manual_seed(3)
    logits = torch.randn(60, 3) * 3
    targets = torch.as_tensor(sampled_labels(logits, seed=4, task="multilabel"))
    metrics, arrays = compute_metrics(logits, targets, ["x", "y", "z"], "multilabel", temperature=1.5,
                                      bootstrap=20, stored_threshold=0.6)
    assert 0.5 < metrics["accuracy"] <= 1.0
    assert set(metrics["confusion_matrices"]) == {"x", "y", "z"}
    assert 0.5 < metrics["macro_auroc"] <= 1.0
    assert metrics["abstain"]["stored"]["threshold"] == 0.6
    plot_roc(arrays["rocs"], metrics["per_class"], str(tmp_path / "roc.png"))
    plot_reliability(arrays["before"], arrays["after"], arrays["targets"], "multilabel", 1.5,
                     str(tmp_path / "reliability.png"))
    plot_confusion([[3, 1], [0, 4]], ["a", "b"], str(tmp_path / "confusion.png"))
    for name in ("roc.png", "reliability.png", "confusion.png"):
        with open(os.path.join(str(tmp_path), name), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(metrics["per_class"])  # JSON-ready apart from nan handling done by evaluate_samples
