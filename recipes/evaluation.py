"""What the recipe measures: test metrics (``training.metrics`` definitions), calibration, the input
check's fit and rejection rates, the network's cost; and the JSON-safe summaries of them."""

import math
import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from edge.errors import ConfigError
from edge.preprocess import preprocess
from recipes.stages import run_module
from training import ood
from training.calibration import abstain_threshold, calibration_summary, fit_temperature, probabilities
from training.metrics import binary_auroc, bootstrap_auroc, expected_calibration_error, wilson_interval

NOT_AN_XRAY = "Not a chest X-ray — check the image or the module"


def probs_of(logits, task, temperature=1.0):
    return probabilities(logits, task, temperature).numpy()


def classification_metrics(probs, targets, classes, task, abstain_threshold=None):
    """Accuracy, per-class sensitivity/specificity/precision/AUROC with 95% CIs, confusion matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    n = len(probs)
    result = {"images": int(n), "task": task, "per_class": {}}
    if task == "multilabel":
        truth = targets.astype(bool)
        predicted = probs >= 0.5
    else:
        truth = np.eye(len(classes), dtype=bool)[targets.astype(int)]
        predicted = np.eye(len(classes), dtype=bool)[probs.argmax(1)]
        correct = int((probs.argmax(1) == targets).sum())
        result["accuracy"] = correct / n if n else float("nan")
        result["accuracy_ci95"] = wilson_interval(correct, n)
        matrix = np.zeros((len(classes), len(classes)), dtype=int)
        for t, p in zip(targets.astype(int), probs.argmax(1)):
            matrix[t, p] += 1
        result["confusion_matrix"] = {"rows_true_cols_predicted": list(classes), "counts": matrix.tolist()}
    aurocs = []
    for k, name in enumerate(classes):
        pos, neg = truth[:, k], ~truth[:, k]
        tp, fn = int((predicted[:, k] & pos).sum()), int((~predicted[:, k] & pos).sum())
        tn, fp = int((~predicted[:, k] & neg).sum()), int((predicted[:, k] & neg).sum())
        auroc = binary_auroc(pos.astype(int), probs[:, k])
        aurocs.append(auroc)
        result["per_class"][name] = {
            "support": int(pos.sum()),
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "sensitivity_ci95": wilson_interval(tp, tp + fn),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "specificity_ci95": wilson_interval(tn, tn + fp),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "precision_ci95": wilson_interval(tp, tp + fp),
            "auroc": auroc,
            "auroc_ci95": bootstrap_auroc(pos.astype(int), probs[:, k], seed=k),
        }
    valid = [a for a in aurocs if not math.isnan(a)]
    result["macro_auroc"] = float(np.mean(valid)) if valid else float("nan")
    result["ece"] = expected_calibration_error(probs, targets, task)
    if abstain_threshold is not None and task == "multiclass" and n:
        answered = probs.max(1) >= abstain_threshold
        k = int(answered.sum())
        good = int((probs.argmax(1) == targets)[answered].sum())
        result["abstain"] = {
            "threshold": float(abstain_threshold),
            "coverage": k / n,
            "accuracy_answered": good / k if k else float("nan"),
            "accuracy_answered_ci95": wilson_interval(good, k),
        }
    return result


def calibrate(recipe, val_logits, val_targets, task):
    """(temperature, validation calibration summary, abstain threshold), all fitted on validation."""
    temperature = fit_temperature(val_logits, val_targets, task)
    calibration = calibration_summary(val_logits, val_targets, task, temperature, recipe.abstain_coverage)
    val_probs = probs_of(val_logits, task, temperature)
    threshold = abstain_threshold(val_probs, recipe.abstain_coverage) if task == "multiclass" else 0.5
    return temperature, calibration, threshold


def pooled_threshold(groups, accept):
    """One quantile of all in-scope validation scores together (files + crops)."""
    return ood.choose_threshold(np.concatenate([np.asarray(g, dtype=np.float64) for g in groups]), accept)


def each_group_threshold(groups, accept):
    """The larger of the groups' quantiles: each group (val files, val crops) is accepted at ``accept``."""
    return max(ood.choose_threshold(g, accept) for g in groups if len(g))


