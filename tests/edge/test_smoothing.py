"""edge.smoothing: the live view's exponential moving average."""

import pytest

from edge.smoothing import ProbabilitySmoother


def test_smoothing_is_an_ema_reset_per_module():
    smoother = ProbabilitySmoother(0.5)
    assert smoother.update([1.0, 0.0], key="a") == [1.0, 0.0]
    assert smoother.update([0.0, 1.0], key="a") == [0.5, 0.5]
    assert smoother.update([0.0, 1.0], key="b") == [0.0, 1.0]  # another module starts afresh
    smoother.reset()
    assert smoother.update([0.2, 0.8], key="b") == [0.2, 0.8]
    assert ProbabilitySmoother(0.0).update([0.3, 0.7]) == [0.3, 0.7]
    with pytest.raises(ValueError):
        ProbabilitySmoother(1.0)
