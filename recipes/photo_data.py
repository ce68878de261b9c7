"""The recipe's extra images: photographed crops of the TRAIN/VAL split (``training.photo_crops``), the
other patient group's X-rays and generated non-X-rays (negatives of the input check), and the frozen
network's embeddings of all of them through the shared, content-addressed ``EmbeddingCache``.

Rendered crops are kept as uint8 input tensors in ``runs/photo-crops/`` (rendering costs more than
the network), named by module, part, renders, seed and limit, so the two recipes share them.
"""

import csv
import os

import numpy as np
import torch

from edge.preprocess import preprocess
from recipes.config import ROOT, log, recipe_for
from recipes.data import cache_images, normalise_inputs, raw_spec, resolve_split
from training.data import Sample, strided
from training.embed_cache import EmbeddingCache, cache_dir
from training.photo_crops import PHOTO_SEED, negative_images, render_crops

RUNS = os.path.join(ROOT, "runs")
CROPS_DIR = os.path.join(RUNS, "photo-crops")
EMBED_DIR = os.path.join(RUNS, "embed-cache")
ADULT_AGE = 18


def embedding_cache(recipe):
    """The shared cache of the recipe's frozen network, for its inputs' contrast normalisation."""
    return EmbeddingCache(cache_dir(EMBED_DIR, recipe.arch, recipe.image_size, contrast=recipe.contrast))


def stored(name, make):
    """uint8 tensor stored as ``CROPS_DIR/name.pt`` (made once by ``make``) and its extra data."""
    path = os.path.join(CROPS_DIR, name + ".pt")
    if os.path.isfile(path):
        return torch.load(path)
    data = make()
    os.makedirs(CROPS_DIR, exist_ok=True)
    torch.save(data, path + ".tmp")
    os.replace(path + ".tmp", path)
    return data


def input_batch(images, spec):
    batch = np.empty(spec.shape(len(images)), dtype=np.uint8)
    for index, image in enumerate(images):
        batch[index] = preprocess(image, spec)[0].astype(np.uint8)
    return torch.from_numpy(batch)


