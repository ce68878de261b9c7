"""The project's one definition of each evaluation number and plot, used by ``training.evaluate`` and
the recipes (``recipes``) alike.

- Proportions (accuracy, sensitivity, specificity, precision): Wilson score interval, z = 1.959964
  (the 97.5% normal quantile).
- AUROC: scikit-learn's one-vs-rest AUROC; its 95% interval is the percentile bootstrap (2.5th and
  97.5th percentiles) of ``BOOTSTRAP_RESAMPLES`` resamples of the cases, skipping resamples that hold
  only one class. Files vs camera frames of the same images: a paired bootstrap (one resample of the
  images for both, ``paired_auroc_table``), the AUROC by the rank sum (``rank_auroc``, the same value).
- Calibration: expected calibration error over ``ECE_BINS`` equal-width confidence bins
  (multilabel: every class decision counts); reliability diagrams use the same bins.
"""

import math

import numpy as np

Z95 = 1.959964
BOOTSTRAP_RESAMPLES = 500
PAIRED_RESAMPLES = 1000  # files vs camera frames (``paired_auroc_table``)
ECE_BINS = 15


# --- intervals ------------------------------------------------------------------------------------

def wilson_interval(successes, total, z=Z95):
    """Wilson score 95% interval for a proportion; (nan, nan) when total is 0."""
    if total <= 0:
        return (float("nan"), float("nan"))
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def binary_auroc(y_true, scores):
    """AUROC of ``scores`` for the 0/1 labels ``y_true``; nan when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, scores))


def bootstrap_auroc(y_true, scores, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Percentile-bootstrap 95% interval of the AUROC (resamples without both classes are skipped)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if resamples <= 0 or len(np.unique(y_true)) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        index = rng.integers(0, len(y_true), len(y_true))
        if len(np.unique(y_true[index])) == 2:
            values.append(binary_auroc(y_true[index], scores[index]))
    if not values:
        return (float("nan"), float("nan"))
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def rank_auroc(truth, scores):
    """The AUROC of ``binary_auroc`` by the Mann-Whitney rank sum (ties averaged), fast enough for a
    bootstrap's thousands of resamples; None when one class is missing."""
    from scipy.stats import rankdata

    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def paired_auroc_table(classes, labels, files, frames, seed=0, draws=PAIRED_RESAMPLES):
    """Per class: the AUROC of ``files`` and of ``frames`` (scores [N, classes] of the same N images)
    and frames - files, each [point, 2.5th, 97.5th percentile] of a paired bootstrap over images
    (``draws`` resamples of the images, the same for both and every class; resamples holding one
    class are skipped; 0: point values only), and the positives. ``labels``: each image's class names;
    a class without positives or without negatives is left out."""
    rng = np.random.RandomState(seed)
    samples = [rng.randint(0, len(labels), len(labels)) for _ in range(draws)]
    table = {}
    for index, name in enumerate(classes):
        truth = np.array([name in sample_labels for sample_labels in labels], dtype=np.int64)
        if truth.min() == truth.max():
            continue
        a, b = files[:, index], frames[:, index]
        point = {"files": rank_auroc(truth, a), "frames": rank_auroc(truth, b)}
        point["difference"] = point["frames"] - point["files"]
        boot = {key: [] for key in point}
        for draw in samples:
            fa, fb = rank_auroc(truth[draw], a[draw]), rank_auroc(truth[draw], b[draw])
            if fa is not None and fb is not None:
                for key, value in (("files", fa), ("frames", fb), ("difference", fb - fa)):
                    boot[key].append(value)
        table[name] = {key: [round(point[key], 4)] + ([round(float(v), 4) for v in np.percentile(
            boot[key], [2.5, 97.5])] if draws else []) for key in point}
        table[name]["positives"] = int(truth.sum())
    return table


def roc_curves(onehot, probs, classes):
    """{class: (false positive rates, true positive rates)} for every class with both labels present."""
    from sklearn.metrics import roc_curve

    onehot, probs = np.asarray(onehot), np.asarray(probs)
    curves = {}
    for index, name in enumerate(classes):
        if len(np.unique(onehot[:, index])) == 2:
            fpr, tpr, _thresholds = roc_curve(onehot[:, index], probs[:, index])
            curves[name] = (fpr, tpr)
    return curves


# --- calibration ------------------------------------------------------------------------------------

def confidences_and_correct(probs, targets, task):
    """Per-prediction confidence and correctness (multilabel: every class decision counts)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if task == "multilabel":
        predicted = probs >= 0.5
        confidence = np.where(predicted, probs, 1.0 - probs).ravel()
        correct = (predicted == (targets >= 0.5)).ravel()
        return confidence, correct
    return probs.max(axis=1), probs.argmax(axis=1) == targets.astype(np.int64)


def reliability_bins(confidence, correct, bins=ECE_BINS):
    """Per-bin (lower, upper, count, mean confidence, accuracy) for equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        above = confidence > low if low > 0 else confidence >= low
        mask = above & (confidence <= high)
        count = int(mask.sum())
        rows.append((float(low), float(high), count,
                     float(confidence[mask].mean()) if count else float("nan"),
                     float(correct[mask].mean()) if count else float("nan")))
    return rows


def expected_calibration_error(probs, targets, task, bins=ECE_BINS):
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    confidence, correct = confidences_and_correct(probs, targets, task)
    if confidence.size == 0:
        return float("nan")
    total = 0.0
    for _low, _high, count, conf, acc in reliability_bins(confidence, correct, bins):
        if count:
            total += count * abs(acc - conf)
    return total / confidence.size


# --- plots ------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(rocs, per_class, path):
    """One-vs-rest ROC curves ({class: (fpr, tpr)}, labelled with ``per_class[class]['auroc']``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (fpr, tpr) in rocs.items():
        ax.plot(fpr, tpr, label="{} (AUROC {:.3f})".format(name, per_class[name]["auroc"]))
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC, one vs rest")
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def plot_confusion(counts, classes, path):
    """Confusion matrix as counts and row-normalised (recall), rows true, columns predicted."""
    plt = _pyplot()
    counts = np.asarray(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, matrix, title, fmt in ((axes[0], counts, "counts", "{:d}"),
                                   (axes[1], normalised, "row-normalised (recall)", "{:.2f}")):
        ax.imshow(matrix, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)))
        ax.set_yticklabels(classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        limit = matrix.max() if matrix.size else 0
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, fmt.format(value.item()), ha="center", va="center", fontsize=8,
                    color="white" if limit and value > limit / 2 else "black")
    return _save(plt, fig, path)


def plot_reliability(before, after, targets, task, temperature, path, bins=ECE_BINS):
    """Reliability diagrams before (T = 1) and after temperature scaling, each titled with its ECE."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, probs, title in ((axes[0], before, "before (T = 1)"),
                             (axes[1], after, "after (T = {:.3f})".format(temperature))):
        confidence, correct = confidences_and_correct(probs, targets, task)
        rows = reliability_bins(confidence, correct, bins)
        centres = [(low + high) / 2 for low, high, _c, _m, _a in rows]
        accuracy = [a if count else 0.0 for _l, _h, count, _m, a in rows]
        ax.bar(centres, accuracy, width=1.0 / bins, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
        ece = expected_calibration_error(probs, targets, task, bins)
        ax.set_title("{}: ECE {:.3f}".format(title, ece))
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, path)
