"""The recipe steps of a tail-fine-tuning recipe (``tune_blocks`` 1-4 on EfficientNet-Lite0; issue 13):
the trunk's outputs from the shared feature-map cache (``recipes.tail_data``: ONNX Runtime, once per
input) instead of a PyTorch pass per run, the optional chest pretraining of the tail on the paediatric
TRAIN/VAL files (``tail_pretrain``), and the recipe's cross-validation, which for such a recipe must
re-tune the tail in every fold (``recipes.tail_cv``): a head cross-validated on embeddings of a tail
tuned on the whole train split would have seen the test folds' train images."""

import os
import tempfile

from recipes.config import ROOT, log
from recipes.tail_cv import BLOCKS, Variant, prefix, pretrain_pediatric, run_variant
from recipes.tail_data import CUT

PRETRAINING = ("", "pediatric")
STORED = os.path.join(ROOT, "runs", "tail-cv-adult")  # recipes.tail_cli's default --out
PRETRAINED = os.path.join(STORED, "pretrained-tail.pt")  # its paediatric-pretrained tail (contrast none)


def pretrained_store(recipe):
    """Where the recipe's paediatric-pretrained tail is kept: one file per input normalisation (as
    ``recipes.tail_cli`` names them)."""
    if recipe.contrast == "none":
        return PRETRAINED
    return os.path.join(STORED, "pretrained-tail-contrast-{}.pt".format(recipe.contrast))


def applies(recipe):
    """True for a recipe whose tuned blocks all run on the cached maps (Lite0, 1 <= tune_blocks <= 4)."""
    return recipe.arch == "efficientnet_lite0" and 0 < recipe.tune_blocks <= BLOCKS - CUT


def variant_of(recipe):
    """The ``recipes.tail_cv.Variant`` this recipe is (same blocks, same pretraining)."""
    return Variant(tune_blocks=recipe.tune_blocks, pretrain=recipe.tail_pretrain,
                   keep_last=recipe.tune_keep_last)


def trunk_outputs(recipe, net, images, spec):
    """{part: the maps the tail starts from} of every part's uint8 inputs, through the shared cache."""
    from recipes.tail_data import feature_cache, onnx_forward, trunk_of

    cache = feature_cache(recipe)
    start = BLOCKS - recipe.tune_blocks
    with tempfile.TemporaryDirectory() as folder:
        forward = onnx_forward(trunk_of(net, recipe.arch), spec, folder)
        return {name: prefix(net, cache.embed(forward, x, log=log), start) for name, x in images.items()}


def pretrain(recipe, net, description, data_root):
    """Load the paediatric-pretrained tail into ``net`` when the recipe asks; returns its seconds or None."""
    if not recipe.tail_pretrain:
        return None
    from recipes import tail_data

    data = tail_data.load(description, ("pediatric",), data_root)
    data.recipe = recipe
    body, seconds = pretrain_pediatric(data, recipe, recipe.tune_blocks, store=pretrained_store(recipe))
    net.backbone.body.load_state_dict(body)
    return seconds


def stored_result(recipe, folder=STORED):
    """The ``recipes.tail_cli`` record of this very recipe (same variant, stage settings, folds, seed) in
    ``folder``, or None: the CV is deterministic, so the recipe reads it instead of repeating it."""
    from dataclasses import asdict

    from recipes.tail_report import load_dir, recipe_fields

    if not os.path.isdir(folder):
        return None
    wanted = recipe_fields(recipe)
    for record in load_dir(folder).values():
        if record["settings"] == asdict(variant_of(recipe)) and record["recipe"] == wanted:
            return record
    return None


def cross_validate(recipe, description, data_root, folder=STORED):
    """The recipe's k-fold CV by patient with the tail re-tuned per fold, in ``recipes.cv.cross_validate``'s
    format (``run.metrics["cv"]["shipped_recipe"]``); a stored ``tail_cli`` run of the same recipe is read."""
    from recipes import tail_data

    sets = ("chest", "crops") + (("pediatric",) if recipe.tail_pretrain else ())
    data = tail_data.load(description, sets, data_root)
    files = data.sets["chest"][0]
    record = stored_result(recipe, folder)
    if record is not None and record["paths"] == [s.path for s in files]:
        log("cross-validation of this recipe read from {} ({})".format(folder, record["variant"]))
        summary, per_fold, seconds = record["summary"], record["fold_macro_auroc"], record["seconds"]
    else:
        data.recipe = recipe
        body = None
        if recipe.tail_pretrain:
            body = pretrain_pediatric(data, recipe, recipe.tune_blocks, store=pretrained_store(recipe))[0]
        result = run_variant(data, variant_of(recipe), list(description.classes), body)
        summary, per_fold, seconds = result["summary"], result["fold_macro_auroc"], result["seconds"]
    return {"summary": summary, "k": recipe.cv_folds, "with_photos": True,
            "patients": len({s.patient_id for s in files}), "images": len(files),
            "folds": [{"macro_auroc": v} for v in per_fold], "seconds": seconds}
