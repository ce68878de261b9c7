"""The recipe's data: the committed split, samples limited per class, images cached once in memory."""

import collections
import os

import numpy as np
import torch

from edge.errors import ConfigError, MedkioskError
from edge.preprocess import load_image, preprocess
from recipes.config import ROOT
from training.data import load_samples
from training.modules import get_module
from training.splits import Split, check_leaks, make_split


def resolve_split(recipe, data_root, split_dir):
    """The committed split (made and written once if missing), samples resolved under ``data_root``."""
    module = get_module(recipe.module)
    images_dir = os.path.join(data_root, recipe.data)
    path = os.path.join(split_dir, "{}.json".format(recipe.module))
    if os.path.isfile(path):
        split = Split.from_file(path, root=images_dir)
        missing = [s.path for _n, part in split.parts() for s in part if not os.path.isfile(s.path)]
        if missing:
            raise ConfigError(
                "{} lists {} images missing under {} (e.g. {}). Fix: pass --data-root pointing "
                "at the folder that holds {}".format(path, len(missing), images_dir, missing[0], recipe.data)
            )
        return module, split, {"split_file": os.path.relpath(path, ROOT), "created": False}
    csv_path = os.path.join(data_root, recipe.csv) if recipe.csv else None
    samples = load_samples(module, images_dir, csv_path)
    split = make_split(
        samples,
        fractions=(0.7, 0.15, 0.15),
        seed=recipe.seed,
        root=images_dir,
        meta={"module": recipe.module, "classes": list(module.classes), "samples": samples.summary},
    )
    split.to_file(path, root=images_dir)
    leaks = check_leaks(split, cache_path=os.path.join(split_dir, ".{}.hashes.json".format(recipe.module)))
    return module, split, {"split_file": os.path.relpath(path, ROOT), "created": True, "leak_check": leaks}


def limit_samples(samples, per_class):
    """At most ``per_class`` samples per (first) label, in the split's order."""
    if not per_class:
        return list(samples)
    kept, counts = [], {}
    for sample in samples:
        key = sample.labels[0]
        if counts.get(key, 0) < per_class:
            kept.append(sample)
            counts[key] = counts.get(key, 0) + 1
    return kept


def cache_images(samples, spec):
    """Samples -> uint8 tensor [N, C, H, W] of the images exactly as edge.preprocess feeds the device."""
    batch = np.empty(spec.shape(len(samples)), dtype=np.uint8)
    failures = []
    for index, sample in enumerate(samples):
        try:
            batch[index] = preprocess(load_image(sample.path), spec)[0].astype(np.uint8)
        except MedkioskError as exc:
            failures.append(str(exc))
    if failures:
        raise ConfigError(
            "{} of {} images cannot be read: {}. Fix: repair or remove them, then make the split "
            "again".format(len(failures), len(samples), "; ".join(failures[:3]))
        )
    return torch.from_numpy(batch)


def raw_spec(spec):
    """``spec`` without its contrast normalisation: what stored renders (crops, negatives) are kept as."""
    from edge.description import InputSpec

    return InputSpec.from_dict(dict(spec.to_dict(), contrast="none"))


def normalise_inputs(images, mode):
    """uint8 inputs [N, C, H, W] at the model's size -> the same after ``edge.preprocess.normalise_contrast``
    (which runs after the resize, so this equals preprocessing the source images with ``mode``)."""
    from edge.preprocess import normalise_contrast

    if mode == "none":
        return images
    pixels = images.numpy().transpose(0, 2, 3, 1)
    out = np.stack([normalise_contrast(np.ascontiguousarray(p), mode) for p in pixels])
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


def targets_of(samples, classes, task):
    index = {c: i for i, c in enumerate(classes)}
    if task == "multilabel":
        hot = torch.zeros(len(samples), len(classes))
        for row, sample in enumerate(samples):
            for label in sample.labels:
                hot[row, index[label]] = 1.0
        return hot
    return torch.tensor([index[s.labels[0]] for s in samples], dtype=torch.long)


@torch.no_grad()


def counts_of(parts):
    """Images, patients and per-class counts of each part (as ``Split.counts()`` gives them)."""
    return {
        name: {
            "images": len(s),
            "patients": len({x.patient_id for x in s}),
            "per_class": dict(collections.Counter(x.labels[0] for x in s)),
        }
        for name, s in parts.items()
    }
