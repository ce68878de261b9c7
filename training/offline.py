"""Offline augmentation (the seed project's tool, kept): write augmented copies of the TRAINING split.

Each class folder of the output is filled to ``per_class`` images: the originals first, then
augmented copies named after what was done to them (``IM-0001_rot12_flipH_bright1.10.png``).
Only the train split is read; validation and test images are never copied or changed. A
``augment.json`` manifest lists every written file with its source and techniques.
"""

import collections
import json
import os
import shutil

from edge.errors import ConfigError, ImageError
from edge.preprocess import load_image

# Ranges per preset; chest X-rays get no flips and no colour change.
OFFLINE_PRESETS = {
    "skin": {"rotate": 25.0, "flip_h": True, "flip_v": True, "scale": 0.12, "bright": 0.2, "contrast": 0.2,
             "saturation": 0.2},
    "chest-xray": {"rotate": 7.0, "flip_h": False, "flip_v": False, "scale": 0.07, "bright": 0.12,
                   "contrast": 0.12, "saturation": 0.0},
}


def _augment_one(image, rng, params):
    """Apply a random subset of the preset's techniques; return (image, [technique names])."""
    import cv2
    import numpy as np

    names = []
    out = image
    height, width = out.shape[:2]
    angle = float(rng.uniform(-params["rotate"], params["rotate"]))
    scale = float(1.0 + rng.uniform(-params["scale"], params["scale"]))
    if abs(angle) >= 1.0 or abs(scale - 1.0) >= 0.01:
        matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, scale)
        out = cv2.warpAffine(out, matrix, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        if abs(angle) >= 1.0:
            names.append("rot{}".format(int(round(angle))))
        if abs(scale - 1.0) >= 0.01:
            names.append("scale{:.2f}".format(scale))
    if params["flip_h"] and rng.random() < 0.5:
        out = cv2.flip(out, 1)
        names.append("flipH")
    if params["flip_v"] and rng.random() < 0.5:
        out = cv2.flip(out, 0)
        names.append("flipV")
    pixels = out.astype(np.float32)
    bright = float(1.0 + rng.uniform(-params["bright"], params["bright"]))
    if abs(bright - 1.0) >= 0.01:
        pixels *= bright
        names.append("bright{:.2f}".format(bright))
    contrast = float(1.0 + rng.uniform(-params["contrast"], params["contrast"]))
    if abs(contrast - 1.0) >= 0.01:
        mean = pixels.mean()
        pixels = (pixels - mean) * contrast + mean
        names.append("contrast{:.2f}".format(contrast))
    if params["saturation"] > 0 and pixels.ndim == 3 and pixels.shape[2] == 3:
        saturation = float(1.0 + rng.uniform(-params["saturation"], params["saturation"]))
        if abs(saturation - 1.0) >= 0.01:
            grey = pixels.mean(axis=2, keepdims=True)
            pixels = (pixels - grey) * saturation + grey
            names.append("sat{:.2f}".format(saturation))
    if not names:  # every draw was a no-op: force a visible change so the copy is not a duplicate
        pixels = pixels[:, ::-1] if params["flip_h"] else pixels * 1.05
        names.append("flipH" if params["flip_h"] else "bright1.05")
    return np.clip(pixels, 0, 255).astype(np.uint8), names


def augment_split(split, out_dir, per_class, preset, seed=0):
    """Fill ``out_dir/<class>/`` with the train split's images plus augmented copies up to ``per_class``.

    Returns a report: written, per class (originals, augmented), skipped multi-label images and
    unreadable images (counted; the command fails if any image cannot be read).
    """
    import cv2
    import numpy as np

    if preset not in OFFLINE_PRESETS:
        raise ConfigError("offline augmentation preset must be one of {}, got {!r}".format(
            sorted(OFFLINE_PRESETS), preset))
    if int(per_class) < 1:
        raise ConfigError("--per-class must be >= 1, got {}".format(per_class))
    params = OFFLINE_PRESETS[preset]
    by_class = collections.defaultdict(list)
    skipped_multilabel = 0
    for sample in split.train:
        if len(sample.labels) != 1:
            skipped_multilabel += 1
            continue
        by_class[sample.labels[0]].append(sample)
    if not by_class:
        raise ConfigError("the split's train part has no single-label images to augment")
    os.makedirs(str(out_dir), exist_ok=True)
    files = []
    per_class_report = {}
    failures = []
    for class_index, cls in enumerate(sorted(by_class)):
        folder = os.path.join(str(out_dir), cls)
        os.makedirs(folder, exist_ok=True)
        used = set()
        originals = sorted(by_class[cls], key=lambda s: s.path)
        for sample in originals:
            name = os.path.basename(sample.path)
            used.add(name)
            shutil.copyfile(sample.path, os.path.join(folder, name))
            files.append({"file": "{}/{}".format(cls, name), "source": sample.path, "techniques": []})
        rng = np.random.default_rng([int(seed), class_index])
        needed = max(0, int(per_class) - len(originals))
        pool = list(originals)
        made = 0
        while made < needed and pool:
            sample = pool[made % len(pool)]
            try:
                image = load_image(sample.path)
            except ImageError as exc:
                failures.append(str(exc))
                pool.remove(sample)
                continue
            augmented, techniques = _augment_one(image, rng, params)
            stem = os.path.splitext(os.path.basename(sample.path))[0]
            name = "{}_{}.png".format(stem, "_".join(techniques))
            copy = 2
            while name in used:
                name = "{}_{}_{}.png".format(stem, "_".join(techniques), copy)
                copy += 1
            used.add(name)
            target = os.path.join(folder, name)
            if not cv2.imwrite(target, augmented):
                raise ConfigError("cannot write {}: check the folder is writable".format(target))
            files.append({"file": "{}/{}".format(cls, name), "source": sample.path, "techniques": techniques})
            made += 1
        per_class_report[cls] = {"originals": len(originals), "augmented": made,
                                 "total": len(originals) + made}
    if failures:
        raise ImageError("{} training image(s) could not be read: {}. Fix: repair or remove them and make "
                         "the split again".format(len(failures), "; ".join(failures[:5])))
    manifest = os.path.join(str(out_dir), "augment.json")
    report = {"preset": preset, "seed": int(seed), "per_class_target": int(per_class), "split": split.path,
              "per_class": per_class_report, "written": len(files),
              "skipped_multilabel": skipped_multilabel, "manifest": manifest, "files": files}
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, sort_keys=True)
    return report
