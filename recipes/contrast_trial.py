"""Issue 13, tried on CV for the child module: does a per-image contrast normalisation of every input
(``edge.preprocess.CONTRAST_MODES``, declared as the description's ``input.contrast``) make the head hold
up under an acquisition shift?

Every candidate uses the same folds, the recipe's head, its photographed crops and its operating point rule
(threshold for the CV specificity target on the out-of-fold scores: ``recipes.operating_point``). Each is
scored on the clean files and on both shift proxies, reported and never tuned on: ``exposure``
(``recipes.shift_proxy``) and ``processing`` (CLAHE + unsharp, ``recipes.intensity_trial``). A proxy's
degradation is applied to the stored image BEFORE the preprocessing (resize, then the normalisation), as a
unit's own processing would be. Also per candidate: the generated non-X-rays' (``photo_data.negatives``)
grey-level spread after the normalisation, against the input check's contrast term (``contrast_fraction``
of the lowest validation X-ray's): a blank frame must stay blank.

``python -m recipes.contrast_trial [--modes none,equalize,...] [--proxy-every 3] [--json OUT]`` prints one
line (the JSON summary).
"""

import argparse
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from edge.cliutil import run_guarded
from edge.description import CONTRAST_MODES
from edge.errors import ConfigError
from recipes import contrast_chest
from recipes.config import log
from recipes.data import cache_images, normalise_inputs, targets_of
from recipes.intensity_trial import processing, rendered
from recipes.shift_proxy import exposure, fold_rates, frozen_setup, print_summary
from recipes.warm_cache import onnx_trunk

PROXIES = {"exposure": exposure, "processing": processing}


def _spread(images):
    """Grey-level standard deviation of each uint8 input [N, C, H, W] (the input check's contrast term)."""
    grey = images.float().mean(dim=1)
    return (grey - grey.mean(dim=(1, 2), keepdim=True)).pow(2).mean(dim=(1, 2)).sqrt()


def blank_check(recipe, negatives, val_files, mode):
    """Generated non-X-rays whose normalised grey spread is below the contrast term's threshold."""
    names, images = negatives
    threshold = recipe.contrast_fraction * float(_spread(normalise_inputs(val_files, mode)).min())
    spread = _spread(normalise_inputs(images, mode))
    low = [name for name, s in zip(names, spread.tolist()) if s < threshold]
    return {"threshold": threshold, "negatives": len(names), "refused_by_contrast": len(low),
            "names": sorted(low)}


def _embedded(setup, raw, mode, forward):
    """(recipe with ``mode``, {part: embeddings of its normalised inputs}, seconds)."""
    from recipes import photo_data

    recipe = replace(setup.recipe, contrast=mode)
    cache = photo_data.embedding_cache(recipe)
    started = time.time()
    embed = {name: cache.embed(forward, normalise_inputs(images, mode), log=log)
             for name, images in raw.items() if name not in ("negatives", "val_files")}
    return recipe, embed, round(time.time() - started, 1)


def _out_of_fold(setup, recipe, embed, proxies):
    """``operating_point.out_of_fold`` of the files, also scoring each proxy's renders of the chosen files."""
    from recipes import operating_point

    files, classes, photos = setup.files, setup.classes, setup.photo_samples
    chosen = [files[i] for i in setup.chosen]
    also = (chosen * len(proxies), torch.cat([embed[name] for name in proxies]))
    torch.manual_seed(recipe.seed)
    head = setup.net.backbone.head
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    return operating_point.out_of_fold(
        recipe, head, initial, (files, embed["files"], targets_of(files, classes, "multiclass")),
        (photos, embed["photo"], targets_of(photos, classes, "multiclass")), classes, "multiclass", also=also)


def candidate(setup, raw, mode, forward):
    """One normalisation of a module with an operating point (the child's): its record."""
    from recipes import operating_point
    from recipes.card_cv import PREVALENCE_MIXES

    recipe, embed, seconds = _embedded(setup, raw, mode, forward)
    classes = setup.classes
    probs, targets, fold, also_probs = _out_of_fold(setup, recipe, embed, PROXIES)
    name, specificity = recipe.operating_point
    positive = classes.index(name)
    mixes = PREVALENCE_MIXES.get(recipe.module, (None, ()))[1]
    summary = operating_point.summarise(probs, targets, fold, positive, specificity, mixes)
    threshold = summary["threshold"]
    pick, count = np.array(setup.chosen), len(setup.chosen)
    record = {"mode": mode, "embed_seconds": seconds, "operating_point": summary,
              "clean": fold_rates(probs, targets, fold, threshold, positive),
              "blank": blank_check(recipe, raw["negatives"], raw["val_files"], mode)}
    for index, proxy in enumerate(PROXIES):
        part = also_probs[index * count:(index + 1) * count]
        record[proxy] = fold_rates(part, targets[pick], fold[pick], threshold, positive)
    return record


