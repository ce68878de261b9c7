"""Issue 13 item 3, tried on CV for the child module: does train-time intensity augmentation (offline renders
of train/val files: gamma, contrast, blur, resolution) make the head hold up under an acquisition shift?

Both variants use the same folds and the recipe's operating point rule (threshold for the CV specificity
target on the out-of-fold scores): (a) the shipped recipe (files + photographed crops), (b) the same plus
one intensity render of every ``every``-th file, joined to its patient's folds (never to the test fold's
scoring). Each is scored as stored and on a proxy family NEITHER trains on (``processing``: local
histogram equalisation (CLAHE) and unsharp masking, as another X-ray unit's post-processing might look).

``python -m recipes.intensity_trial [--every 2] [--json OUT]`` prints one line (the JSON summary).
"""

import argparse
import sys
import tempfile

import numpy as np
import torch

from edge.cliutil import run_guarded
from edge.preprocess import load_image, preprocess
from recipes.config import log
from recipes.shift_proxy import at_least_one, fold_rates, frozen_setup, print_summary
from recipes.warm_cache import onnx_trunk

AUGMENT_SEED = 3000


def intensity(image, rng):
    """A random re-exposure of ``image``: gamma 0.7-1.4, contrast x0.75-1.25, blur sigma 0-1.2, half
    resolution half of the time."""
    import cv2

    out = 255.0 * (image.astype(np.float64) / 255.0) ** rng.uniform(0.7, 1.4)
    out = out.mean() + rng.uniform(0.75, 1.25) * (out - out.mean())
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.uniform() < 0.5:
        height, width = out.shape[:2]
        small = cv2.resize(out, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def processing(image, _index=0):
    """The proxy family: CLAHE (clip 3, 8x8 tiles) on the grey levels, then an unsharp mask (amount 1)."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    grey = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(grey)
    blurred = cv2.GaussianBlur(grey, (0, 0), 2.0)
    sharp = cv2.addWeighted(grey, 2.0, blurred, -1.0, 0)
    return cv2.cvtColor(sharp, cv2.COLOR_GRAY2BGR)


def rendered(samples, spec, transform):
    """uint8 inputs [N, C, H, W] of ``transform(image, index)`` of each sample."""
    batch = np.empty(spec.shape(len(samples)), dtype=np.uint8)
    for index, sample in enumerate(samples):
        batch[index] = preprocess(transform(load_image(sample.path), index), spec)[0].astype(np.uint8)
    return torch.from_numpy(batch)


def _variant(recipe, net, data, extra, proxy, positive):
    """OOF scores of one variant -> threshold and rates as stored and on the proxy."""
    from recipes import operating_point

    files, photos, classes, chosen = data
    if extra is not None:
        photos = (photos[0] + extra[0], torch.cat([photos[1], extra[1]]), torch.cat([photos[2], extra[2]]))
    torch.manual_seed(recipe.seed)
    head = net.backbone.head
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    probs, targets, fold, also = operating_point.out_of_fold(recipe, head, initial, files, photos, classes,
                                                             "multiclass", also=proxy)
    target = recipe.operating_point[1]
    threshold = operating_point.threshold_for(probs[:, positive], targets == positive, target)
    pick = np.array(chosen)
    return {"threshold": threshold, "clean": fold_rates(probs, targets, fold, threshold, positive),
            "processing": fold_rates(also, targets[pick], fold[pick], threshold, positive)}


def measure(every=2, proxy_every=3, threads=1):
    """{"shipped": ..., "intensity": ...}: both variants on the same folds, as stored and processed."""
    from recipes.data import cache_images, targets_of

    setup = frozen_setup(threads)
    recipe, split, classes, spec, net = setup.recipe, setup.split, setup.classes, setup.spec, setup.net
    trunk, cache, files, photo = setup.trunk, setup.cache, setup.files, setup.photo
    augmented = (split.train + split.val)[::every]
    chosen = list(range(0, len(files), proxy_every))
    rng = np.random.RandomState(AUGMENT_SEED)
    with tempfile.TemporaryDirectory() as folder:
        forward = onnx_trunk(trunk, spec, folder)
        embed = cache.embed(forward, cache_images(files, spec), log=log)
        photo_embed = cache.embed(forward, torch.cat([photo[0][1], photo[1][1]]), log=log)
        extra_embed = cache.embed(forward, rendered(augmented, spec, lambda image, i: intensity(image, rng)),
                                  log=log)
        proxy_embed = cache.embed(forward, rendered([files[i] for i in chosen], spec, processing), log=log)
    photo_samples = photo[0][0] + photo[1][0]
    data = ((files, embed, targets_of(files, classes, "multiclass")),
            (photo_samples, photo_embed, targets_of(photo_samples, classes, "multiclass")), classes, chosen)
    extra = (augmented, extra_embed, targets_of(augmented, classes, "multiclass"))
    proxy = ([files[i] for i in chosen], proxy_embed)
    positive = classes.index(recipe.operating_point[0])
    return {"augmented_images": len(augmented), "proxy_images": len(chosen), "seed": AUGMENT_SEED,
            "shipped": _variant(recipe, net, data, None, proxy, positive),
            "intensity": _variant(recipe, net, data, extra, proxy, positive)}


def main(argv=None):
    """Run the trial; prints one line (the JSON summary) or the error."""
    parser = argparse.ArgumentParser(prog="python -m recipes.intensity_trial",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=2, help="augment every n-th train/val file")
    parser.add_argument("--proxy-every", type=int, default=3, help="score every n-th file processed")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args(argv)
    return run_guarded(lambda: print_summary(
        measure(at_least_one("--every", args.every), at_least_one("--proxy-every", args.proxy_every)),
        args.json))


if __name__ == "__main__":
    sys.exit(main())
