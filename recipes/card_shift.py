"""The model card's table for the child module's shift proxy (``recipes.shift_proxy``'s JSON)."""

import json
import os

from recipes.config import ROOT

TRIAL_FILE = "intensity-trial.json"
CONTRAST_FILE = "contrast-trial.json"


def contrast_words(mode):
    """A candidate's name with its parameters (``edge.preprocess``'s constants)."""
    from edge import preprocess as pre

    return {"none": "none (today's pixels)",
            "equalize": "global equalisation (clip {:g})".format(pre.CONTRAST_EQUALIZE_CLIP),
            "clahe": "CLAHE (clip {:g}, {g}x{g} tiles)".format(pre.CONTRAST_CLAHE_CLIP,
                                                                g=pre.CONTRAST_CLAHE_GRID),
            "stretch": "percentile stretch ({:g}-{:g}%, gain <= {:g})".format(
                *pre.CONTRAST_STRETCH_PERCENTILES + (pre.CONTRAST_MAX_GAIN,))}.get(mode, mode)


def results_path(module_id):
    return os.path.join(ROOT, "docs", "models", module_id, "shift-proxy.json")


def card_lines(module_id, path=None):
    """The model card's proxy table from ``docs/models/<module>/shift-proxy.json`` (empty if absent)."""
    from recipes.report import num, pct

    path = path or results_path(module_id or "")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)

    def cell(entry, as_pct=True):
        return (pct if as_pct else num)(entry["mean"], entry["ci95"])

    lines = ["", "A proxy for a shifted set (never tuned on; `python -m recipes.shift_proxy --every {} "
             "--json docs/models/{}/shift-proxy.json`): the same CV fold models and threshold ({:.3f}) on "
             "every {}rd file ({} images), as stored and re-exposed ({}; a family the recipe never trains "
             "on). Mean over folds [95% t-interval]:".format(
                 result["every"], module_id, result["threshold"], result["every"], result["images"],
                 result["family"]), "",
             "| images | accuracy | sensitivity | specificity | AUROC |", "|---|---|---|---|---|"]
    for key in ("clean", "degraded"):
        row = result[key]
        lines.append("| {} | {} | {} | {} | {} |".format(
            "as stored" if key == "clean" else "re-exposed", cell(row["accuracy"]), cell(row["sensitivity"]),
            cell(row["specificity"]), cell(row["auroc"], False)))
    folder = os.path.dirname(path)
    return (lines + trial_lines(os.path.join(folder, TRIAL_FILE), cell)
            + contrast_lines(os.path.join(folder, CONTRAST_FILE), cell))


def trial_lines(path, cell):
    """Rows of ``recipes.intensity_trial``'s JSON (absent: none): both variants on the processing proxy."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        trial = json.load(handle)
    keys = ("accuracy", "sensitivity", "specificity", "auroc")
    shipped = [cell(trial["shipped"]["processing"][k], k != "auroc") for k in keys]
    tried = [cell(trial["intensity"]["processing"][k], k != "auroc") for k in keys]
    return [
        "| processed: CLAHE + unsharp mask (`python -m recipes.intensity_trial`, {} images) | {} | {} | {} "
        "| {} |".format(trial["proxy_images"], *shipped),
        "| processed, head also trained on {} intensity renders (gamma, contrast, blur, resolution; "
        "threshold {:.3f}): not kept | {} | {} | {} | {} |".format(
            trial["augmented_images"], trial["intensity"]["threshold"], *tried)]


def contrast_lines(path, cell):
    """The contrast-normalisation comparison (``recipes.contrast_trial``'s JSON; absent: none): per candidate,
    clean CV at its own operating point and specificity on both proxies."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        trial = json.load(handle)
    lines = ["", "Contrast normalisation of every input (`python -m recipes.contrast_trial --json "
             "docs/models/<module>/contrast-trial.json`; same folds, each candidate at its own CV threshold; "
             "the proxies' degradations applied before the normalisation, {} images each):".format(
                 trial["proxy_images"]), "",
             "| normalisation | CV accuracy | CV sensitivity | CV specificity | CV AUROC | ECE | re-exposed "
             "specificity | processed specificity |", "|---|---|---|---|---|---|---|---|"]
    for row in trial["candidates"]:
        clean, point = row["clean"], row["operating_point"]
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            contrast_words(row["mode"]), cell(clean["accuracy"]), cell(clean["sensitivity"]),
            cell(clean["specificity"]), cell(clean["auroc"], False), cell(point["ece_cv"], False),
            cell(row["exposure"]["specificity"]), cell(row["processing"]["specificity"])))
    return lines
