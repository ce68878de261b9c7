"""The contrast trial's scoring for a module judged by AUROC rather than an operating point: the adult
``chest`` module (4 classes, the kiosk's top-1). Used by ``recipes.contrast_trial --module chest``.

Per mode, from the out-of-fold probabilities of the recipe's patient folds (each image scored by the fold
model that never saw its patient, temperature from the next fold): per-fold accuracy, macro AUROC, ECE
after temperature scaling and per-class AUROC (``recipes.cv.summarise``: mean and t-interval over folds)
and the pooled per-class AUROC. On every ``proxy_every``-th image, degraded BEFORE the preprocessing:

- ``exposure`` (``recipes.shift_proxy``) and ``processing`` (``recipes.intensity_trial``): the pooled AUROC
  of the degraded images and degraded - clean per class and macro (bootstrap over patients);
- ``dicom_stretch``: the image's grey range stretched to 0-255, what ``edge.dicom`` shows for a DICOM
  without a window (``tests/edge/test_dicom.py``'s "mono2-no-window"): the |probability change| per class
  (mean, max) and the share of images whose largest change exceeds ``DICOM_TOLERANCE`` (that test's).

``compare`` adds each mode's paired out-of-fold AUROC difference vs ``none`` (bootstrap over patients).
"""

import numpy as np

from recipes import cv
from recipes.dicom_proxy import DICOM_TOLERANCE, dicom_stretch, probability_change  # noqa: F401 (used by tests)
from recipes.intensity_trial import processing
from recipes.shift_proxy import exposure
from recipes.tail_cv import fold_metrics, paired_difference, pooled_aurocs

DRAWS = 1000


PROXIES = {"exposure": exposure, "processing": processing, "dicom_stretch": dicom_stretch}
DEGRADATIONS = ("exposure", "processing")  # scored by AUROC; dicom_stretch by the probability change


def _rounded(values):
    return [None if v is None else round(float(v), 4) for v in values]


def fold_summary(probs, targets, fold, classes):
    """``cv.summarise`` of per-fold metrics of out-of-fold probabilities (ECE after temperature)."""
    rows = [fold_metrics(probs[fold == f], targets[fold == f], len(classes), classes)
            for f in sorted(set(fold.tolist()))]
    summary = cv.summarise(rows, classes)
    summary["macro_auroc"]["folds"] = _rounded(r["macro_auroc"] for r in rows)
    summary["ece"]["folds"] = _rounded(r["ece"] for r in rows)
    return summary


def degradation(samples, classes, clean, degraded, targets, draws=DRAWS):
    """Pooled AUROC of ``degraded`` per class and macro, and degraded - clean (patient bootstrap)."""
    aurocs = pooled_aurocs(targets, degraded)
    macro = float(np.mean([a for a in aurocs if a is not None]))
    pooled = dict(zip(classes, _rounded(aurocs)), macro=round(macro, 4))
    return {"auroc": pooled, "minus_clean": paired_difference(samples, classes, clean, degraded, draws)}


def score(oof, samples, pick, classes):
    """The record's measured part. ``oof`` = (probs, targets, fold, also_probs) of
    ``operating_point.out_of_fold`` with ``also`` = the chosen images once per ``PROXIES`` entry."""
    probs, targets, fold, also_probs = oof
    count = len(pick)
    record = {"cv": fold_summary(probs, targets, fold, classes),
              "pooled_auroc": dict(zip(classes, _rounded(pooled_aurocs(targets, probs))))}
    chosen = [samples[i] for i in pick]
    for index, proxy in enumerate(PROXIES):
        part = also_probs[index * count:(index + 1) * count]
        if proxy in DEGRADATIONS:
            record[proxy] = degradation(chosen, classes, probs[pick], part, targets[pick])
        else:
            record[proxy] = probability_change(classes, probs[pick], part)
    record["_oof"] = probs  # for ``compare``; not written
    return record


def compare(rows, samples, classes, draws=DRAWS):
    """Each row: ``versus_none`` = its out-of-fold AUROC - ``none``'s per class and macro (patient
    bootstrap); the out-of-fold probabilities are dropped from the rows."""
    baseline = next((row["_oof"] for row in rows if row["mode"] == "none"), None)
    for row in rows:
        probs = row.pop("_oof")
        if baseline is not None and row["mode"] != "none":
            row["versus_none"] = paired_difference(samples, classes, baseline, probs, draws)
    return rows


def _ci(entry, signed=False):
    text = "{:+.3f} [{:+.3f}, {:+.3f}]" if signed else "{:.3f} [{:.3f}, {:.3f}]"
    return text.format(entry["mean"], *entry["ci95"]) if isinstance(entry, dict) else text.format(*entry)


def markdown(result):
    """The trial's tables (Markdown) from its JSON summary (``contrast_trial --module chest --json``)."""
    rows = result["candidates"]
    classes = list(rows[0]["pooled_auroc"])
    lines = ["| mode | macro AUROC (folds) | vs none: macro | " + " | ".join(
        "vs none: {}".format(c) for c in classes) + " | ECE after T |", "|---" * (4 + len(classes)) + "|"]
    for row in rows:
        diff = row.get("versus_none")
        cells = [_ci(diff[c], True) if diff else "—" for c in ["macro"] + classes]
        lines.append("| {} | {} | {} | {} |".format(row["mode"], _ci(row["cv"]["macro_auroc"]),
                                                    " | ".join(cells), _ci(row["cv"]["ece"])))
    lines += ["", "| mode | DICOM stretch: mean abs change | images over {} | p95 of largest | exposure: "
              "macro AUROC, degraded - clean | processing: macro AUROC, degraded - clean | blanks refused "
              "by contrast |".format(rows[0]["dicom_stretch"]["tolerance"]), "|---|---|---|---|---|---|---|"]
    for row in rows:
        dicom, blank = row["dicom_stretch"], row["blank"]
        lines.append("| {} | {:.4f} | {:.1%} of {} | {:.3f} | {:.3f}, {} | {:.3f}, {} | {}/{} |".format(
            row["mode"], dicom["mean"], dicom["over_tolerance"], dicom["images"], dicom["p95_largest"],
            row["exposure"]["auroc"]["macro"], _ci(row["exposure"]["minus_clean"]["macro"], True),
            row["processing"]["auroc"]["macro"], _ci(row["processing"]["minus_clean"]["macro"], True),
            blank["refused_by_contrast"], blank["negatives"]))
    return "\n".join(lines) + "\n"