def photo_limit(recipe, part):
    """Source images rendered per part: ``photo_limit`` for train, a quarter of it for val."""
    if not recipe.photo_limit:
        return None
    return recipe.photo_limit if part == "train" else max(1, recipe.photo_limit // 4)


def train_subset(recipe, split):
    """At most ``recipe.train_limit`` train files (CPU budget): the rendered ones (``photo_limit``,
    strided) plus a strided share of the rest, in the split's order."""
    rendered = strided(split.train, photo_limit(recipe, "train"))
    seen = set(rendered)
    rest = [s for s in split.train if s not in seen]
    keep = seen | set(strided(rest, max(0, recipe.train_limit - len(rendered))))
    return [s for s in split.train if s in keep]


def photo_renders(recipe, part):
    """Crops per source image of ``part``: ``val_photo_renders`` for val when set, else ``photo_renders``."""
    if part == "val" and recipe.val_photo_renders:
        return recipe.val_photo_renders
    return recipe.photo_renders


def photo_part(recipe, split, part, spec, workers=1):
    """(samples, uint8 inputs [N, C, H, W]) of the photographed crops of ``part`` (train or val):
    ``recipe.photo_renders`` sets of one crop per image; set ``k`` uses seed ``PHOTO_SEED + 100 k``
    and is stored apart, so set 0 is exactly the 1-render recipe's crops whatever the renders.
    Validation with ``val_photo_renders`` renders that many crops per image in one pass instead
    (the child module's input-check threshold rule; its shipped crops). Stored without the contrast
    normalisation (``raw_spec``), which is applied after loading."""
    contrast, spec = spec.contrast, raw_spec(spec)
    limit = photo_limit(recipe, part)
    by_path = {s.path: s for s in split[part]}
    if part == "val" and recipe.val_photo_renders:
        samples, images = _rendered_together(recipe, split, part, spec, limit, by_path, workers)
        return samples, normalise_inputs(images, contrast)
    samples, images = [], []
    for k in range(int(recipe.photo_renders)):
        name = "{}-{}-r1-s{}-l{}-{}{}".format(recipe.module, part, PHOTO_SEED, limit or "all", spec.height,
                                               "-extra{}".format(k) if k else "")

        def make(k=k):
            log("{}: rendering crop set {} of {} {} images".format(
                recipe.module, k, len(strided(split[part], limit)), part))
            kept, crops, methods = render_crops(split[part], part, 1, seed=PHOTO_SEED + 100 * k, limit=limit,
                                                workers=workers)
            return {"paths": [s.path for s in kept], "images": input_batch(crops, spec), "methods": methods}

        data = stored(name, make)
        samples += [by_path[p] for p in data["paths"]]
        images.append(data["images"])
    return samples, normalise_inputs(torch.cat(images), contrast)


def _rendered_together(recipe, split, part, spec, limit, by_path, workers):
    """``photo_renders(recipe, part)`` crops per image from one seeded pass, stored under their count."""
    renders = photo_renders(recipe, part)
    name = "{}-{}-r{}-s{}-l{}-{}".format(recipe.module, part, renders, PHOTO_SEED, limit or "all",
                                         spec.height)

    def make():
        log("{}: rendering {} crop(s) of {} {} images".format(recipe.module, renders,
                                                             len(strided(split[part], limit)), part))
        samples, crops, methods = render_crops(split[part], part, renders, limit=limit, workers=workers)
        return {"paths": [s.path for s in samples], "images": input_batch(crops, spec), "methods": methods}

    data = stored(name, make)
    return [by_path[p] for p in data["paths"]], data["images"]


def negatives(spec, seed=1):
    """(names, uint8 inputs) of generated non-X-rays as the device analyses them (seed != evaluation's);
    stored without the contrast normalisation, applied after loading."""
    raw = raw_spec(spec)
    data = stored("negatives-s{}-{}".format(seed, raw.height), lambda: dict(zip(
        ("names", "images"), _unzip_images(negative_images(seed), raw))))
    return data["names"], normalise_inputs(data["images"], spec.contrast)


def _unzip_images(pairs, spec):
    return [name for name, _image in pairs], input_batch([image for _name, image in pairs], spec)


def nih_adults(data_root, split, part):
    """Every NIH image (any finding) of an adult (>= 18) of the chest split's ``part`` patients (train:
    also the patients none of whose images the module kept); children are never "adult" negatives."""
    others = {s.patient_id for name, samples in split.parts() if name != part for s in samples}
    mine = {s.patient_id for s in split[part]}
    folder = os.path.join(data_root, "chest-nih")
    samples = []
    with open(os.path.join(folder, "labels.csv"), encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            patient = row["patient_id"]
            wanted = patient in mine or (part == "train" and patient not in others)
            if wanted and int(row["age"]) >= ADULT_AGE:
                samples.append(Sample(os.path.join(folder, "images", row["image"]), ("adult",), patient))
    return samples


def other_group(recipe, data_root, spec, part, limit=None):
    """The other patient group's X-rays of ``part`` as uint8 inputs (train: files + photographed crops).
    ``limit`` (tiny runs): at most that many files, no crops."""
    other = recipe_for(recipe.other_group)
    _module, split, _info = resolve_split(other, data_root, os.path.join(ROOT, "splits"))
    if other.module == "chest":
        files = nih_adults(data_root, split, part)
    else:
        files = strided(split[part], recipe.other_limit if part == "train" else None)
    if limit:
        files = strided(files, limit)
    images = cache_images(files, spec)
    if part != "train" or not other.photo_renders or limit:
        return files, images
    photo_samples, crops = photo_part(other, split, "train", spec)
    keep = set(s.path for s in files)
    index = [i for i, s in enumerate(photo_samples) if s.path in keep]
    return files + [photo_samples[i] for i in index], torch.cat([images, crops[index]])

