"""A proxy for a shifted test set (issue 13), reported and never tuned on: the child module's CV folds
re-scored with their images degraded by an acquisition shift the recipe never trains on, at the
operating point chosen on the clean folds (``recipes.operating_point``).

The family (``exposure``): gamma 0.6 or 1.6 (alternating), the grey levels' contrast around their mean
scaled by 0.7, and the resolution cut to a third and back. The recipe's training crops are photographs
(perspective, light, glare, moiré, blur, noise, JPEG: ``training.photograph``), never re-exposed films.

``python -m recipes.shift_proxy [--every 3] [--json OUT]`` prints one line: the JSON summary.
"""

import argparse
import json
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import torch

from edge.cliutil import run_guarded
from edge.errors import ConfigError
from edge.preprocess import load_image, preprocess
from recipes.config import DEFAULT_DATA_ROOT, ROOT, log, recipe_for
from recipes.cv import mean_ci
from recipes.warm_cache import onnx_trunk
from training.metrics import binary_auroc

GAMMAS = (0.6, 1.6)
CONTRAST = 0.7
RESOLUTION = 3


def exposure(image, index):
    """``image`` (uint8) re-exposed: gamma, contrast around the mean, a third of the resolution."""
    import cv2

    gamma = GAMMAS[index % len(GAMMAS)]
    out = 255.0 * (image.astype(np.float64) / 255.0) ** gamma
    out = out.mean() + CONTRAST * (out - out.mean())
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    height, width = out.shape[:2]
    small = cv2.resize(out, (max(1, width // RESOLUTION), max(1, height // RESOLUTION)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def degraded_inputs(samples, spec):
    """uint8 inputs [N, C, H, W] of ``samples`` after ``exposure``."""
    batch = np.empty(spec.shape(len(samples)), dtype=np.uint8)
    for index, sample in enumerate(samples):
        batch[index] = preprocess(exposure(load_image(sample.path), index), spec)[0].astype(np.uint8)
    return torch.from_numpy(batch)


def fold_rates(probs, targets, fold, threshold, positive):
    from recipes.operating_point import rates

    rows = []
    for f in sorted(set(fold.tolist())):
        mine = fold == f
        sens, spec = rates(probs[mine, positive], targets[mine] == positive, threshold)
        accuracy = float(((probs[mine, positive] >= threshold) == (targets[mine] == positive)).mean())
        rows.append({"sensitivity": sens, "specificity": spec, "accuracy": accuracy,
                     "auroc": binary_auroc(targets[mine] == positive, probs[mine, positive])})
    return {key: dict(zip(("mean", "ci95"), mean_ci([r[key] for r in rows])), folds=[r[key] for r in rows])
            for key in rows[0]}


def frozen_setup(threads, module_id="pediatric-pneumonia"):
    """What the CV proxies share: the module's recipe, split, classes, input spec, the pretrained network and
    its frozen trunk, the embedding cache, every file and the stored train/val photographed crops."""
    from recipes import photo_data
    from recipes.data import resolve_split
    from recipes.run import build_description
    from training.checkpoint import build_net
    from training.registry import split_network

    torch.set_num_threads(threads)
    recipe = recipe_for(module_id)
    torch.manual_seed(recipe.seed)  # the same untrained head as the recipe's (recipes.run.train_recipe)
    module, split, _info = resolve_split(recipe, DEFAULT_DATA_ROOT, ROOT + "/splits")
    description = build_description(recipe, module)
    net = build_net(description, pretrained=True).eval()
    trunk, _tail = split_network(net, recipe.arch, 0)
    spec = description.input
    return SimpleNamespace(
        recipe=recipe, split=split, classes=list(module.classes), spec=spec, net=net, trunk=trunk,
        cache=photo_data.embedding_cache(recipe), files=split.train + split.val + split.test,
        photo=[photo_data.photo_part(recipe, split, part, spec) for part in ("train", "val")])


def measure(every=3, threads=2):
    """{"clean": ..., "degraded": ..., "threshold", "images"}: the same fold models and threshold on every
    ``every``-th file as stored and as re-exposed."""
    from recipes import operating_point
    from recipes.data import cache_images, targets_of

    setup = frozen_setup(threads)
    recipe, classes, spec, net, cache = setup.recipe, setup.classes, setup.spec, setup.net, setup.cache
    files, photo = setup.files, setup.photo
    trunk = setup.trunk
    photo_samples = photo[0][0] + photo[1][0]
    with tempfile.TemporaryDirectory() as folder:
        forward = onnx_trunk(trunk, spec, folder)  # what the cache misses: ONNX Runtime (recipes.warm_cache)
        embed = cache.embed(forward, cache_images(files, spec), log=log)
        photo_embed = cache.embed(forward, torch.cat([photo[0][1], photo[1][1]]), log=log)
        chosen = files[::every]
        degraded = cache.embed(forward, degraded_inputs(chosen, spec), log=log)
    head = net.backbone.head
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    probs, targets, fold, also = operating_point.out_of_fold(
        recipe, head, initial, (files, embed, targets_of(files, classes, "multiclass")),
        (photo_samples, photo_embed, targets_of(photo_samples, classes, "multiclass")), classes, "multiclass",
        also=(chosen, degraded))
    name, specificity = recipe.operating_point
    positive = classes.index(name)
    threshold = operating_point.threshold_for(probs[:, positive], targets == positive, specificity)
    pick = np.arange(0, len(files), every)
    return {"family": "exposure: gamma {} alternating, contrast x{}, resolution 1/{}".format(
                GAMMAS, CONTRAST, RESOLUTION),
            "threshold": threshold, "images": len(chosen), "every": every,
            "clean": fold_rates(probs[pick], targets[pick], fold[pick], threshold, positive),
            "degraded": fold_rates(also, targets[pick], fold[pick], threshold, positive)}


def main(argv=None):
    """Measure the proxy; prints one line (the JSON summary) or the error."""
    parser = argparse.ArgumentParser(prog="python -m recipes.shift_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=3, help="every n-th file of the module (CPU budget)")
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return run_guarded(lambda: print_summary(
        measure(at_least_one("--every", args.every), at_least_one("--threads", args.threads)), args.json))


def at_least_one(option, value):
    """A command-line count checked before any work starts: ConfigError naming the fix below 1."""
    if value < 1:
        raise ConfigError("{} {} is not a count. Fix: pass {} 1 or more".format(option, value, option))
    return value


def print_summary(result, path=None):
    """Print ``result`` as one JSON line; also write it (indented) to ``path`` when given."""
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
