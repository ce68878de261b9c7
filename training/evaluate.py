"""Evaluation: a checkpoint on a split (or any folder/CSV) -> report.md, metrics.json and PNG plots.

Metrics come from scikit-learn (ECE is ours: sklearn has none): accuracy, balanced accuracy,
per-class precision/recall/F1/support with Wilson 95% intervals, one-vs-rest AUROC with bootstrap
95% intervals and ROC curves, confusion matrices (counts and row-normalised), ECE and reliability
diagrams before and after temperature scaling, the abstain threshold for a coverage, and
sensitivity/specificity for two-class tasks.
"""

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from edge.errors import ConfigError
from training.calibration import abstain_threshold, probabilities
from training.metrics import (
    BOOTSTRAP_RESAMPLES,
    Z95,
    binary_auroc,
    bootstrap_auroc,
    expected_calibration_error,
    plot_confusion,
    plot_reliability,
    plot_roc,
    roc_curves,
    wilson_interval,
)

REPORT = "report.md"
METRICS = "metrics.json"
NOTICE = "Decision support only - not a diagnosis. Metrics describe this data set, not clinical performance."


def _clean(value):
    """JSON-safe: numpy -> python, nan/inf -> None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def _multiclass_part(after, targets_np, n_classes):
    """(y_true, y_pred, onehot, metrics) of a single-label task."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    y_true = targets_np.astype(np.int64)
    y_pred = after.argmax(axis=1)
    counts = confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    result = {"accuracy": float(accuracy_score(y_true, y_pred)),
              "accuracy_ci95": wilson_interval(int((y_true == y_pred).sum()), len(y_true)),
              "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
              "confusion_matrix": counts.tolist()}
    with np.errstate(invalid="ignore", divide="ignore"):
        result["confusion_matrix_normalised"] = (counts / counts.sum(axis=1, keepdims=True)).tolist()
    return y_true, y_pred, np.eye(n_classes, dtype=np.int64)[y_true], result


def _multilabel_part(after, targets_np, classes):
    """(y_true, y_pred, onehot, metrics) of a multilabel task (a 0.5 threshold per class)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, multilabel_confusion_matrix

    labels = list(range(len(classes)))
    y_true = targets_np.astype(np.int64)
    y_pred = (after >= 0.5).astype(np.int64)
    per_class_bal = np.array([balanced_accuracy_score(y_true[:, i], y_pred[:, i])
                              if len(np.unique(y_true[:, i])) > 1 else np.nan for i in labels])
    finite = per_class_bal[np.isfinite(per_class_bal)]
    result = {"exact_match_accuracy": float(accuracy_score(y_true, y_pred)),
              "accuracy": float((y_true == y_pred).mean()),
              "balanced_accuracy": float(finite.mean()) if finite.size else float("nan"),
              "confusion_matrices": {classes[i]: m.tolist() for i, m in
                                     enumerate(multilabel_confusion_matrix(y_true, y_pred, labels=labels))}}
    return y_true, y_pred, y_true, result


def _per_class(after, y_true, y_pred, onehot, classes, task, bootstrap, seed):
    """Per-class precision/recall/F1 with Wilson intervals and AUROC with its bootstrap interval."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))) if task == "multiclass" else None, zero_division=0)
    per_class = {}
    for i, name in enumerate(classes):
        positives = onehot[:, i] == 1
        predicted = (y_pred == i) if task == "multiclass" else (y_pred[:, i] == 1)
        tp = int((positives & predicted).sum())
        per_class[name] = {
            "precision": float(precision[i]),
            "precision_ci95": wilson_interval(tp, int(predicted.sum())),
            "recall": float(recall[i]),
            "recall_ci95": wilson_interval(tp, int(positives.sum())),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "auroc": binary_auroc(onehot[:, i], after[:, i]),
            "auroc_ci95": bootstrap_auroc(onehot[:, i], after[:, i], bootstrap, seed + i),
        }
    return per_class, float(np.mean(f1))


def _binary_summary(counts, positive):
    tn, fp, fn, tp = (int(v) for v in np.asarray(counts).ravel())
    return {
        "positive_class": positive,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "sensitivity_ci95": wilson_interval(tp, tp + fn),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "specificity_ci95": wilson_interval(tn, tn + fp),
    }