def auroc_candidate(setup, raw, mode, forward):
    """One normalisation of a module judged by AUROC (the adult ``chest``): its record
    (``recipes.contrast_chest``)."""
    recipe, embed, seconds = _embedded(setup, raw, mode, forward)
    oof = _out_of_fold(setup, recipe, embed, contrast_chest.PROXIES)
    record = {"mode": mode, "embed_seconds": seconds}
    record.update(contrast_chest.score(oof, setup.files, np.array(setup.chosen), setup.classes))
    record["blank"] = blank_check(recipe, raw["negatives"], raw["val_files"], mode)
    return record


def _no_comparison(rows, _samples, _classes):
    return rows


# module -> (its proxies, one candidate's record, the rows' comparison): the child by its operating point
# (output unchanged since the child's trial), the adult by AUROC and the DICOM-stretch change.
TRIALS = {
    "pediatric-pneumonia": (PROXIES, candidate, _no_comparison),
    "chest": (contrast_chest.PROXIES, auroc_candidate, contrast_chest.compare),
}


def raw_inputs(setup, proxy_every, proxies=PROXIES):
    """{part: uint8 inputs without normalisation}: files, crops, each proxy's renders, negatives."""
    from recipes import photo_data

    spec, files = setup.spec, setup.files
    setup.chosen = list(range(0, len(files), proxy_every))
    chosen = [files[i] for i in setup.chosen]
    setup.photo_samples = setup.photo[0][0] + setup.photo[1][0]
    raw = {"files": cache_images(files, spec), "photo": torch.cat([setup.photo[0][1], setup.photo[1][1]])}
    for name, degrade in proxies.items():
        raw[name] = rendered(chosen, spec, degrade)
    raw["negatives"] = photo_data.negatives(spec)
    val = [files.index(s) for s in setup.split.val]
    raw["val_files"] = raw["files"][val]
    return raw


def measure(modes, proxy_every=3, threads=1, module="pediatric-pneumonia"):
    """{"candidates": [...]} on the same folds, the same proxies' images and the same untrained head."""
    proxies, scorer, comparison = trial_for(module)
    setup = frozen_setup(threads, module)
    raw = raw_inputs(setup, proxy_every, proxies)
    log("inputs ready: {}".format({k: len(v) for k, v in raw.items() if k != "negatives"}))
    with tempfile.TemporaryDirectory() as folder:
        forward = onnx_trunk(setup.trunk, setup.spec, folder)
        rows = [scorer(setup, raw, mode, forward) for mode in modes]
    result = {"proxy_images": len(setup.chosen), "proxy_every": proxy_every, "files": len(setup.files),
              "crops": len(setup.photo_samples),
              "candidates": comparison(rows, setup.files, setup.classes)}
    if module != "pediatric-pneumonia":  # the child's summary keeps its fields (its contrast-trial.json)
        result["module"] = module
    return result


def trial_for(module):
    """``TRIALS[module]``; ConfigError naming the modules the trial knows."""
    if module not in TRIALS:
        raise ConfigError("the contrast trial has no scoring for module {!r}. Fix: use one of {}".format(
            module, sorted(TRIALS)))
    return TRIALS[module]


def trial_parser(prog, description, modes):
    """The trial CLIs' shared options: ``--modes`` (default ``modes``), ``--proxy-every``, ``--threads``,
    ``--json``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--modes", default=",".join(modes), help="comma-separated candidates")
    parser.add_argument("--proxy-every", type=int, default=3, help="score every n-th file degraded")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the summary here")
    return parser


def main(argv=None):
    """Run the comparison; prints one line (the JSON summary) or the error."""
    parser = trial_parser("python -m recipes.contrast_trial", __doc__.split("\n")[0], CONTRAST_MODES)
    parser.add_argument("--module", default="pediatric-pneumonia", help="one of {}".format(sorted(TRIALS)))
    args = parser.parse_args(argv)
    return run_guarded(lambda: print_summary(
        measure(checked_modes(args.modes), args.proxy_every, args.threads, args.module), args.json))


def checked_modes(text):
    """``text`` (comma-separated) -> the modes; ConfigError naming the choices for an unknown one."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in CONTRAST_MODES]
    if unknown or not modes:
        raise ConfigError("unknown contrast mode(s) {}. Fix: use some of {}".format(
            unknown, list(CONTRAST_MODES)))
    return modes


if __name__ == "__main__":
    sys.exit(main())
