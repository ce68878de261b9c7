"""Running a network over a loader: device placement, precise BatchNorm, logits, validation loss.

Shared by training (``training.train``), calibration and evaluation.
"""

import torch
from torch import nn


def progress_bar(iterable, enabled, desc, total=None):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def to_device(x, y, device):
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def recompute_batchnorm(net, loader, device, max_batches):
    """Precise BatchNorm: replace the running statistics by their average over training batches.

    Short runs otherwise validate with statistics still dominated by their initial values.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or max_batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for index, (x, y) in enumerate(loader):
            if index >= max_batches:
                break
            x, _y = to_device(x, y, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                net(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def predict_logits(net, loader, device, progress=False, desc="predict"):
    """Logits and targets over a loader (eval mode, no grad), as CPU tensors."""
    net.eval()
    logits, targets = [], []
    with torch.no_grad():
        for x, y in progress_bar(loader, progress, desc):
            x, y = to_device(x, y, device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = net(x)
            logits.append(out.float().cpu())
            targets.append(y.cpu())
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(logits), torch.cat(targets)


def val_metrics(logits, targets, task):
    """Plain (unweighted, unsmoothed) validation loss and accuracy."""
    if task == "multiclass":
        loss = nn.functional.cross_entropy(logits, targets.long()).item()
        accuracy = (logits.argmax(1) == targets.long()).float().mean().item()
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets.float()).item()
        accuracy = ((logits > 0).float() == targets.float()).float().mean().item()
    return loss, accuracy
