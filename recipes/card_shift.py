"""The model card's table for the child module's shift proxy (``recipes.shift_proxy``'s JSON)."""

import json
import os

from recipes.config import ROOT


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
    return lines
