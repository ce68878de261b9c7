"""Model-card and report sections for the cross-validation, the calibration display decision, the
input check's patient-group scope and the photographed test set (``training.photo_eval``'s JSON)."""

import json
import os

from recipes.config import ROOT
from recipes.report import num, pct

PHOTO_RESULTS = os.path.join(ROOT, "docs", "models", "photographed")
MODEL_DOCS = os.path.join(ROOT, "docs", "models")  # <module>/camera-cv.json: recipes.camera_cli's result
# The child module's outside test set (Kermany's official test split) has 37.5% normals; its
# training data 25.7% (issue 13): the numbers at both mixes.
PREVALENCE_MIXES = {"pediatric-pneumonia": ("Pneumonia", (1 - 0.257, 1 - 0.375))}
SCOPE_ROWS = (
    ("val", "own group's validation X-rays, files (threshold set here)"),
    ("val_photo", "own group's validation X-rays, photographed crops (threshold set here)"),
    ("other_val", "the other patient group's validation X-rays"),
    ("other_test", "**the other patient group's test X-rays**"),
    ("negatives", "generated non-X-rays, seed 1 (fitted on)"),
)


def _mean(entry, as_pct=False):
    return (pct if as_pct else num)(entry["mean"], entry["ci95"])


def cv_lines(metrics, classes):
    """The k-fold table: per-class AUROC, sensitivity, specificity; accuracy and ECE (mean [95% CI])."""
    results = metrics.get("cv")
    if not results:
        return []
    main = results["shipped_recipe"]
    point = ("the top-1 class before the operating point's offset (below)" if metrics.get("operating_point")
             else "the top-1 class (the kiosk's first finding)")
    lines = ["{} folds by patient over all {} images ({} patients) the module keeps; each fold trained on "
             "3 folds (+ their photographed crops), stopped and temperature-scaled on the next, tested on "
             "its own. Mean over folds [95% t-interval]. Operating point: {}.".format(
                 main["k"], main["images"], main["patients"], point), "",
             "| class | AUROC | sensitivity | specificity |", "|---|---|---|---|"]
    for name in classes:
        row = main["summary"]["per_class"][name]
        lines.append("| {} | {} | {} | {} |".format(
            name, _mean(row["auroc"]), _mean(row["sensitivity"], True), _mean(row["specificity"], True)))
    summary = main["summary"]
    lines += [""]
    if "accuracy" in summary:
        lines.append("- Accuracy {}; macro AUROC {}.".format(_mean(summary["accuracy"], True),
                                                            _mean(summary["macro_auroc"])))
    lines.append("- ECE {} before and {} after temperature scaling.".format(
        _mean(summary["ece_before_temperature"]), _mean(summary["ece"])))
    other = results.get("files_only")
    if other:
        lines.append("- Tried: the same folds without photographed crops in training: macro AUROC {} "
                     "(with crops {}), ECE {}{}.".format(
                         _mean(other["summary"]["macro_auroc"]), _mean(summary["macro_auroc"]),
                         _mean(other["summary"]["ece"]),
                         ", accuracy {}".format(_mean(other["summary"]["accuracy"], True))
                         if "accuracy" in other["summary"] else ""))
    return lines + prevalence_lines(metrics)


def prevalence_lines(metrics):
    """PPV/NPV/accuracy of the CV operating point recomputed at other class mixes (Bayes); a recipe with
    its own operating point has its table in ``recipes.operating_point.card_lines`` instead."""
    from recipes.cv import at_prevalence

    module = metrics.get("module")
    if module not in PREVALENCE_MIXES or not metrics.get("cv") or metrics.get("operating_point"):
        return []
    positive, mixes = PREVALENCE_MIXES[module]
    row = metrics["cv"]["shipped_recipe"]["summary"]["per_class"][positive]
    negative = [c for c in metrics["cv"]["shipped_recipe"]["summary"]["per_class"] if c != positive][0]
    sens, spec = row["sensitivity"]["mean"], row["specificity"]["mean"]
    lines = ["", "Class mix (sensitivity {} and specificity {} from the CV, recomputed by Bayes):".format(
        pct(sens), pct(spec)), "",
        "| {} share | PPV ({}) | NPV | accuracy |".format(negative, positive), "|---|---|---|---|"]
    for prevalence in mixes:
        value = at_prevalence(sens, spec, prevalence)
        lines.append("| {} | {} | {} | {} |".format(
            pct(1 - prevalence), pct(value["ppv"]), pct(value["npv"]), pct(value["accuracy"])))
    return lines


