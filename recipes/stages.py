"""The two training stages on cached trunk outputs: stage 1 trains the head on frozen embeddings,
stage 2 fine-tunes the tail (the last blocks, or the whole network) and the head.

Both are mini-batch AdamW with early stopping on the validation loss; the best state is restored.
"""

import copy
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from edge.errors import MedkioskError
from recipes.config import log


@torch.no_grad()
def run_module(module, inputs, batch_size=64, to_float=True):
    """Apply a module (or function) to a (uint8 or float) tensor in batches; eval mode, no grad."""
    if hasattr(module, "eval"):
        module.eval()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size]
        outputs.append(module(x.float() if to_float else x))
    return torch.cat(outputs) if outputs else torch.empty(0)


def loss_of(logits, targets, task):
    """The training loss; ``task`` is "multilabel", "multiclass" or a loss object (called as
    ``task(logits, targets)``; e.g. ``recipes.tail_cv.AuxLoss``)."""
    if callable(task):
        return task(logits, targets)
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


def batched(forward, x, size=128):
    return torch.cat([forward(x[s : s + size].float()) for s in range(0, len(x), size)])


def accuracy_of(logits, targets, task):
    if callable(task):
        return task.accuracy(logits, targets)
    if task == "multilabel":
        return float(((logits > 0).float() == targets).float().mean())
    return float((logits.argmax(1) == targets).float().mean())


def snapshot(modules):
    return [copy.deepcopy(m.state_dict()) for m in modules]


def restore(modules, states):
    for module, state in zip(modules, states):
        module.load_state_dict(state)


@dataclass
class Settings:
    """How one stage trains."""

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    patience: int
    seed: int
    label: str = "stage"
    keep_last: bool = False  # keep the last epoch's state (a fixed schedule) instead of the best one


@dataclass
class Trainable:
    """What one stage trains: its parameters, its forward, and how to save/restore its state."""

    params: list
    forward: Callable
    state_of: Callable
    load_state: Callable
    train_mode: Optional[Callable] = None
    augment: Optional[Callable] = None


def _train_epoch(model, settings, optimizer, order, train_x, train_y, task, epoch):
    """One pass over the training data in the given order; returns the mean training loss."""
    total = 0.0
    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        x = train_x[idx].float()
        if model.augment is not None:
            x = torch.stack([model.augment(img) for img in x])
        loss = loss_of(model.forward(x), train_y[idx], task)
        if not torch.isfinite(loss):
            raise MedkioskError("{} diverged at epoch {} (loss {}). Fix: lower the learning rate".format(
                settings.label, epoch + 1, loss.item()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.params, 5.0)
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(order)


def fit(model, settings, train, val, task):
    """Train ``model`` (a Trainable) on ``train`` = (x, y); early stopping on ``val`` = (x, y).

    The starting state competes too (epoch 0): fine-tuning that never beats the stage-1 model
    leaves the stage-1 model in place. Returns the per-epoch history.
    """
    if not model.params:
        return []
    optimizer = torch.optim.AdamW(model.params, lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    checked = getattr(task, "validation", task)  # a loss object may stop early on another loss
    with torch.no_grad():
        start_loss = loss_of(batched(model.forward, val[0]), val[1], checked).item()
    best, best_state, stale = start_loss, model.state_of(), 0
    history = [{"epoch": 0, "val_loss": round(start_loss, 5)}]
    for epoch in range(settings.epochs):
        started = time.time()
        if model.train_mode:
            model.train_mode(True)
        order = torch.randperm(len(train[0]), generator=generator)
        train_loss = _train_epoch(model, settings, optimizer, order, train[0], train[1], task, epoch)
        if model.train_mode:
            model.train_mode(False)
        with torch.no_grad():
            val_logits = batched(model.forward, val[0])
            val_loss = loss_of(val_logits, val[1], checked).item()
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5),
                        "val_loss": round(val_loss, 5),
                        "val_accuracy": round(accuracy_of(val_logits, val[1], task), 5),
                        "seconds": round(time.time() - started, 2)})
        if val_loss < best - 1e-5:
            best, best_state, stale = val_loss, model.state_of(), 0
        else:
            stale += 1
        stop = stale >= settings.patience and not settings.keep_last
        if settings.epochs <= 20 or stop or (epoch + 1) % 10 == 0:
            row = history[-1]
            log("{} epoch {}: train {:.4f} val {:.4f} acc {:.3f} ({:.0f}s){}".format(
                settings.label, epoch + 1, row["train_loss"], val_loss, row["val_accuracy"],
                time.time() - started, " best" if stale == 0 else ""))
        if stop:
            break
    if not settings.keep_last:
        model.load_state(best_state)
    return history


def train_head(recipe, head, embeddings, targets, task):
    """Stage 1: the linear head alone on the frozen network's pooled embeddings."""
    params = list(head.parameters())
    for p in params:
        p.requires_grad_(True)
    model = Trainable(params, head, lambda: snapshot([head]), lambda s: restore([head], s))
    settings = Settings(recipe.head_epochs, recipe.head_lr, recipe.weight_decay, 64,
                        max(5, recipe.patience * 4), recipe.seed, label="stage 1 (head)")
    return fit(model, settings, (embeddings["train"], targets["train"]),
               (embeddings["val"], targets["val"]), task)


def fine_tune(recipe, net, tail, cached, targets, task, augment=None, keep_last=False):
    """Stage 2: the tail's trainable blocks and the head on the cached trunk outputs ([] if none);
    ``keep_last``: all ``tune_epochs`` epochs and their last state (no early stopping)."""
    tail_params = tail.trainable() if hasattr(tail, "trainable") else []
    if not tail_params or recipe.tune_epochs <= 0:
        return None
    head = net.backbone.head
    params = tail_params + list(head.parameters())
    for p in params:
        p.requires_grad_(True)

    def train_mode(on):
        # BatchNorm statistics stay frozen for a pretrained network (few images, small batches).
        tail.train(on and not recipe.pretrained)
        head.train(on)

    model = Trainable(params, lambda x: head(tail(x)), lambda: snapshot([net]), lambda s: restore([net], s),
                      train_mode=train_mode, augment=augment)
    settings = Settings(recipe.tune_epochs, recipe.tune_lr, recipe.weight_decay, recipe.batch_size,
                        recipe.patience, recipe.seed + 1, label="stage 2 (tune)", keep_last=keep_last)
    return fit(model, settings, (cached["train"], targets["train"]), (cached["val"], targets["val"]), task)
