"""Temperature scaling guards (fit on validation logits)."""

import pytest

torch = pytest.importorskip("torch")

from training.calibration import MIN_T, fit_temperature  # noqa: E402


def test_overconfident_logits_are_softened():
    torch.manual_seed(0)
    targets = torch.randint(0, 3, (300,))
    logits = torch.randn(300, 3)
    logits[torch.arange(300), targets] += 1.0
    fitted = fit_temperature(logits * 4.0, targets, "multiclass")
    assert 2.5 < fitted < 6.0


def test_perfectly_separated_validation_does_not_sharpen_to_certainty():
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = torch.full((6, 3), -2.0)
    logits[torch.arange(6), targets] = 3.0
    fitted = fit_temperature(logits, targets, "multiclass")
    assert fitted == pytest.approx(MIN_T)
    assert MIN_T >= 0.5
