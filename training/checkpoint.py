"""Checkpoints: one self-contained file per model, exportable with nothing else beside it.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format "medkiosk-checkpoint", version 1,
    description   ModelDescription.to_dict()  (arch, classes, input, normalisation, temperature...)
    arch, state_dict (ClassifierNet), epoch, val_loss,
    module        {"id", "title"}
    training      {"data": counts per split/class, patients; "metrics": ...}
    config        the TrainConfig as a dict
    resume        (last.pt only) optimizer, scheduler, scaler, RNG states, history, best_val_loss
"""

import os
from dataclasses import dataclass

import torch

from edge.description import DescriptionError, ModelDescription
from edge.errors import MedkioskError
from training.nets import ClassifierNet
from training.registry import build_backbone

FORMAT = "medkiosk-checkpoint"
VERSION = 1


class CheckpointError(MedkioskError):
    """A checkpoint file is missing, not a medkiosk checkpoint, or does not match its architecture."""


@dataclass
class LoadedCheckpoint:
    net: ClassifierNet  # eval mode, on CPU
    description: ModelDescription
    data: dict  # the whole checkpoint dict (module, training, config, ...)

    @property
    def module(self):
        return self.data.get("module") or {}

    @property
    def training(self):
        return self.data.get("training") or {}


def build_net(description, pretrained=False):
    """A ClassifierNet for a description (random or pretrained backbone)."""
    backbone = build_backbone(description.arch, description.num_classes, pretrained=pretrained,
                              image_size=description.input.height)
    return ClassifierNet(backbone, description)


def make_checkpoint(net, description, epoch, val_loss, module=None, training=None, config=None, resume=None):
    """The checkpoint dict for a net (state dict copied to CPU)."""
    state = {key: value.detach().cpu().clone() for key, value in net.state_dict().items()}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "description": description.to_dict(),
        "arch": description.arch,
        "state_dict": state,
        "epoch": int(epoch),
        "val_loss": None if val_loss is None else float(val_loss),
        "module": dict(module or {"id": None, "title": None}),
        "training": training or {"data": {}, "metrics": {}},
        "config": config or {},
    }
    if resume is not None:
        data["resume"] = resume
    return data


def save_checkpoint(path, data):
    """Write a checkpoint atomically (temporary file, fsync, rename)."""
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        torch.save(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_checkpoint(path):
    """The raw checkpoint dict, validated for format and version."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError("{}: no such checkpoint. Fix: pass a best.pt/last.pt written by "
                              "`medkiosk train`".format(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        reason = "{}: {}".format(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        raise CheckpointError("{}: cannot be read as a medkiosk checkpoint ({}). Fix: re-run "
                              "`medkiosk train`".format(path, reason)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("{}: not a medkiosk checkpoint (no format {!r}). Fix: pass a best.pt/last.pt "
                              "written by `medkiosk train`".format(path, FORMAT))
    if data.get("version") != VERSION:
        raise CheckpointError("{}: checkpoint version {!r} is not supported (this medkiosk reads version "
                              "{}). Fix: re-train or use the matching medkiosk release".format(
                                  path, data.get("version"), VERSION))
    return data


def description_of(data, path="checkpoint"):
    try:
        return ModelDescription.from_dict(data["description"])
    except (DescriptionError, KeyError, TypeError) as exc:
        raise CheckpointError("{}: invalid model description ({}). Fix: re-run `medkiosk train`".format(
            path, exc)) from exc


def load_checkpoint(path):
    """Load a checkpoint into an eval-mode ClassifierNet on CPU with its description."""
    data = read_checkpoint(path)
    description = description_of(data, path)
    net = build_net(description, pretrained=False)
    try:
        net.load_state_dict(data["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError("{}: weights do not fit architecture {} ({}). Fix: re-run `medkiosk train`"
                              .format(path, description.arch, str(exc).splitlines()[0])) from exc
    net.eval()
    return LoadedCheckpoint(net=net, description=description, data=data)


def update_checkpoint(path, **changes):
    """Rewrite some top-level fields of a checkpoint (e.g. a calibrated description) atomically."""
    data = read_checkpoint(path)
    data.update(changes)
    save_checkpoint(path, data)
    return data