THRESHOLD_RULES = {"pooled": pooled_threshold, "each": each_group_threshold}


def threshold_rule(recipe):
    """The recipe's ``ood_rule`` as a function (groups of scores, accept) -> threshold."""
    if recipe.ood_rule not in THRESHOLD_RULES:
        raise ConfigError("unknown ood_rule {!r}. Fix: use one of {}".format(
            recipe.ood_rule, ", ".join(sorted(THRESHOLD_RULES))))
    return THRESHOLD_RULES[recipe.ood_rule]


def fit_input_check(recipe, embeddings, targets, images, task, n_classes, negatives=(), val_groups=None):
    """The input-check head: Mahalanobis distance on the training embeddings (threshold on validation
    X-rays) plus image-statistics terms (X-rays are grey and have contrast) and, when ``negatives``
    (embeddings of the other patient group and of non-X-rays) are given, a linear out-of-scope score;
    ``embeddings``/``targets``/``images`` hold "train" and "val" (files and photographed crops);
    ``val_groups``: the val embeddings split by group (files, crops) for ``recipe.ood_rule``
    (default: one group, ``embeddings["val"]``). Returns (head, thresholds)."""
    rule = threshold_rule(recipe)
    groups = [g.numpy() for g in val_groups] if val_groups else [embeddings["val"].numpy()]
    train_labels = targets["train"].numpy() if task == "multiclass" else targets["train"].argmax(1).numpy()
    fit = ood.fit_mahalanobis(embeddings["train"].numpy(), train_labels, n_classes, recipe.ood_shrinkage,
                              recipe.ood_components)
    distance = rule([fit.distances(g) for g in groups], recipe.ood_accept)
    val_contrast = ood.grey_contrast(images["val"].float()).numpy()
    val_chroma = ood.colour_scores(images["val"].float()).numpy()
    thresholds = {"distance_threshold": distance, "threshold_rule": recipe.ood_rule,
                  "colour_threshold": max(recipe.colour_threshold, 2.0 * float(val_chroma.max())),
                  "contrast_threshold": recipe.contrast_fraction * float(val_contrast.min())}
    group = None
    if len(negatives):
        group = ood.fit_group_score(embeddings["train"].numpy(), torch.cat(list(negatives)).numpy(),
                                    embeddings["val"].numpy(), recipe.ood_accept, seed=recipe.seed)
        group = replace(group, threshold=rule([group.logits(g) for g in groups], recipe.ood_accept))
        thresholds["scope_threshold"] = group.threshold
    head = ood.InputCheckHead(fit, distance, thresholds["colour_threshold"],
                              thresholds["contrast_threshold"], group=group).eval()
    return head, thresholds


def _flag_rate(scores):
    flagged = int((np.asarray(scores) > 1.0).sum())
    return {"n": int(len(scores)), "flagged": flagged, "rate": flagged / len(scores) if len(scores) else None,
            "ci95": wilson_interval(flagged, len(scores))}


def scope_rates(ood_head, outputs, images):
    """Flag rates (Wilson 95% CIs) of the input check on each extra set: the own group's photographed
    validation crops and files, the other patient group's val/test X-rays, generated non-X-rays."""
    rates = {}
    names = ("val", "val_photo", "other_val", "other_test", "negatives")
    with torch.no_grad():
        for name in names:
            if name in outputs:
                scores = ood_head(outputs[name][0], None, images[name].float()).numpy()
                rates[name] = _flag_rate(scores)
    return {"scope": rates}


