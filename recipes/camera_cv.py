"""Cross-validated camera-path evaluation: the camera goals measured on every image, not one test split.

The folds are the recipe's own (``recipes.cv.fold_of_patients``: by patient, seed of the recipe). For
fold ``i`` the head trains on the train folds' files + photographed crops, the temperature and the
input check's thresholds come from fold ``i + 1``, and the input check (``evaluation.fit_input_check``:
Mahalanobis + colour + contrast + the out-of-scope score against the other patient group and
generated non-X-rays) is fitted on the train folds. Each held-out image is then scored twice -- its
file and its evaluation camera crop (``recipes.camera_data``) -- and the pooled results give, with 95%
intervals: refused as out of scope (files vs frames, Wilson), per-class AUROC (files vs frames and the
paired difference, bootstrap over images) and, per fold, the non-X-ray frames and the other patient
group's test X-rays refused.

Threshold rules of the input check (``THRESHOLDS``): ``val`` -- the shipped rule, the ``ood_accept``
quantile of the validation fold's files + crops; ``oof`` -- the same quantile of out-of-fold scores of
the train folds' files + crops (each train fold scored by a check fitted without it) and the
validation fold's, i.e. every train/val image, not one fold.
"""

import numpy as np
import torch

from recipes import cv
from recipes.config import log
from recipes.evaluation import fit_input_check, probs_of
from recipes.stages import train_head
from training import ood
from training.calibration import fit_temperature
from training.metrics import paired_auroc_table as auroc_table
from training.photo_eval import BOOTSTRAP, rate_of


def _mask(samples, folds_of, wanted):
    return np.array([folds_of[s.patient_id] in wanted for s in samples], dtype=bool)


def _own(parts, folds_of, wanted):
    """(embeddings, targets, images) of files + crops of the patients in folds ``wanted``."""
    chosen = [(parts[name], _mask(parts[name].samples, folds_of, wanted)) for name in ("files", "crops")]
    return tuple(torch.cat([getattr(part, key)[mask] for part, mask in chosen])
                 for key in ("embeddings", "targets", "images"))


def _fit_check(recipe, train, val, task, n_classes, negatives):
    return fit_input_check(recipe, {"train": train[0], "val": val[0]}, {"train": train[1], "val": val[1]},
                           {"train": train[2], "val": val[2]}, task, n_classes, negatives=negatives)[0]


def _raw_scores(head, embeddings):
    """(Mahalanobis distance, out-of-scope logit) of embeddings under one input check."""
    with torch.no_grad():
        distance = head.distance(embeddings).numpy()
    return distance, head.group.logits(embeddings.numpy())


def oof_check(recipe, head, parts, folds_of, train_folds, val, task, n_classes, negatives):
    """``head`` with its distance and out-of-scope thresholds re-set to the ``ood_accept`` quantile of
    out-of-fold scores: each train fold by a check fitted on the other train folds, the validation fold
    by ``head`` itself."""
    distances, logits = [list(x) for x in _raw_scores(head, val[0])]
    for held in sorted(train_folds):
        inner = _fit_check(recipe, _own(parts, folds_of, train_folds - {held}), val, task, n_classes,
                           negatives)
        d, g = _raw_scores(inner, _own(parts, folds_of, {held})[0])
        # Each inner score relative to its own check's thresholds, carried to ``head``'s scale.
        distances += list(d / inner.distance_threshold * head.distance_threshold)
        logits += list((g - inner.group.threshold) / inner.group.scale * head.group.scale
                       + head.group.threshold)
    group = head.group
    threshold = ood.choose_threshold(logits, recipe.ood_accept)
    new_group = ood.GroupScore(group.weight, group.bias, threshold, group.scale)
    return ood.InputCheckHead(_fit_of(head), ood.choose_threshold(distances, recipe.ood_accept),
                              head.colour_threshold, head.contrast_threshold, group=new_group).eval()


def _fit_of(head):
    return ood.MahalanobisFit(means=head.means.numpy(), basis=head.basis.numpy(), scale=head.scale.numpy(),
                              tail_variance=head.tail_variance, shrinkage=float("nan"))


THRESHOLDS = {"val": None, "oof": oof_check}


def _scored(head, check, temperature, part, mask, task):
    with torch.no_grad():
        emb = part.embeddings[mask]
        probs = probs_of(head(emb), task, temperature)
        refused = check(emb, None, part.images[mask].float()).numpy() > 1.0
    return probs, refused


def run_fold(recipe, head, initial, parts, fold, folds_of, task, n_classes, threshold="val"):
    """One fold: {"index", "files", "frames", "refused_*", "out_of_scope": {...}}."""
    k = recipe.cv_folds
    val_fold = (fold + 1) % k
    train_folds = set(range(k)) - {fold, val_fold}
    train, val = _own(parts, folds_of, train_folds), _own(parts, folds_of, {val_fold})
    head.load_state_dict(initial)
    train_head(recipe, head, {"train": train[0], "val": val[0]}, {"train": train[1], "val": val[1]}, task)
    with torch.no_grad():
        temperature = fit_temperature(head(val[0]), val[1], task)
    negatives = [parts["other_train"].embeddings, parts["negatives"].embeddings]
    check = _fit_check(recipe, train, val, task, n_classes, negatives)
    if THRESHOLDS[threshold] is not None:
        check = THRESHOLDS[threshold](recipe, check, parts, folds_of, train_folds, val, task, n_classes,
                                      negatives)
    test = _mask(parts["files"].samples, folds_of, {fold})
    row = {"index": np.nonzero(test)[0]}
    row["files"], row["refused_files"] = _scored(head, check, temperature, parts["files"], test, task)
    row["frames"], row["refused_frames"] = _scored(head, check, temperature, parts["frames"], test, task)
    row["out_of_scope"] = {}
    for name in ("non_xray", "other_test"):
        everything = np.ones(len(parts[name].images), dtype=bool)
        row["out_of_scope"][name] = _scored(head, check, 1.0, parts[name], everything, task)[1]
    return row


