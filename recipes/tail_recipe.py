"""The recipe steps of a tail-fine-tuning recipe (``tune_blocks`` 1-4 on EfficientNet-Lite0; issue 13):
the trunk's outputs from the shared feature-map cache (``recipes.tail_data``: ONNX Runtime, once per
input) instead of a PyTorch pass per run, the optional chest pretraining of the tail on the paediatric
TRAIN/VAL files (``tail_pretrain``), and the recipe's cross-validation, which for such a recipe must
re-tune the tail in every fold (``recipes.tail_cv``): a head cross-validated on embeddings of a tail
tuned on the whole train split would have seen the test folds' train images."""

import os
import tempfile

from recipes.config import ROOT, log
from recipes.tail_cv import BLOCKS, VARIANTS, Variant, prefix, pretrain_pediatric, run_variant
from recipes.tail_data import CUT

PRETRAINING = ("", "pediatric")
PRETRAINED = os.path.join(ROOT, "runs", "tail-cv-adult", "pretrained-tail.pt")  # shared with tail_cli


def applies(recipe):
    """True for a recipe whose tuned blocks all run on the cached maps (Lite0, 1 <= tune_blocks <= 4)."""
    return recipe.arch == "efficientnet_lite0" and 0 < recipe.tune_blocks <= BLOCKS - CUT


def variant_of(recipe):
    """The ``recipes.tail_cv.Variant`` this recipe is (same blocks, same pretraining)."""
    return Variant(tune_blocks=recipe.tune_blocks, pretrain=recipe.tail_pretrain)


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
    body, seconds = pretrain_pediatric(data, recipe, recipe.tune_blocks, store=PRETRAINED)
    net.backbone.body.load_state_dict(body)
    return seconds


def cross_validate(recipe, description, data_root):
    """The recipe's k-fold CV by patient with the tail re-tuned per fold, in ``recipes.cv.cross_validate``'s
    format (``run.metrics["cv"]["shipped_recipe"]``), plus the out-of-fold probabilities."""
    from recipes import tail_data

    sets = ("chest", "crops") + (("pediatric",) if recipe.tail_pretrain else ())
    data = tail_data.load(description, sets, data_root)
    data.recipe = recipe
    classes = list(data.description.classes)
    body = None
    if recipe.tail_pretrain:
        body = pretrain_pediatric(data, recipe, recipe.tune_blocks, store=PRETRAINED)[0]
    result = run_variant(data, variant_of(recipe), classes, body)
    files = data.sets["chest"][0]
    return {"summary": result["summary"], "k": recipe.cv_folds, "with_photos": True,
            "patients": len({s.patient_id for s in files}), "images": len(files),
            "folds": [{"macro_auroc": v} for v in result["fold_macro_auroc"]], "seconds": result["seconds"],
            "variant": [name for name, v in VARIANTS.items() if v == variant_of(recipe)]
            or [str(variant_of(recipe))]}