def calibration_lines(metrics):
    display = metrics.get("calibration_display")
    if not display:
        return []
    shown = ("percentages" if display["display"] == "percent" else
             "coarse words (likely / possible / unlikely) instead of percentages")
    return ["Cross-validated ECE {} [{:.3f}, {:.3f}] -> the kiosk shows **{}** (`manifest.json` "
            "`calibration.display` = `{}`; rule: {}).".format(
                num(display["ece_cv"]), display["ece_cv_ci95"][0], display["ece_cv_ci95"][1], shown,
                display["display"], display["rule"])]


def scope_lines(metrics, other_module):
    """The input check's flag rates on the own group, the other patient group and non-X-rays."""
    rates = metrics.get("input_check", {}).get("scope")
    if not rates:
        return []
    lines = ["", "Patient group and photographs (flagged = `ood_score` > 1; Wilson 95% CI; the other group "
             "is `{}`'s data, adults only from NIH):".format(other_module), "",
             "| images | n | flagged |", "|---|---|---|"]
    for key, words in SCOPE_ROWS:
        if key in rates:
            row = rates[key]
            lines.append("| {} | {} | {} |".format(words, row["n"], pct(row["rate"], row["ci95"])))
    return lines


def rate(entry):
    """A stored rate as "p% [low, high] (count/of)"."""
    return pct(entry["rate"], entry["ci95"]) + " ({}/{})".format(entry["count"], entry["of"])


def photo_lines(module_id, folder=PHOTO_RESULTS):
    """Files vs photographed camera frames of the TEST split (``docs/models/photographed/<module>.json``)."""
    path = os.path.join(folder, module_id + ".json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)

    lines = ["{} images of the test split as files and as 1280x720 camera frames (film on a lightbox / "
             "monitor, seed {}; never trained on), through the kiosk's camera path (`python -m "
             "training.photo_eval`; `docs/models/photographed.md`):".format(result["images"], result["seed"]),
             "", "| | files | camera frames |", "|---|---|---|",
             "| refused as out of scope | {} | {} |".format(rate(result["refused_files"]),
                                                          rate(result["refused_frames"]))]
    for name, row in sorted(result["auroc"].items()):
        lines.append("| AUROC {} | {} | {} (difference {}) |".format(
            name, num(row["files"][0], row["files"][1:]), num(row["frames"][0], row["frames"][1:]),
            num(row["difference"][0], row["difference"][1:])))
    non = result["non_xray"]["refused"]
    lines += ["", "Non-X-ray camera frames (scikit-image photos and generated scenes, seed 0) refused: "
              "{}.".format(rate(non))]
    return lines + camera_cv_lines(module_id)


def camera_cv_lines(module_id, folder=MODEL_DOCS):
    """The camera path cross-validated over every image (``docs/models/<module>/camera-cv.json``)."""
    path = os.path.join(folder, module_id, "camera-cv.json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)

    refused = result["refused"]
    note = " ({})".format(result["note"]) if result.get("note") else ""
    lines = ["", "Cross-validated over all {} images ({} patient folds; `python -m recipes.camera_cli`, "
             "`docs/models/{}/camera-cv.md`): each image's file and its camera crop (test split: the frames "
             "above; train/val images: seeds 2000/2001) scored by the fold's head and input check, which "
             "never trained on it{}:".format(result["images"], result["folds"], module_id, note), "",
             "| | files | camera frames | frames - files |", "|---|---|---|---|",
             "| refused as out of scope | {} | {} | |".format(rate(refused["files"]),
                                                              rate(refused["frames"]))]
    for name, row in sorted(result["auroc"].items()):
        lines.append("| AUROC {} ({} positives) | {} | {} | {} |".format(
            name, row["positives"], num(row["files"][0], row["files"][1:]),
            num(row["frames"][0], row["frames"][1:]), num(row["difference"][0], row["difference"][1:])))
    lines += ["", "Each fold's input check on the non-X-ray frames: {} refused; on the other patient group's "
              "test X-rays: {} (lowest fold {}).".format(
                  rate(refused["non_xray"]), rate(refused["other_test"]),
                  pct(refused["other_test"]["lowest_fold"]))]
    return lines
