"""Patient-level k-fold cross-validation of the head recipe on the cached embeddings.

Every image the module keeps (train + val + test files) is assigned to one of ``k`` folds by patient
(``StratifiedGroupKFold``: no patient in two folds, class mix kept). Fold ``i`` is the test fold, fold
``i + 1`` the validation fold (early stopping and the temperature), the rest train; photographed crops
(of TRAIN/VAL split images only) join the train/val folds their patient belongs to. Reported per fold
and as mean with a 95% t-interval over folds. Operating point: the class with the highest calibrated
probability (for two classes: P >= 0.5), the kiosk's top-1.
"""

import math

import numpy as np
import torch

from recipes.config import log
from recipes.evaluation import classification_metrics, probs_of
from recipes.stages import train_head
from training.calibration import fit_temperature

METRICS = ("accuracy", "macro_auroc", "ece_before_temperature", "ece")


def fold_of_patients(samples, classes, folds, seed):
    """{patient: fold} stratified by each patient's first image's first label."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = [classes.index(s.labels[0]) for s in samples]
    groups = [s.patient_id for s in samples]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = {}
    for fold, (_train, test) in enumerate(splitter.split(np.zeros(len(samples)), labels, groups)):
        for index in test:
            assignment[groups[index]] = fold
    return assignment


def mean_ci(values):
    """(mean, (low, high)): 95% t-interval over folds (nan-safe)."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if values.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    mean = float(values.mean())
    if values.size < 2:
        return mean, (mean, mean)
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, (mean - half, mean + half)


def _select(data, folds_of, wanted):
    samples, embeddings, targets = data
    index = [i for i, s in enumerate(samples) if folds_of[s.patient_id] in wanted]
    return embeddings[index], targets[index]


def _cat(*pairs):
    pairs = [p for p in pairs if p is not None and len(p[0])]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def run_fold(recipe, head, initial, data, fold, folds_of, k):
    """Train the head on the train folds, calibrate on the val fold, measure on the test fold."""
    files, photos, classes, task = data
    val_fold = (fold + 1) % k
    train_folds = set(range(k)) - {fold, val_fold}
    def part(wanted):
        return _cat(_select(files, folds_of, wanted), _select(photos, folds_of, wanted) if photos else None)

    train, val = part(train_folds), part({val_fold})
    test = _select(files, folds_of, {fold})
    head.load_state_dict(initial)
    train_head(recipe, head, {"train": train[0], "val": val[0]}, {"train": train[1], "val": val[1]}, task)
    with torch.no_grad():
        temperature = fit_temperature(head(val[0]), val[1], task)
        logits = head(test[0])
    probs = probs_of(logits, task, temperature)
    metrics = classification_metrics(probs, test[1].numpy(), classes, task)
    metrics["ece_before_temperature"] = classification_metrics(
        probs_of(logits, task), test[1].numpy(), classes, task)["ece"]
    metrics["temperature"] = temperature
    metrics["train_images"], metrics["val_images"] = int(len(train[0])), int(len(val[0]))
    return metrics


def summarise(rows, classes):
    """Mean and 95% CI over folds of the headline metrics and of per-class AUROC/sensitivity/specificity."""
    summary = {}
    for key in METRICS:
        if key in rows[0]:
            mean, ci = mean_ci([row[key] for row in rows])
            summary[key] = {"mean": mean, "ci95": ci}
    summary["per_class"] = {}
    for name in classes:
        entry = {}
        for key in ("auroc", "sensitivity", "specificity"):
            mean, ci = mean_ci([row["per_class"][name][key] for row in rows])
            entry[key] = {"mean": mean, "ci95": ci}
        summary["per_class"][name] = entry
    return summary


def cross_validate(recipe, head, initial, files, photos, classes, task, with_photos=True):
    """k-fold CV of the head recipe: {"folds": [...], "summary": {...}, "patients", "images"}.

    ``files``/``photos``: (samples, embeddings, targets); ``initial``: the head's untrained state."""
    k = recipe.cv_folds
    folds_of = fold_of_patients(files[0], classes, k, recipe.seed)
    data = (files, photos if with_photos else None, classes, task)
    saved = {name: value.clone() for name, value in head.state_dict().items()}
    rows = []
    try:
        for fold in range(k):
            rows.append(run_fold(recipe, head, initial, data, fold, folds_of, k))
            log("CV fold {}/{}: accuracy {:.3f}, macro AUROC {:.3f}, ECE {:.3f}".format(
                fold + 1, k, rows[-1].get("accuracy", float("nan")), rows[-1]["macro_auroc"],
                rows[-1]["ece"]))
    finally:
        head.load_state_dict(saved)
    brief = [{key: row.get(key) for key in METRICS + ("temperature", "images", "train_images", "val_images")}
             for row in rows]
    for row, full in zip(brief, rows):
        keep = ("auroc", "sensitivity", "specificity", "support")
        row["per_class"] = {name: {key: full["per_class"][name][key] for key in keep} for name in classes}
    return {"folds": brief, "summary": summarise(rows, classes), "k": k, "with_photos": bool(with_photos),
            "patients": len(folds_of), "images": len(files[0])}


def at_prevalence(sensitivity, specificity, prevalence):
    """PPV, NPV and accuracy of a test with this sensitivity/specificity when ``prevalence`` of the
    cases are positive (Bayes)."""
    tp, fn = sensitivity * prevalence, (1 - sensitivity) * prevalence
    tn, fp = specificity * (1 - prevalence), (1 - specificity) * (1 - prevalence)
    return {"prevalence": prevalence, "ppv": tp / (tp + fp) if tp + fp else float("nan"),
            "npv": tn / (tn + fn) if tn + fn else float("nan"), "accuracy": tp + tn}


def display_decision(ece_cv, limit=0.05):
    """"percent" where the cross-validated ECE is at most ``limit``, else "words"."""
    return "percent" if ece_cv is not None and not math.isnan(ece_cv) and ece_cv <= limit else "words"
