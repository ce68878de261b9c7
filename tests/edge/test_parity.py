"""``edge.parity.compare_probabilities``: the tolerance and top-1 rules every parity check uses."""

import numpy as np

from edge.parity import MIN_TOP1_AGREEMENT, TOLERANCES, compare_probabilities


def _rows(n):
    return np.array([[0.5, 0.25, 0.25]] * n)  # binary fractions: differences below are exact


def test_tolerance_boundary_is_inclusive():
    reference = _rows(4)
    at = reference.copy()
    at[:, 0] -= 0.125
    at[:, 1] += 0.125
    report = compare_probabilities(reference, at, 0.125)
    assert report["max_abs_diff"] == 0.125 and report["ok"]
    above = reference.copy()
    above[0, 0] -= 0.125 + 2.0 ** -20  # just above the tolerance, still exact
    report = compare_probabilities(reference, above, 0.125)
    assert not report["ok"] and report["max_abs_diff"] > 0.125


def test_top1_agreement_boundary():
    reference = np.tile([[0.6, 0.4]], (100, 1))
    candidate = reference.copy()
    candidate[0] = [0.4, 0.6]  # one flipped row of 100: agreement 0.99, exactly the floor
    report = compare_probabilities(reference, candidate, 1.0)
    assert report["top1_agreement"] == MIN_TOP1_AGREEMENT and report["ok"]
    assert report["top1_mismatches"] == [0]
    candidate[1] = [0.4, 0.6]
    assert not compare_probabilities(reference, candidate, 1.0)["ok"]


def test_refusals_shapes_and_non_finite():
    report = compare_probabilities(_rows(2), _rows(3), 1.0)
    assert report == {"ok": False, "n": 2, "problem": "shapes differ: (2, 3) vs (3, 3)"}
    bad = _rows(2)
    bad[1, 0] = np.nan
    report = compare_probabilities(_rows(2), bad, 1.0)
    assert not report["ok"] and report["finite"] is False


def test_one_row_and_the_precision_table():
    report = compare_probabilities([0.5, 0.5], [0.5, 0.5], TOLERANCES["fp32"])
    assert report["ok"] and report["n"] == 1 and report["max_abs_diff"] == 0.0
    assert TOLERANCES["fp32"] < TOLERANCES["fp16"] < TOLERANCES["int8"]
