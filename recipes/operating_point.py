"""An operating point that survives a class-mix shift: the decision threshold of one class (the child
module's Pneumonia) chosen on patient-level cross-validation for a stated specificity target, and built
into the exported graph as an offset of that class's logit.

Why in the graph: the kiosk's first finding is the most probable class (``edge.classify``), so for two
classes a threshold ``t`` on the calibrated P(positive) is the same decision as subtracting
``T * logit(t)`` from the positive logit (``T``: the temperature) and keeping the top-1 rule. The device
needs no new manifest field, and the shown percentage is the one the decision is taken on (a prior
shift: P >= 50% on screen exactly when the calibrated probability reached ``t``).

How ``t`` is chosen: the same folds as ``recipes.cv`` (patient-level, stratified); each fold's head is
trained, temperature-scaled on the next fold and scores its own fold (out-of-fold probabilities). ``t``
is the smallest threshold whose pooled out-of-fold specificity reaches the target. Reported beside it:
sensitivity and specificity per fold at ``t`` (mean, 95% t-interval), a nested estimate (``t`` chosen
on the other folds' out-of-fold scores, applied to the held-out fold: no fold sees its own threshold),
the out-of-fold ECE of the shifted probabilities (the percent/words rule) and PPV/NPV/accuracy at the
class mixes of ``recipes.card_cv.PREVALENCE_MIXES``.
"""

import math

import numpy as np
import torch

from edge.errors import ConfigError
from recipes.config import log
from recipes.cv import at_prevalence, fold_of_patients, mean_ci
from recipes.evaluation import probs_of
from recipes.stages import train_head
from training.calibration import abstain_threshold, fit_temperature
from training.metrics import expected_calibration_error


def _part(files, photos, folds_of, wanted):
    """(embeddings, targets) of the files and crops whose patients are in the ``wanted`` folds."""
    pairs = []
    for samples, embeddings, targets in (files, photos) if photos else (files,):
        index = [i for i, s in enumerate(samples) if folds_of[s.patient_id] in wanted]
        pairs.append((embeddings[index], targets[index]))
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def out_of_fold(recipe, head, initial, files, photos, classes, task, also=None):
    """(probabilities [N, C], targets [N], fold [N]) of every file, each scored by the fold model that
    never saw its patient (trained on k-2 folds + their crops, temperature on the next fold).

    ``also`` = (samples, embeddings) of other renderings of those patients' images (e.g. degraded):
    scored by the same fold models, their probabilities are returned as a fourth item."""
    k = recipe.cv_folds
    folds_of = fold_of_patients(files[0], classes, k, recipe.seed)
    fold = np.array([folds_of[s.patient_id] for s in files[0]])
    probs = np.zeros((len(files[0]), len(classes)))
    also_fold = np.array([folds_of[s.patient_id] for s in also[0]]) if also else None
    also_probs = np.zeros((len(also[0]), len(classes))) if also else None
    saved = {name: value.clone() for name, value in head.state_dict().items()}
    try:
        for test_fold in range(k):
            val_fold = (test_fold + 1) % k
            wanted = set(range(k)) - {test_fold, val_fold}
            train, val = _part(files, photos, folds_of, wanted), _part(files, photos, folds_of, {val_fold})
            head.load_state_dict(initial)
            train_head(recipe, head, {"train": train[0], "val": val[0]}, {"train": train[1], "val": val[1]},
                       task)
            with torch.no_grad():
                temperature = fit_temperature(head(val[0]), val[1], task)
                probs[fold == test_fold] = probs_of(head(files[1][torch.from_numpy(fold == test_fold)]), task,
                                                    temperature)
                if also:
                    mine = torch.from_numpy(also_fold == test_fold)
                    also_probs[also_fold == test_fold] = probs_of(head(also[1][mine]), task, temperature)
    finally:
        head.load_state_dict(saved)
    if also:
        return probs, files[2].numpy(), fold, also_probs
    return probs, files[2].numpy(), fold


def threshold_for(scores, positive, specificity):
    """The smallest threshold on ``scores`` whose specificity (negatives below it) reaches the target."""
    negatives = np.sort(np.asarray(scores)[~np.asarray(positive, dtype=bool)])
    if negatives.size == 0:
        raise ConfigError("no negative cases to set a specificity target on. Fix: check the split's labels")
    index = min(negatives.size - 1, int(math.ceil(specificity * negatives.size)) - 1)
    above = negatives[index]
    later = negatives[negatives > above]
    # Halfway to the next negative score: every negative up to ``index`` falls below the threshold.
    return float((above + later[0]) / 2.0) if later.size else float(np.nextafter(above, 1.0))


def rates(scores, positive, threshold):
    """(sensitivity, specificity) of "positive when score >= threshold"."""
    scores, positive = np.asarray(scores), np.asarray(positive, dtype=bool)
    called = scores >= threshold
    sens = float(called[positive].mean()) if positive.any() else float("nan")
    spec = float((~called[~positive]).mean()) if (~positive).any() else float("nan")
    return sens, spec


