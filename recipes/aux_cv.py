"""Issue 13 item 1 on CPU: all 14 NIH findings as auxiliary multi-label targets of the chest head,
cross-validated against the shipped head on the same folds.

The head (``make_head``: linear, or one shared hidden layer) on the frozen embedding has ``C + L``
outputs: the module's ``C`` classes (softmax, cross-entropy; what the kiosk shows) and the ``L`` NIH
findings (sigmoid, binary cross-entropy weighted by ``weight``). The auxiliary task also sees the NIH
images the module drops (two of its findings, or findings outside its classes): each joins the folds
of its patient, and an image whose patient the module does not keep is training data only (never
tested). Photographed crops join as in the shipped recipe. Early stopping on the validation fold's
module loss; temperature on its logits.
"""

import csv
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recipes import cv
from recipes.config import log
from recipes.evaluation import classification_metrics, probs_of
from training.calibration import fit_temperature
from training.data import Sample

NO_FINDING = "No Finding"


def nih_findings(data_root):
    """{image path: (findings, patient)} of every NIH image, and the sorted finding names (No Finding
    excluded: it is the absence of all of them)."""
    folder = os.path.join(data_root, "chest-nih")
    rows = {}
    with open(os.path.join(folder, "labels.csv"), encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found = tuple(x for x in row["finding_labels"].split("|") if x and x != NO_FINDING)
            rows[os.path.join(folder, "images", row["image"])] = (found, row["patient_id"])
    names = sorted({name for found, _patient in rows.values() for name in found})
    return rows, names


def multi_hot(paths, rows, names):
    index = {name: i for i, name in enumerate(names)}
    hot = torch.zeros(len(paths), len(names))
    for r, path in enumerate(paths):
        for name in rows[path][0]:
            hot[r, index[name]] = 1.0
    return hot


def extra_samples(rows, kept_paths):
    """The NIH images the module does not keep, as Samples (labels: their findings)."""
    return [Sample(path, found or (NO_FINDING,), patient) for path, (found, patient) in sorted(rows.items())
            if path not in kept_paths]


def _loss(logits, main, aux, classes, weight):
    """Cross-entropy on the rows with a module class (main >= 0) + ``weight`` x BCE on every row."""
    has = main >= 0
    loss = F.cross_entropy(logits[has, :classes], main[has]) if bool(has.any()) else logits.sum() * 0.0
    if weight:
        loss = loss + weight * F.binary_cross_entropy_with_logits(logits[:, classes:], aux)
    return loss


def train_aux_head(head, train, val, classes, weight, epochs=60, lr=1e-3, weight_decay=1e-4, patience=8,
                   seed=0):
    """Mini-batch AdamW; early stopping on the validation module loss; the best state restored."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, stale = float("inf"), None, 0
    for _epoch in range(epochs):
        order = torch.randperm(len(train[0]), generator=generator)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            loss = _loss(head(train[0][idx]), train[1][idx], train[2][idx], classes, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = _loss(head(val[0]), val[1], val[2], classes, 0.0).item()
        if val_loss < best - 1e-5:
            best, best_state, stale = val_loss, {k: v.clone() for k, v in head.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= patience:
                break
    head.load_state_dict(best_state)
    return head


def _take(data, folds_of, wanted, train_only=False):
    """(embeddings, main targets, aux targets) of the rows whose patient's fold is in ``wanted``
    (``train_only``: also rows of patients in no fold)."""
    samples, embeddings, main, aux = data
    index = [i for i, s in enumerate(samples)
             if folds_of.get(s.patient_id, -1 if train_only else -2) in wanted or
             (train_only and s.patient_id not in folds_of)]
    return embeddings[index], main[index], aux[index]


def _cat(*parts):
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


def make_head(features, outputs, hidden=0):
    """A linear head (``hidden`` 0) or one hidden ReLU layer shared by every output: only a shared layer
    lets the auxiliary targets change the module's outputs (a linear head's outputs share no weights)."""
    if not hidden:
        return nn.Linear(features, outputs)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def aux_cross_validate(files, crops, extra, classes, folds, seed, weight, hidden=0):
    """k-fold CV of the auxiliary-target head. Each of ``files`` (the module's images), ``crops`` (their
    photographed crops) and ``extra`` (the dropped NIH images, class index -1) is (samples, embeddings,
    class index, multi-hot). Returns ``cv.summarise``'s summary and the per-fold macro AUROC."""
    folds_of = cv.fold_of_patients(files[0], classes, folds, seed)
    rows = []
    for fold in range(folds):
        val_fold = (fold + 1) % folds
        train_folds = set(range(folds)) - {fold, val_fold}
        train = _cat(_take(files, folds_of, train_folds), _take(crops, folds_of, train_folds),
                     _take(extra, folds_of, train_folds, train_only=True))
        val = _cat(_take(files, folds_of, {val_fold}), _take(crops, folds_of, {val_fold}))
        test = _take(files, folds_of, {fold})
        torch.manual_seed(seed)
        head = make_head(files[1].shape[1], len(classes) + files[3].shape[1], hidden)
        train_aux_head(head, train, val, len(classes), weight, seed=seed)
        with torch.no_grad():
            temperature = fit_temperature(head(val[0])[:, :len(classes)], val[1], "multiclass")
            logits = head(test[0])[:, :len(classes)]
        probs = probs_of(logits, "multiclass", temperature)
        metrics = classification_metrics(probs, test[1].numpy(), classes, "multiclass")
        rows.append(metrics)
        log("aux CV (weight {}, hidden {}) fold {}/{}: macro AUROC {:.3f}, ECE {:.3f}".format(
            weight, hidden, fold + 1, folds, metrics["macro_auroc"], metrics["ece"]))
    return cv.summarise(rows, classes), [float(r["macro_auroc"]) for r in rows]


def as_numpy_summary(summary):
    """Plain floats of ``cv.summarise``'s summary (for JSON)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return float(np.round(value, 4)) if isinstance(value, float) else value
    return clean(summary)
