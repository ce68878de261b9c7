"""The recipe's evaluation report: report.md, metrics.json and the plots of the test split."""

import json
import math
import os

import numpy as np

from recipes.evaluation import to_json
from training.metrics import plot_confusion, plot_reliability, plot_roc, roc_curves


def pct(value, ci=None):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = "{:.1f}%".format(100 * value)
    if ci and not any(math.isnan(c) for c in ci):
        text += " [{:.1f}, {:.1f}]".format(100 * ci[0], 100 * ci[1])
    return text


def num(value, ci=None):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = "{:.3f}".format(value)
    if ci and not any(math.isnan(c) for c in ci):
        text += " [{:.3f}, {:.3f}]".format(*ci)
    return text


def metrics_markdown(metrics, classes):
    lines = []
    if "accuracy" in metrics:
        lines.append(
            "- Accuracy: **{}** (95% Wilson CI)".format(pct(metrics["accuracy"], metrics["accuracy_ci95"]))
        )
    lines.append("- Macro AUROC (one vs rest): **{}**".format(num(metrics["macro_auroc"])))
    lines.append(
        "- ECE (15 bins): {} before temperature scaling, {} after (T = {:.3f}, fitted on val)".format(
            num(metrics["ece_before_temperature"]),
            num(metrics["ece"]),
            metrics["calibration_val"]["temperature"],
        )
    )
    if metrics.get("abstain"):
        a = metrics["abstain"]
        lines.append(
            "- Abstain threshold {:.3f} (top probability; chosen on val for {:.0%} coverage): test coverage "
            "{}, accuracy on answered cases {}".format(
                a["threshold"],
                metrics["calibration_val"]["abstain_coverage"],
                pct(a["coverage"]),
                pct(a["accuracy_answered"], a["accuracy_answered_ci95"]),
            )
        )
    lines += [
        "",
        "| class | n | sensitivity | specificity | precision | AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for c in classes:
        m = metrics["per_class"][c]
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                c,
                m["support"],
                pct(m["sensitivity"], m["sensitivity_ci95"]),
                pct(m["specificity"], m["specificity_ci95"]),
                pct(m["precision"], m["precision_ci95"]),
                num(m["auroc"], m["auroc_ci95"]),
            )
        )
    if "confusion_matrix" in metrics:
        cm = metrics["confusion_matrix"]
        lines += [
            "",
            "Confusion matrix (rows true, columns predicted):",
            "",
            "| | " + " | ".join(classes) + " |",
            "|---" * (len(classes) + 1) + "|",
        ]
        for c, row in zip(classes, cm["counts"]):
            lines.append("| **{}** | ".format(c) + " | ".join(str(v) for v in row) + " |")
    return lines


def input_check_markdown(check):
    lines = ['| images | n | flagged "not a chest X-ray" |', "|---|---|---|"]
    lines.append(
        "| real X-rays of the test split (false rejections) | {} | {} |".format(
            check["test_xrays"]["n"], pct(check["test_xrays"]["rate"])
        )
    )
    for cat, row in sorted(check["out_of_scope"].items()):
        if cat != "all":
            lines.append("| {} | {} | {} |".format(CATEGORY_NAMES.get(cat, cat), row["n"], pct(row["rate"])))
    row = check["out_of_scope"]["all"]
    lines.append("| **all out-of-scope images** | {} | **{}** |".format(row["n"], pct(row["rate"])))
    if check["missed"]:
        lines += [
            "",
            "Missed (accepted as X-rays): "
            + ", ".join("`{}` ({:.2f})".format(n, check["scores"][n]) for n in check["missed"]),
        ]
    return lines


CATEGORY_NAMES = {
    "skin-like": "project-generated skin-like photos",
    "shapes": "project-generated shapes",
    "blank": "blank / constant frames",
    "noise": "noise frames",
    "skimage": "real photos bundled with scikit-image",
}