def measure_input_check(deploy, ood_head, test_embeddings, test_images, description, with_skimage=True):
    """Rejection rates: real test X-rays (should be ~1 - accept) and out-of-scope images (should be ~1)."""
    with torch.no_grad():
        xray_scores = torch.cat(
            [
                ood_head(test_embeddings[i : i + 256], None, test_images[i : i + 256].float())
                for i in range(0, len(test_images), 256)
            ]
        ).numpy()
    images = ood.out_of_scope_images(
        size=max(64, description.input.height), with_skimage=with_skimage and has_skimage()
    )
    names = sorted(images)
    batch = np.concatenate([preprocess(images[n], description.input) for n in names])
    with torch.no_grad():
        scores = run_module(lambda x: deploy(x)[1], torch.from_numpy(batch), batch_size=16).numpy()
    table = ood.summarise(names, scores)
    return {
        "test_xrays": {
            "n": int(len(xray_scores)),
            "flagged": int((xray_scores > 1.0).sum()),
            "rate": ood.rates(xray_scores),
        },
        "out_of_scope": table,
        "missed": [n for n, s in zip(names, scores) if s <= 1.0],
        "scores": {n: round(float(s), 3) for n, s in zip(names, scores)},
    }


def has_skimage():
    try:
        import skimage  # noqa: F401
    except ImportError:
        return False
    return True


def headline(metrics):
    parts = []
    if "accuracy" in metrics:
        parts.append(
            "accuracy {:.3f} [{:.3f}, {:.3f}]".format(metrics["accuracy"], *metrics["accuracy_ci95"])
        )
    parts.append("macro AUROC {:.3f}".format(metrics["macro_auroc"]))
    parts.append("ECE {:.3f} -> {:.3f}".format(metrics["ece_before_temperature"], metrics["ece"]))
    check = metrics["input_check"]
    parts.append(
        "input check: flags {:.0%} of out-of-scope images, {:.1%} of test X-rays".format(
            check["out_of_scope"]["all"]["rate"], check["test_xrays"]["rate"]
        )
    )
    return "; ".join(parts)


def brief(metrics):
    keep = ("accuracy", "accuracy_ci95", "macro_auroc", "ece", "ece_before_temperature", "abstain")
    brief = {k: metrics[k] for k in keep if k in metrics}
    brief["per_class"] = {
        c: {k: v for k, v in m.items() if k in ("sensitivity", "specificity", "auroc")}
        for c, m in metrics["per_class"].items()
    }
    brief["input_check"] = {
        "test_xrays_rejected": metrics["input_check"]["test_xrays"]["rate"],
        "out_of_scope_flagged": metrics["input_check"]["out_of_scope"]["all"]["rate"],
    }
    return to_json(brief)


def to_json(value):
    """JSON-safe: dict keys as strings, nan as None, floats rounded to 6 places, numpy as Python."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, (np.floating, np.integer)):
        return to_json(value.item())
    return value


def count_macs(net, spec):
    """Multiply-accumulates of Conv2d and Linear layers for one image (the dominant cost)."""
    total = [0]

    def conv_hook(module, _inputs, output):
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total[0] += int(output.numel() // output.shape[0]) * kernel

    def linear_hook(module, _inputs, output):
        total[0] += int(output.numel() // output.shape[0]) * module.in_features

    handles = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        net.eval()
        net(torch.full(spec.shape(1), 127.0))
    for handle in handles:
        handle.remove()
    return total[0]


def cpu_latency_ms(net, spec, runs=10, threads=1):
    """Median PyTorch CPU latency of one image (``threads`` intra-op threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.full(spec.shape(1), 127.0)
        times = []
        with torch.no_grad():
            net.eval()
            net(x)
            for _ in range(runs):
                started = time.perf_counter()
                net(x)
                times.append((time.perf_counter() - started) * 1000.0)
    finally:
        torch.set_num_threads(previous)
    return float(np.median(times))


def cost_of(net, spec):
    """Parameters, multiply-accumulates and single-thread CPU latency of one image."""
    return {
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "macs_per_image": count_macs(net, spec),
        "input": "{}x{}".format(spec.height, spec.width),
        "cpu_latency_ms_1thread": cpu_latency_ms(net, spec),
    }
