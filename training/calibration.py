"""Temperature scaling, expected calibration error and the abstain threshold.

The temperature is fitted on the validation split (LBFGS on the NLL; one scalar per model, also
for multilabel) and stored in the checkpoint's description, so the export bakes ``logits / T``
into the graph. The abstain threshold is the confidence below which the kiosk shows "uncertain",
chosen so that a given fraction (coverage) of validation cases is still answered.
"""

import math

import numpy as np
import torch
from torch.nn import functional as F

from training.metrics import expected_calibration_error

# A validation split the model separates perfectly drives the NLL-optimal T towards 0 (every
# percentage becomes 100%); with the small validation splits of medical data that is over-fitting
# the calibration, not calibration. So T may soften a model freely but sharpen it at most 2x.
MIN_T, MAX_T = 0.5, 20.0


def probabilities(logits, task, temperature=1.0):
    logits = torch.as_tensor(logits, dtype=torch.float32) / float(temperature)
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def nll(logits, targets, task, temperature=1.0):
    logits = torch.as_tensor(logits, dtype=torch.float32) / float(temperature)
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, torch.as_tensor(targets).float()).item()
    return F.cross_entropy(logits, torch.as_tensor(targets).long()).item()


def fit_temperature(logits, targets, task, max_iter=100):
    """The scalar T > 0 minimising the validation NLL of ``logits / T``."""
    logits = torch.as_tensor(logits, dtype=torch.float64).detach()
    if logits.numel() == 0:
        return 1.0
    targets = torch.as_tensor(targets)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        scaled = logits / log_t.exp()
        if task == "multilabel":
            loss = F.binary_cross_entropy_with_logits(scaled, targets.double())
        else:
            loss = F.cross_entropy(scaled, targets.long())
        loss.backward()
        return loss

    optimizer.step(closure)
    value = float(log_t.exp().item())
    if not math.isfinite(value):
        return 1.0
    return min(MAX_T, max(MIN_T, value))


def abstain_threshold(probs, coverage):
    """The top-probability threshold that keeps ``coverage`` of the cases answered."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0 or coverage >= 1.0:
        return 0.0
    top = np.sort(probs.max(axis=1))
    index = int(math.floor((1.0 - coverage) * len(top)))
    return float(min(1.0, max(0.0, top[min(index, len(top) - 1)])))


def calibration_summary(logits, targets, task, temperature, coverage):
    """Before/after NLL and ECE, the temperature and the abstain threshold (JSON-ready)."""
    before = probabilities(logits, task).numpy()
    after = probabilities(logits, task, temperature).numpy()
    return {
        "temperature": float(temperature),
        "nll_before": nll(logits, targets, task),
        "nll_after": nll(logits, targets, task, temperature),
        "ece_before": expected_calibration_error(before, targets, task),
        "ece_after": expected_calibration_error(after, targets, task),
        "abstain_coverage": float(coverage),
        "abstain_threshold": abstain_threshold(after, coverage),
        "fitted_on": "val",
        "cases": int(len(targets)),
    }


def calibrate_checkpoint(path, loader, device, coverage=0.9):
    """Fit T on ``loader`` (the validation split) and write it and the abstain threshold into ``path``."""
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.predict import predict_logits

    loaded = load_checkpoint(path)
    net = loaded.net.to(device)
    logits, targets = predict_logits(net, loader, device)
    task = loaded.description.task
    temperature = fit_temperature(logits, targets, task)
    summary = calibration_summary(logits, targets, task, temperature, coverage)
    description = loaded.description.replace(temperature=temperature,
                                             abstain_threshold=summary["abstain_threshold"])
    data = loaded.data
    data["description"] = description.to_dict()
    data.setdefault("training", {}).setdefault("metrics", {})["calibration"] = summary
    save_checkpoint(path, data)
    return summary