def split_table(counts):
    """Markdown rows: images, patients and per-class counts of each split."""
    lines = ["| split | images | patients | per class |", "|---|---|---|---|"]
    for name in ("train", "val", "test"):
        c = counts[name]
        row = (name, c["images"], c["patients"], json.dumps(c["per_class"]))
        lines.append("| {} | {} | {} | {} |".format(*row))
    return lines


def write_plots(out_dir, test, classes, task, temperature, metrics):
    """Confusion matrix, ROC curves and reliability diagrams (before/after temperature) as PNGs.

    ``test``: (probabilities before temperature, after, targets) of the test split."""
    probs_before, probs, targets = (np.asarray(a) for a in test)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if task == "multiclass":
        written.append(plot_confusion(metrics["confusion_matrix"]["counts"], classes,
                                      os.path.join(out_dir, "confusion_matrix.png")))
        onehot = np.eye(len(classes), dtype=int)[targets.astype(int)]
    else:
        onehot = targets.astype(int)
    written.append(plot_roc(roc_curves(onehot, probs, classes), metrics["per_class"],
                            os.path.join(out_dir, "roc.png")))
    written.append(plot_reliability(probs_before, probs, targets, task, temperature,
                                    os.path.join(out_dir, "reliability.png")))
    return written


def _report_head(recipe, module, counts, metrics, classes, split_info):
    lines = [
        "# Evaluation: {} ({} @ {}x{})".format(module.title, recipe.arch, recipe.image_size,
                                               recipe.image_size),
        "",
        "Test split of `{}` (patient-level; never used for training, early stopping, temperature or "
        "thresholds). Generated by `python -m recipes`.".format(split_info["split_file"]),
        "",
        "## Data",
        "",
    ]
    lines += split_table(counts)
    lines += ["", "## Test metrics", ""] + metrics_markdown(metrics, classes)
    if metrics.get("stage1_test"):
        lines += [
            "",
            "Stage 1 only (frozen backbone, linear head): test accuracy {}, macro AUROC {}.".format(
                pct(metrics["stage1_test"].get("accuracy")), num(metrics["stage1_test"].get("macro_auroc"))
            ),
        ]
    lines += ["", "![confusion matrix](confusion_matrix.png) ![ROC](roc.png)", "",
              "![reliability](reliability.png)", "", "## Input check (not a chest X-ray)", ""]
    return lines + input_check_markdown(metrics["input_check"])


def _report_tail(recipe, metrics, history, timings):
    cost = metrics["cost"]
    lines = [
        "",
        "## Cost",
        "",
        "- Parameters: {:,}; multiply-accumulates per image: {:.3g} G at {}; PyTorch CPU latency "
        "(1 thread, batch 1): {:.1f} ms".format(
            cost["parameters"], cost["macs_per_image"] / 1e9, cost["input"], cost["cpu_latency_ms_1thread"]
        ),
        "- Training time on 2 CPU cores: {}".format(
            ", ".join("{} {}".format(k, v) for k, v in timings.items())),
    ]
    if recipe.budget:
        lines += ["- Budget: {}; at most {} epochs.".format(recipe.budget, recipe.tune_epochs)]
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe.to_dict(), indent=1), "```", "",
              "## Training history", "", "```json", json.dumps(to_json(history), indent=1), "```", ""]
    return lines


def write_report(out_dir, run, test):
    """report.md, metrics.json and the plots of a finished run (``recipes.run.RunRecord``) into
    ``out_dir``; ``test``: (probabilities before temperature, after, targets). Returns report.md's path."""
    os.makedirs(out_dir, exist_ok=True)
    metrics, classes = run.metrics, list(run.module.classes)
    write_plots(out_dir, test, classes, run.module.task, metrics["calibration_val"]["temperature"], metrics)
    lines = _report_head(run.recipe, run.module, run.counts, metrics, classes, run.split_info)
    lines += _report_tail(run.recipe, metrics, run.history, run.timings)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(to_json(dict(metrics, timings=run.timings, recipe=run.recipe.to_dict())), handle, indent=1)
    return path
