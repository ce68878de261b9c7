"""The data side of a ``medkiosk train`` run: the module and its samples, the patient-level split
(made once, reused on resume), summaries, class balancing and the loaders."""

import os
import random

import numpy as np
import torch
from torch import nn

from edge.errors import ConfigError
from training.registry import get_arch

SPLIT_FILE = "split.json"


def _worker_init(worker_id):
    seed = torch.initial_seed() % (2 ** 32)
    random.seed(seed)
    np.random.seed(seed)


def resolve_module(config):
    """The ModuleDefinition (or None) and the resolved task/colour/size/augmentation."""
    module = None
    if config.module:
        from training.modules import get_module

        module = get_module(config.module)
    task = config.task or (module.task if module else "multiclass")
    colour = config.colour or (module.colour if module else "RGB")
    size = int(config.image_size or (module.image_size if module else get_arch(config.arch).default_size))
    augmentation = config.augmentation or (module.augmentation if module else "none")
    return module, task, colour, size, augmentation


def load_training_samples(config, module):
    """Samples of the data set (folder or CSV) and the class list."""
    from training import data as data_mod

    if config.csv:
        if module is None:
            raise ConfigError("--csv needs --module (the CSV's class list comes from the module). Fix: pass "
                              "--module chest or a module file")
        samples = data_mod.samples_from_csv(config.csv, config.data, module.classes,
                                            multi_finding=module.multi_finding)
    else:
        samples = data_mod.samples_from_folder(config.data, classes=module.classes if module else None)
    if module is not None:
        classes = list(module.classes)
    else:
        classes = sorted({label for sample in samples for label in sample.labels})
    if len(samples) == 0:
        raise ConfigError("no images found in {}".format(config.data))
    return samples, classes


def make_or_load_split(config, samples, run_dir, dist_ctx):
    """Reuse --split-file or the run's split.json (on resume), else make a patient-level split."""
    from training import splits

    existing = config.split_file or (os.path.join(run_dir, SPLIT_FILE) if config.resume else None)
    if existing and os.path.isfile(existing):
        split = splits.Split.from_file(existing)
    elif config.split_file:
        raise ConfigError("split file {} does not exist. Fix: pass a split written by `medkiosk data split` "
                          "or drop --split-file".format(config.split_file))
    else:
        train_fraction = 1.0 - config.val_fraction - config.test_fraction
        split = splits.make_split(samples, fractions=(train_fraction, config.val_fraction,
                                                      config.test_fraction), seed=config.seed)
    if dist_ctx.main:
        # Rank 0 alone checks (and caches image hashes in the run folder); a leak stops every rank.
        cache = None if split.path else os.path.join(run_dir, SPLIT_FILE + ".hashes.json")
        splits.check_leaks(split, cache_path=cache)
    if not split.train:
        raise ConfigError("the training split is empty. Fix: add images or lower "
                          "--val-fraction/--test-fraction")
    if dist_ctx.main:
        split.to_file(os.path.join(run_dir, SPLIT_FILE))
    return split


def _split_stats(samples, classes):
    per_class = {c: 0 for c in classes}
    for sample in samples:
        for label in sample.labels:
            if label in per_class:
                per_class[label] += 1
    return {"images": len(samples), "patients": len({s.patient_id for s in samples}), "per_class": per_class}


def data_summary(config, split, classes):
    return {
        "source": os.path.abspath(config.data),
        "csv": os.path.abspath(config.csv) if config.csv else None,
        "classes": list(classes),
        "splits": {name: _split_stats(getattr(split, name), classes) for name in ("train", "val", "test")},
    }


def _targets(samples, classes, task):
    index = {c: i for i, c in enumerate(classes)}
    if task == "multiclass":
        return np.array([index[s.labels[0]] for s in samples], dtype=np.int64)
    hot = np.zeros((len(samples), len(classes)), dtype=np.float32)
    for row, sample in enumerate(samples):
        for label in sample.labels:
            hot[row, index[label]] = 1.0
    return hot


def class_weights(samples, classes, task):
    """Inverse-frequency class weights (multiclass) or positive weights neg/pos (multilabel)."""
    targets = _targets(samples, classes, task)
    if task == "multiclass":
        counts = np.bincount(targets, minlength=len(classes)).astype(np.float64)
        weights = len(targets) / (len(classes) * np.maximum(counts, 1.0))
    else:
        positives = targets.sum(axis=0).astype(np.float64)
        weights = (len(targets) - positives) / np.maximum(positives, 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def sample_weights(samples, classes, task):
    """Per-sample weights for a class-balanced sampler."""
    targets = _targets(samples, classes, task)
    if task == "multiclass":
        per_class = class_weights(samples, classes, task).numpy()
        return torch.tensor(per_class[targets], dtype=torch.double)
    counts = targets.sum(axis=0)
    inverse = 1.0 / np.maximum(counts, 1.0)
    weights = np.where(targets.any(axis=1), (targets * inverse).max(axis=1), inverse.mean())
    return torch.tensor(weights, dtype=torch.double)


def make_loaders(config, split, classes, task, input_spec, augmentation, device, dist_ctx):
    from torch.utils.data import DataLoader, WeightedRandomSampler
    from torch.utils.data.distributed import DistributedSampler

    from training.augment import build_transform
    from training.datasets import ImageDataset

    cache = config.cache_images
    train_set = ImageDataset(split.train, classes, input_spec, task,
                             transform=build_transform(augmentation, input_spec), cache=cache)
    val_set = ImageDataset(split.val, classes, input_spec, task, cache=cache) if split.val else None
    generator = torch.Generator()
    common = {"num_workers": config.workers, "pin_memory": device.type == "cuda",
              "worker_init_fn": _worker_init, "persistent_workers": config.workers > 0}
    sampler = None
    if dist_ctx.enabled:
        sampler = DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank,
                                     shuffle=True, seed=config.seed, drop_last=False)
    elif config.balance == "sampler":
        sampler = WeightedRandomSampler(sample_weights(split.train, classes, task), len(split.train),
                                        replacement=True, generator=generator)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=sampler is None,
                              sampler=sampler, generator=generator,
                              drop_last=len(train_set) > config.batch_size, **common)
    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, **common)
    return train_loader, val_loader, generator, sampler


def make_criterion(config, split, classes, task, device):
    weights = class_weights(split.train, classes, task).to(device) if config.balance == "weights" else None
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    return nn.BCEWithLogitsLoss(pos_weight=weights)