def shifted(probs, positive_index, threshold):
    """Probabilities after the logit offset: the positive class's odds divided by t / (1 - t)."""
    odds = probs[:, positive_index] / np.clip(1.0 - probs[:, positive_index], 1e-12, None)
    odds = odds * (1.0 - threshold) / threshold
    out = np.empty_like(probs)
    out[:, positive_index] = odds / (1.0 + odds)
    out[:, 1 - positive_index] = 1.0 - out[:, positive_index]
    return out


def _interval(values):
    mean, ci = mean_ci(values)
    return {"mean": mean, "ci95": list(ci), "folds": [round(float(v), 6) for v in values]}


def summarise(probs, targets, fold, positive_index, specificity, mixes):
    """The operating point's record: threshold, per-fold and nested rates, ECE, class-mix table."""
    scores, positive = probs[:, positive_index], targets == positive_index
    threshold = threshold_for(scores, positive, specificity)
    per_fold, nested, ece = [], [], []
    moved = shifted(probs, positive_index, threshold)
    for f in sorted(set(fold.tolist())):
        mine = fold == f
        per_fold.append(rates(scores[mine], positive[mine], threshold))
        nested.append(rates(scores[mine], positive[mine], threshold_for(scores[~mine], positive[~mine],
                                                                        specificity)))
        ece.append(expected_calibration_error(moved[mine], targets[mine], "multiclass"))
    sens, spec = rates(scores, positive, threshold)
    top1 = rates(scores, positive, 0.5)
    return {
        "specificity_target": specificity, "threshold": threshold,
        "logit_offset": float(math.log(threshold / (1.0 - threshold))),
        "pooled": {"sensitivity": sens, "specificity": spec, "images": int(len(scores)),
                   "positives": int(positive.sum())},
        "top1_pooled": {"sensitivity": top1[0], "specificity": top1[1]},
        "sensitivity": _interval([r[0] for r in per_fold]),
        "specificity": _interval([r[1] for r in per_fold]),
        "nested_sensitivity": _interval([r[0] for r in nested]),
        "nested_specificity": _interval([r[1] for r in nested]),
        "ece_cv": _interval(ece),
        "class_mix": [dict(at_prevalence(sens, spec, p), negative_share=1.0 - p) for p in mixes],
    }


def sweep(probs, targets, positive_index, targets_tried=(0.9, 0.93, 0.95, 0.97, 0.98, 0.99)):
    """Pooled out-of-fold sensitivity at each specificity target (the trade-off the card shows)."""
    scores, positive = probs[:, positive_index], targets == positive_index
    rows = []
    for target in targets_tried:
        threshold = threshold_for(scores, positive, target)
        sens, spec = rates(scores, positive, threshold)
        rows.append({"target": target, "threshold": threshold, "sensitivity": sens, "specificity": spec})
    return rows


def offset_head(head, positive_index, threshold, temperature):
    """Subtract ``T * logit(t)`` from the positive class's bias (the head's last linear layer): top-1 then
    means P >= t."""
    linear = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if not linear or linear[-1].bias is None:
        raise ConfigError("the head has no linear layer with a bias to offset. Fix: use a head ending in "
                          "nn.Linear(bias=True) or no operating point")
    with torch.no_grad():
        linear[-1].bias[positive_index] -= float(temperature * math.log(threshold / (1.0 - threshold)))


def _pooled(run, outputs, parts):
    """(samples, embeddings, targets) of ``parts`` in one list/tensor each."""
    return (sum((run.samples[p] for p in parts), []), torch.cat([outputs[p][0] for p in parts]),
            torch.cat([run.targets[p] for p in parts]))