def _pool(rows, key, count):
    first = rows[0][key]
    pooled = np.zeros((count,) + first.shape[1:], dtype=first.dtype)
    for row in rows:
        pooled[row["index"]] = row[key]
    return pooled


def camera_cross_validate(recipe, head, initial, parts, classes, task, threshold="val"):
    """The k-fold camera-path evaluation; returns its JSON-ready summary."""
    folds_of = cv.fold_of_patients(parts["files"].samples, classes, recipe.cv_folds, recipe.seed)
    saved = {name: value.clone() for name, value in head.state_dict().items()}
    rows = []
    try:
        for fold in range(recipe.cv_folds):
            rows.append(run_fold(recipe, head, initial, parts, fold, folds_of, task, len(classes), threshold))
            last = rows[-1]
            log("camera CV fold {}/{}: refused files {:.3f}, frames {:.3f}".format(
                fold + 1, recipe.cv_folds, last["refused_files"].mean(), last["refused_frames"].mean()))
    finally:
        head.load_state_dict(saved)
    return summarise(rows, parts, classes, task)


def summarise(rows, parts, classes, task):
    count = len(parts["files"].samples)
    files, frames = _pool(rows, "files", count), _pool(rows, "frames", count)
    labels = [s.labels for s in parts["files"].samples]
    per_fold_macro = []
    for row in rows:
        held = [labels[i] for i in row["index"]]
        table = auroc_table(classes, held, row["files"], row["frames"], draws=0)
        per_fold_macro.append({kind: float(np.mean([t[kind][0] for t in table.values()]))
                               for kind in ("files", "frames")})
    result = {
        "images": count, "folds": len(rows),
        "refused": {"files": rate_of(_pool(rows, "refused_files", count)),
                    "frames": rate_of(_pool(rows, "refused_frames", count))},
        "auroc": auroc_table(classes, labels, files, frames),
        "macro_auroc_over_folds": {kind: _mean_ci([m[kind] for m in per_fold_macro])
                                   for kind in ("files", "frames")},
    }
    for name in ("non_xray", "other_test"):
        flags = np.concatenate([row["out_of_scope"][name] for row in rows])
        result["refused"][name] = rate_of(flags)
        result["refused"][name]["lowest_fold"] = float(min(row["out_of_scope"][name].mean() for row in rows))
    return result


def _mean_ci(values):
    mean, (low, high) = cv.mean_ci(values)
    return [round(mean, 4), round(low, 4), round(high, 4)]


def _pct(entry):
    return "{:.1f}% [{:.1f}, {:.1f}] ({}/{})".format(100 * entry["rate"], 100 * entry["ci95"][0],
                                                    100 * entry["ci95"][1], entry["count"], entry["of"])


def _triple(values, signed=False):
    text = "{:+.3f} [{:+.3f}, {:+.3f}]" if signed else "{:.3f} [{:.3f}, {:.3f}]"
    return text.format(*values)


def _variant(result):
    settings = result["settings"]
    contrast = settings.get("contrast", "none")  # results made before the field: none
    mode = "" if contrast == "none" else ", contrast `{}`".format(contrast)
    return "{} render(s), `{}` threshold{}".format(settings["renders"], settings["threshold"], mode)


def markdown(results):
    """The Markdown section of one or more camera-CV results (``camera_cli`` JSON files)."""
    first = results[0]
    lines = ["| training crops, input-check threshold | refused: files | refused: camera frames | "
             "non-X-ray frames refused | child X-rays refused (lowest fold) |", "|---|---|---|---|---|"]
    for result in results:
        refused = result["refused"]
        lines.append("| {} | {} | {} | {} | {} ({:.1f}%) |".format(
            _variant(result), _pct(refused["files"]), _pct(refused["frames"]), _pct(refused["non_xray"]),
            _pct(refused["other_test"]), 100 * refused["other_test"]["lowest_fold"]))
    for result in results:
        lines += ["", "{}: macro AUROC over folds files {}, frames {}".format(
            _variant(result), _triple(result["macro_auroc_over_folds"]["files"]),
            _triple(result["macro_auroc_over_folds"]["frames"])), "",
            "| class (positives) | AUROC files | AUROC frames | frames - files |", "|---|---|---|---|"]
        for name, row in sorted(result["auroc"].items()):
            lines.append("| {} ({}) | {} | {} | {} |".format(name, row["positives"], _triple(row["files"]),
                                                             _triple(row["frames"]),
                                                             _triple(row["difference"], signed=True)))
    header = ("{} images ({} patient folds; `python -m recipes.camera_cli`, recipes/camera_cv.py): every "
              "image's file and its camera crop (one 1280x720 frame, `edge.locate` + `normalise_crop`; "
              "test split: the frames of the table above, seed 0; train/val images: seeds 2000/2001, never "
              "the training crops' 1000/1001) scored by the fold's head and input check, which never trained "
              "on it. Refused: the input check's score > 1 (the quality gate is not part of it). Training "
              "crops: sets of one render per TRAIN/VAL image (set k: seed 1000 + 100 k). Threshold `val`: "
              "the shipped rule (99% acceptance of the validation fold's files + crops); `oof`: 99% of "
              "out-of-fold scores of every train and validation image (files + crops). Intervals: Wilson "
              "for rates, paired bootstrap over images ({} draws) for AUROC, t-interval over folds for the "
              "macro AUROC.".format(first["images"], first["folds"], BOOTSTRAP))
    return "\n".join([header, ""] + lines) + "\n"
