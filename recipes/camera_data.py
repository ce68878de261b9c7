"""The data of the cross-validated camera-path evaluation (``recipes.camera_cv``), as embeddings.

Every image the module keeps (train + val + test split files) is rendered once as a 1280x720 camera
frame (``training.photograph``; film and monitor scenes alternate) and cut out by the device's own
``edge.locate`` + ``normalise_crop`` (``training.photo_crops.camera_crop``). Seeds: the test split
uses seed 0 with the frame index of ``training.photo_eval`` (the very frames of
``docs/models/photographed.md``); TRAIN and VAL use ``EVAL_SEEDS`` (never the training crops' seeds
1000/1001). In cross-validation a frame is only ever scored by a fold that did not train on its image.

Also here: the training crops (1 or more renders per TRAIN/VAL image), the input check's negatives
(the other patient group's train files + crops, generated non-X-rays of seed 1) and the evaluation
out-of-scope sets (``training.photo_eval``'s non-X-ray frames of seed 0, the other group's test files).
Everything is stored in ``runs/`` (crops) and the shared embedding cache.
"""

import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from recipes.config import DEFAULT_DATA_ROOT, ROOT, log
from recipes.data import cache_images, normalise_inputs, raw_spec, resolve_split, targets_of
from recipes.photo_data import embedding_cache, input_batch, negatives, other_group, photo_part, stored
from recipes.stages import run_module
from training.photo_crops import camera_crop

EVAL_SEEDS = {"train": 2000, "val": 2001, "test": 0}  # test: photo_eval's seed and frame indices


@dataclass
class Part:
    """Samples (or names), uint8 device inputs [N, C, H, W] and embeddings [N, F] of one image set."""

    samples: list
    images: torch.Tensor
    embeddings: torch.Tensor = None
    targets: torch.Tensor = None


def _render_job(job):
    from training.photo_crops import render_one

    return render_one(job)[0]


def _render(jobs, workers):
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(int(workers)) as pool:
            return pool.map(_render_job, jobs, chunksize=8)
    return [_render_job(job) for job in jobs]


def eval_frames(recipe, split, spec, workers=1):
    """{part: Part} of every split image's evaluation camera crop (one render each, ``EVAL_SEEDS``);
    stored without the contrast normalisation, applied after loading (``recipes.data.raw_spec``)."""
    contrast, spec = spec.contrast, raw_spec(spec)
    parts = {}
    for part, seed in sorted(EVAL_SEEDS.items()):
        samples = list(split[part])
        name = "{}-eval-{}-s{}-{}".format(recipe.module, part, seed, spec.height)

        def make(samples=samples, seed=seed, part=part):
            log("{}: rendering {} {} images as evaluation camera frames".format(recipe.module, len(samples),
                                                                               part))
            crops = _render([(s.path, seed, i) for i, s in enumerate(samples)], workers)
            return {"paths": [s.path for s in samples], "images": input_batch(crops, spec)}

        data = stored(name, make)
        parts[part] = Part(samples, normalise_inputs(data["images"], contrast))
    return parts


def train_crops(recipe, split, spec, renders, workers=1):
    """{part: Part} of the training crops of TRAIN and VAL images (``photo_data.photo_part``)."""
    recipe = replace(recipe, photo_renders=int(renders))
    return {part: Part(*photo_part(recipe, split, part, spec, workers)) for part in ("train", "val")}


def non_xray_frames(spec, seed=0):
    """Part of ``training.photo_eval``'s non-X-ray set (seed 0: the evaluation's, never fitted on), each
    as a full frame and photographed on a lightbox, cut out as the device does (stored raw, normalised
    after loading)."""
    import cv2

    from training import photo_eval
    from training.photograph import photograph

    def make():
        names, crops = [], []
        for index, (kind, image) in enumerate(photo_eval.non_xray_images(seed)):
            full = cv2.resize(image, (1280, 720), interpolation=cv2.INTER_AREA)
            on_film = photograph(image, np.random.RandomState([seed, index]), "film").frame
            for variant, frame in (("frame", full), ("on-lightbox", on_film)):
                names.append("{}:{}".format(kind, variant))
                crops.append(camera_crop(frame)[0])
        return {"names": names, "images": input_batch(crops, spec)}

    contrast, spec = spec.contrast, raw_spec(spec)
    data = stored("non-xray-eval-s{}-{}".format(seed, spec.height), make)
    return Part(data["names"], normalise_inputs(data["images"], contrast))


def embed_parts(recipe, trunk, parts):
    """Fill each Part's embeddings through the shared cache (tail: the head-only split's identity)."""
    cache = embedding_cache(recipe)
    for name, part in parts.items():
        part.embeddings = run_module(lambda x: x, cache.embed(trunk, part.images, log=log), to_float=False)
        log("embedded {}: {}".format(name, tuple(part.embeddings.shape)))
    return parts


def load(recipe, trunk, classes, task, renders=1, data_root=DEFAULT_DATA_ROOT, workers=1):
    """{name: Part}: files, eval frames (both in files order), train crops, fit negatives, eval
    out-of-scope sets; every Part embedded."""
    _module, split, _info = resolve_split(recipe, data_root, os.path.join(ROOT, "splits"))
    spec = _spec(recipe)
    order = [s for part in ("train", "val", "test") for s in split[part]]
    files = Part(order, cache_images(order, spec))
    frames = eval_frames(recipe, split, spec, workers)
    crops = train_crops(recipe, split, spec, renders, workers)
    other_files, other_images = other_group(recipe, data_root, spec, "train")
    neg_names, neg_images = negatives(spec)
    other_test_samples, other_test = other_group(recipe, data_root, spec, "test")
    parts = {
        "files": files,
        "frames": Part(order, torch.cat([frames[p].images for p in ("train", "val", "test")])),
        "crops": Part(crops["train"].samples + crops["val"].samples,
                      torch.cat([crops["train"].images, crops["val"].images])),
        "other_train": Part(other_files, other_images),
        "negatives": Part(neg_names, neg_images),
        "other_test": Part(other_test_samples, other_test),
        "non_xray": non_xray_frames(spec),
    }
    for name in ("files", "frames", "crops"):
        parts[name].targets = targets_of(parts[name].samples, classes, task)
    return embed_parts(recipe, trunk, parts)


def _spec(recipe):
    from edge.description import InputSpec
    from training.modules import get_module

    return InputSpec(recipe.image_size, recipe.image_size, colour=get_module(recipe.module).colour,
                     contrast=recipe.contrast)