def apply(run, net, outputs):
    """Choose the recipe's operating point on CV, build it into the head and refit the abstain threshold
    on validation (files + crops) for the shifted probabilities; returns the record (``metrics``)."""
    from recipes.card_cv import PREVALENCE_MIXES

    positive_name, specificity = run.recipe.operating_point
    mixes = PREVALENCE_MIXES.get(run.module.id, (None, ()))[1]
    if positive_name not in run.classes or run.task != "multiclass" or len(run.classes) != 2:
        raise ConfigError("operating point {!r}: needs a two-class multiclass module with that class "
                          "(has {}). Fix: name one of its classes in the recipe".format(positive_name,
                                                                                       run.classes))
    positive = run.classes.index(positive_name)
    files = _pooled(run, outputs, ("train", "val", "test"))
    photos = _pooled(run, outputs, ("train_photo", "val_photo")) if "train_photo" in outputs else None
    head = net.backbone.head
    probs, targets, fold = out_of_fold(run.recipe, head, run.initial_head, files, photos, run.classes,
                                       run.task)
    record = summarise(probs, targets, fold, positive, specificity, mixes)
    record["class"] = positive_name
    record["sweep"] = sweep(probs, targets, positive)
    record["ece_cv_top1"] = _interval([expected_calibration_error(
        probs[fold == f], targets[fold == f], "multiclass") for f in sorted(set(fold.tolist()))])
    offset_head(head, positive, record["threshold"], run.description.temperature)
    with torch.no_grad():
        for name in list(outputs):
            outputs[name] = (outputs[name][0], head(outputs[name][0]))
    val_logits = torch.cat([outputs[p][1] for p in ("val", "val_photo") if p in outputs])
    val_probs = probs_of(val_logits, run.task, run.description.temperature)
    abstain = abstain_threshold(val_probs, run.recipe.abstain_coverage)
    record["abstain_threshold_before"] = run.description.abstain_threshold
    record["abstain_threshold"] = abstain
    run.description = run.description.replace(abstain_threshold=abstain)
    run.metrics["calibration_val"]["abstain_threshold"] = abstain
    log("operating point: P({}) >= {:.3f} (CV specificity target {:.0%}): sensitivity {:.3f}, specificity "
        "{:.3f} (nested {:.3f} / {:.3f}); CV ECE {:.3f}; abstain {:.3f}".format(
            positive_name, record["threshold"], specificity, record["sensitivity"]["mean"],
            record["specificity"]["mean"], record["nested_sensitivity"]["mean"],
            record["nested_specificity"]["mean"], record["ece_cv"]["mean"], abstain))
    return record


def finish(run, record):
    """Put the record into the run's metrics and take the percent/words decision on the ECE of the
    shifted out-of-fold probabilities (what the kiosk shows), not of the unshifted CV heads."""
    from recipes.cv import display_decision

    run.metrics["operating_point"] = record
    display = run.metrics.get("calibration_display")
    if display is not None:
        ece = record["ece_cv"]
        display.update({"ece_cv": ece["mean"],
                        "ece_cv_ci95": [max(0.0, ece["ci95"][0]), min(1.0, ece["ci95"][1])],
                        "display": display_decision(ece["mean"]),
                        "rule": display["rule"] + ", measured on the out-of-fold probabilities after the "
                                "operating point's logit offset"})


def card_lines(metrics):
    """The model card's operating-point section (empty when the recipe has none)."""
    from recipes.report import num, pct

    point = metrics.get("operating_point")
    if not point:
        return []

    def interval(entry, as_pct=True):
        return (pct if as_pct else num)(entry["mean"], entry["ci95"])

    name, pooled = point["class"], point["pooled"]
    abstain = point.get("abstain_threshold", (metrics.get("calibration_val") or {}).get("abstain_threshold"))
    lines = [
        "The kiosk calls **{}** only when its calibrated probability reaches **{:.3f}**, the threshold whose "
        "pooled out-of-fold specificity on the {}-image patient-level CV reaches **{}** (a margin over "
        "the issue's 90% goal for a shifted set). It is built into the graph as a logit offset of {:.3f} "
        "(x the temperature), so the screen's top finding and its percentage are the thresholded ones; "
        "the abstain threshold was refitted on validation afterwards ({:.3f}, was {:.3f}).".format(
            name, point["threshold"], pooled["images"], pct(point["specificity_target"]),
            point["logit_offset"], abstain, point["abstain_threshold_before"]),
        "",
        "| CV folds (mean over folds [95% t-interval]) | sensitivity ({}) | specificity |".format(name),
        "|---|---|---|",
        "| top-1 before the offset (P >= 0.5), pooled | {} | {} |".format(
            pct(point["top1_pooled"]["sensitivity"]), pct(point["top1_pooled"]["specificity"])),
        "| this operating point, per fold | {} | {} |".format(interval(point["sensitivity"]),
                                                           interval(point["specificity"])),
        "| nested (threshold chosen on the other folds) | {} | {} |".format(
            interval(point["nested_sensitivity"]), interval(point["nested_specificity"])),
        "",
        "Out-of-fold ECE of the probabilities as shown (after the offset): {}; before it: {}.".format(
            interval(point["ece_cv"], False), interval(point["ece_cv_top1"], False)),
        "", "Trade-off on the same out-of-fold scores (pooled):", "",
        "| specificity target | threshold | sensitivity | specificity |", "|---|---|---|---|"]
    lines += ["| {} | {:.3f} | {} | {} |".format(pct(row["target"]), row["threshold"],
                                                 pct(row["sensitivity"]), pct(row["specificity"]))
              for row in point["sweep"]]
    if point.get("class_mix"):
        lines += ["", "Class mix at this operating point (pooled CV sensitivity and specificity, by Bayes):",
                  "",
                  "| normal share | PPV ({}) | NPV | accuracy |".format(name), "|---|---|---|---|"]
        lines += ["| {} | {} | {} | {} |".format(pct(row["negative_share"]), pct(row["ppv"]), pct(row["npv"]),
                                                 pct(row["accuracy"])) for row in point["class_mix"]]
    from recipes.card_shift import card_lines as proxy_lines

    return lines + proxy_lines(metrics.get("module"))
