"""Comparing probabilities between backends and precisions (numpy only; runs on the device)."""

from edge.lazy import require

# Max |difference| allowed on calibrated probabilities, per precision of the candidate.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
MIN_TOP1_AGREEMENT = 0.99


def compare_probabilities(reference, candidate, tolerance, min_top1_agreement=MIN_TOP1_AGREEMENT):
    """Compare two [N, K] probability arrays; return a JSON-ready dict with ``ok``.

    ``ok`` needs max |difference| <= tolerance and the top-1 class to agree on at least
    ``min_top1_agreement`` of the rows.
    """
    np = require("numpy")
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return {"ok": False, "n": int(reference.shape[0]) if reference.ndim else 0,
                "problem": "shapes differ: {} vs {}".format(reference.shape, candidate.shape)}
    if reference.ndim == 1:
        reference = reference[None, :]
        candidate = candidate[None, :]
    diff = np.abs(reference - candidate)
    agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
    finite = bool(np.all(np.isfinite(candidate)))
    agreement = float(agree.mean()) if agree.size else 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    return {
        "ok": finite and max_abs <= tolerance and agreement >= min_top1_agreement,
        "n": int(reference.shape[0]),
        "max_abs_diff": max_abs,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "tolerance": float(tolerance),
        "top1_agreement": agreement,
        "min_top1_agreement": float(min_top1_agreement),
        "top1_mismatches": [int(i) for i in np.nonzero(~agree)[0]],
        "finite": finite,
    }