def compute_metrics(logits, targets, classes, task, temperature=1.0, coverage=0.9,
                    bootstrap=BOOTSTRAP_RESAMPLES, seed=0, stored_threshold=None):
    """All metrics for one set of logits (raw, before temperature) and targets; JSON-ready dict + arrays."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    targets_np = np.asarray(torch.as_tensor(targets).numpy())
    before = probabilities(logits, task).numpy()
    after = probabilities(logits, task, temperature).numpy()
    result = {"task": task, "classes": list(classes), "cases": int(len(targets_np)),
              "temperature": float(temperature), "bootstrap_resamples": int(bootstrap)}
    if task == "multiclass":
        y_true, y_pred, onehot, part = _multiclass_part(after, targets_np, len(classes))
    else:
        y_true, y_pred, onehot, part = _multilabel_part(after, targets_np, classes)
    result.update(part)
    result["per_class"], result["macro_f1"] = _per_class(after, y_true, y_pred, onehot, classes, task,
                                                         bootstrap, seed)
    aurocs = [m["auroc"] for m in result["per_class"].values() if math.isfinite(m["auroc"])]
    result["macro_auroc"] = float(np.mean(aurocs)) if aurocs else float("nan")
    if task == "multiclass" and len(classes) == 2:
        result["binary"] = _binary_summary(result["confusion_matrix"], classes[1])
    result["ece_before"] = expected_calibration_error(before, targets_np, task)
    result["ece_after"] = expected_calibration_error(after, targets_np, task)
    threshold = abstain_threshold(after, coverage)
    result["abstain"] = _abstain_summary(after, y_true, task, coverage, threshold, stored_threshold)
    arrays = {"before": before, "after": after, "targets": targets_np,
              "rocs": roc_curves(onehot, after, classes)}
    return result, arrays


def _abstain_summary(probs, y_true, task, coverage, threshold, stored):
    top = probs.max(axis=1)

    def at(value):
        answered = top >= value
        if task == "multiclass":
            correct = probs.argmax(axis=1) == y_true
        else:
            correct = ((probs >= 0.5).astype(np.int64) == y_true).all(axis=1)
        return {"threshold": float(value), "coverage": float(answered.mean()) if len(top) else float("nan"),
                "accuracy_answered": float(correct[answered].mean()) if answered.any() else float("nan")}

    summary = {"target_coverage": float(coverage), "for_target_coverage": at(threshold)}
    if stored is not None:
        summary["stored"] = at(stored)
    return summary


# --- report ----------------------------------------------------------------------------------

def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return "{:.{}f}".format(value, digits)


def _ci(pair):
    if pair is None or any(v is None or not math.isfinite(v) for v in pair):
        return "n/a"
    return "{:.3f}-{:.3f}".format(pair[0], pair[1])


def write_report(metrics, out_dir, title, plots):
    lines = ["# Evaluation: {}".format(title), "", "> " + NOTICE, "",
             "- data: {} ({} cases)".format(metrics["source"], metrics["cases"]),
             "- checkpoint: {}".format(metrics["checkpoint"]),
             "- task: {}; temperature: {:.4f}".format(metrics["task"], metrics["temperature"]), ""]
    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    lines.append("| accuracy | {} (95% CI {}) |".format(_fmt(metrics["accuracy"]),
                                                       _ci(metrics.get("accuracy_ci95"))))
    if "exact_match_accuracy" in metrics:
        lines.append("| exact-match accuracy | {} |".format(_fmt(metrics["exact_match_accuracy"])))
    lines.append("| balanced accuracy | {} |".format(_fmt(metrics["balanced_accuracy"])))
    lines.append("| macro F1 | {} |".format(_fmt(metrics["macro_f1"])))
    lines.append("| macro AUROC (one vs rest) | {} |".format(_fmt(metrics["macro_auroc"])))
    lines.append("| ECE before temperature scaling | {} |".format(_fmt(metrics["ece_before"])))
    lines.append("| ECE after temperature scaling | {} |".format(_fmt(metrics["ece_after"])))
    if "binary" in metrics:
        binary = metrics["binary"]
        lines.append("| sensitivity ({}) | {} (95% CI {}) |".format(
            binary["positive_class"], _fmt(binary["sensitivity"]), _ci(binary["sensitivity_ci95"])))
        lines.append("| specificity | {} (95% CI {}) |".format(_fmt(binary["specificity"]),
                                                               _ci(binary["specificity_ci95"])))
    lines += ["", "## Per class", "",
              "| class | precision (95% CI) | recall (95% CI) | F1 | support | AUROC (95% CI) |",
              "|---|---|---|---|---|---|"]
    for name, m in metrics["per_class"].items():
        lines.append("| {} | {} ({}) | {} ({}) | {} | {} | {} ({}) |".format(
            name, _fmt(m["precision"]), _ci(m["precision_ci95"]), _fmt(m["recall"]), _ci(m["recall_ci95"]),
            _fmt(m["f1"]), m["support"], _fmt(m["auroc"]), _ci(m["auroc_ci95"])))
    abstain = metrics["abstain"]
    lines += ["", "## Abstaining (\"uncertain\" below a top-probability threshold)", "",
              "| threshold | coverage | accuracy of answered cases |", "|---|---|---|"]
    target = "for target coverage {:.0%}".format(abstain["target_coverage"])
    for label, key in ((target, "for_target_coverage"), ("stored in the checkpoint", "stored")):
        if key in abstain:
            row = abstain[key]
            lines.append("| {} ({}) | {} | {} |".format(_fmt(row["threshold"]), label, _fmt(row["coverage"]),
                                                        _fmt(row["accuracy_answered"])))
    lines += ["", "Intervals: Wilson score (z = {}) for proportions, percentile bootstrap ({} resamples) for "
              "AUROC (training.metrics).".format(Z95, metrics.get("bootstrap_resamples")), "",
              "## Plots", ""]
    for name in plots:
        lines.append("![{}]({})".format(os.path.splitext(name)[0], name))
    with open(os.path.join(out_dir, REPORT), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


# --- entry points ----------------------------------------------------------------------------

@dataclass
class EvalResult:
    out_dir: str
    metrics: dict


def _loader(samples, description, batch_size, workers):
    from torch.utils.data import DataLoader

    from training.datasets import ImageDataset

    dataset = ImageDataset(samples, description.classes, description.input, description.task)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


def evaluate_samples(checkpoint, samples, out_dir, source="samples", coverage=None,
                     bootstrap=BOOTSTRAP_RESAMPLES,
                     batch_size=32, workers=0, device="auto", progress=False, seed=0, checkpoint_label=None):
    """Evaluate a checkpoint (path or LoadedCheckpoint) on samples; write the report into ``out_dir``."""
    from training.checkpoint import load_checkpoint
    from training.predict import predict_logits
    from training.train import resolve_device

    loaded = load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    description = loaded.description
    if not samples:
        raise ConfigError("nothing to evaluate: {} has no images. Fix: pick another split or data".format(
            source))
    if coverage is None:
        calibration = loaded.training.get("metrics", {}).get("calibration") or {}
        coverage = calibration.get("abstain_coverage", 0.9)
    device = resolve_device(device)
    loader = _loader(samples, description, batch_size, workers)
    net = loaded.net.to(device)
    logits, targets = predict_logits(net, loader, device, progress=progress, desc="evaluate")
    metrics, arrays = compute_metrics(logits, targets, description.classes, description.task,
                                      description.temperature, coverage, bootstrap, seed,
                                      stored_threshold=description.abstain_threshold)
    metrics["source"] = source
    if checkpoint_label is None:
        checkpoint_label = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "in memory"
    metrics["checkpoint"] = checkpoint_label
    os.makedirs(out_dir, exist_ok=True)
    plots = ["roc.png", "reliability.png"]
    plot_roc(arrays["rocs"], metrics["per_class"], os.path.join(out_dir, "roc.png"))
    plot_reliability(arrays["before"], arrays["after"], arrays["targets"], description.task,
                     description.temperature, os.path.join(out_dir, "reliability.png"))
    if "confusion_matrix" in metrics:
        plot_confusion(metrics["confusion_matrix"], description.classes,
                       os.path.join(out_dir, "confusion.png"))
        plots.insert(0, "confusion.png")
    metrics = _clean(metrics)
    with open(os.path.join(out_dir, METRICS), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2)
        handle.write("\n")
    title = (loaded.module.get("title") or description.arch) if loaded.module else description.arch
    write_report(metrics, out_dir, title, plots)
    return EvalResult(out_dir=out_dir, metrics=metrics)


def _run_paths(run):
    """(checkpoint path, split file or None) for a run folder or a checkpoint file."""
    from training.run_data import SPLIT_FILE
    from training.train import BEST

    if os.path.isdir(run):
        checkpoint = os.path.join(run, BEST)
        split = os.path.join(run, SPLIT_FILE)
    else:
        checkpoint = run
        split = os.path.join(os.path.dirname(os.path.abspath(run)), SPLIT_FILE)
    if not os.path.isfile(checkpoint):
        raise ConfigError("{}: no checkpoint. Fix: pass a run folder written by `medkiosk train` or its "
                          "best.pt".format(checkpoint))
    return checkpoint, split if os.path.isfile(split) else None


def evaluate_run(run, split="test", data=None, csv=None, out=None, coverage=None,
                 bootstrap=BOOTSTRAP_RESAMPLES,
                 batch_size=32, workers=0, device="auto", progress=False, record=True,
                 set_threshold=False):
    """Evaluate a run on one of its splits (or on ``data``/``csv``); optionally record into best.pt."""
    from training import data as data_mod
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.splits import Split

    checkpoint, split_file = _run_paths(run)
    loaded = load_checkpoint(checkpoint)
    description = loaded.description
    if csv:
        if not data:
            raise ConfigError("--csv needs --data (the images folder)")
        multi = "multilabel" if description.task == "multilabel" else "drop"
        samples = data_mod.samples_from_csv(csv, data, description.classes, multi_finding=multi)
        source, name = os.path.abspath(csv), "csv"
    elif data:
        samples = data_mod.samples_from_folder(data, classes=description.classes)
        source, name = os.path.abspath(data), "data"
    else:
        if split_file is None:
            raise ConfigError("{}: no split.json beside the checkpoint. Fix: pass --data DIR or --csv".format(
                checkpoint))
        samples = Split.from_file(split_file)[split]
        source, name = "{} split of {}".format(split, split_file), split
    run_dir = run if os.path.isdir(run) else os.path.dirname(os.path.abspath(run))
    out = out or os.path.join(run_dir, "eval-" + name)
    result = evaluate_samples(loaded, samples, out, source=source, coverage=coverage, bootstrap=bootstrap,
                              batch_size=batch_size, workers=workers, device=device, progress=progress,
                              checkpoint_label=checkpoint)
    if record or set_threshold:
        data_dict = loaded.data
        metrics_section = data_dict.setdefault("training", {}).setdefault("metrics", {})
        if record:
            metrics_section.setdefault("evaluation", {})[name] = _headline(result.metrics)
        if set_threshold:
            threshold = result.metrics["abstain"]["for_target_coverage"]["threshold"]
            data_dict["description"] = description.replace(abstain_threshold=threshold).to_dict()
        save_checkpoint(checkpoint, data_dict)
    return result


def _headline(metrics):
    keys = ("cases", "accuracy", "accuracy_ci95", "balanced_accuracy", "macro_f1", "macro_auroc",
            "ece_before", "ece_after", "binary", "source")
    headline = {key: metrics[key] for key in keys if key in metrics}
    headline["per_class"] = {name: {k: m[k] for k in ("precision", "recall", "f1", "support", "auroc")}
                             for name, m in metrics["per_class"].items()}
    return headline


def evaluate_cli(args):
    """Handler of ``medkiosk evaluate``."""
    if args.coverage is not None and not 0 < args.coverage <= 1:
        raise ConfigError("--coverage must be in (0, 1], got {}".format(args.coverage))
    result = evaluate_run(args.run, split=args.split, data=args.data, csv=args.csv, out=args.out,
                          coverage=args.coverage, bootstrap=args.bootstrap, batch_size=args.batch_size,
                          workers=args.workers, device=args.device, progress=args.progress,
                          set_threshold=args.set_threshold)
    metrics = result.metrics
    print("{} cases: accuracy {}, balanced accuracy {}, macro AUROC {}, ECE {} -> {}".format(
        metrics["cases"], _fmt(metrics["accuracy"]), _fmt(metrics["balanced_accuracy"]),
        _fmt(metrics["macro_auroc"]), _fmt(metrics["ece_before"]), _fmt(metrics["ece_after"])))
    print("report: {}".format(os.path.join(result.out_dir, REPORT)))
    return 0

