"""The data of the adult tail fine-tuning trial (``recipes.tail_cv``): every input's EfficientNet-Lite0
feature map BEFORE block ``CUT`` (192 x 7 x 7 at 224), computed once by ONNX Runtime and kept in the
shared, content-addressed cache (``training.embed_cache``; its own folder, ``...-imagenet-block12``).

From that map the last ``16 - CUT`` blocks, the 1x1 head convolution and the pooling run in PyTorch:
a 7x7 map makes them cheap enough to fine-tune on this CPU, so "tune the last k blocks" (k <= 4) costs
one frozen pass over each image, once.

Sets (``load``): the chest module's files (train + val + test split: cross-validation folds are
made over all of them), their photographed TRAIN/VAL crops (the shipped recipe's, 1 render), the NIH
images the module drops (auxiliary targets only, never tested) and the paediatric module's TRAIN and
VAL split files (chest pretraining; its TEST split is never read here).

``python -m recipes.tail_cli --warm [--sets ...]`` fills the cache.
"""

import os
import tempfile
import time
from types import SimpleNamespace

import torch

from edge.errors import ConfigError
from recipes.config import DEFAULT_DATA_ROOT, ROOT, log, recipe_for
from training.embed_cache import EmbeddingCache, cache_dir

CUT = 12  # the first block fine-tuned at most: blocks 12-15 run at 7x7 (block 11 is the stride-2 one)
SETS = ("chest", "crops", "extra", "pediatric")
OPTIONAL_SETS = ("dicom",)  # loaded only when asked for
DICOM_EVERY = 2  # the "dicom" set: every 2nd chest file, grey range stretched (recipes.dicom_proxy)


def feature_cache(recipe):
    """The shared cache of the feature maps before block ``CUT`` (its own folder: not embeddings), one
    folder per input contrast normalisation (as the embeddings': ``cache_dir``)."""
    from recipes.photo_data import EMBED_DIR

    weights = "imagenet-block{}".format(CUT)
    return EmbeddingCache(cache_dir(EMBED_DIR, recipe.arch, recipe.image_size, weights,
                                    contrast=recipe.contrast))


def pretrained_net(description):
    """The ImageNet-pretrained network of ``description`` (``recipes.run.build_description``); frozen."""
    from training.checkpoint import build_net

    net = build_net(description, pretrained=True).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def trunk_of(net, arch):
    """The frozen trunk: pixels -> feature map before block ``CUT``."""
    from training.registry import split_network

    return split_network(net, arch, 16 - CUT)[0]


def _chest_sets(recipe, data_root, spec):
    from recipes import aux_cv
    from recipes.data import cache_images, resolve_split
    from recipes.photo_data import photo_part

    _module, split, _info = resolve_split(recipe, data_root, os.path.join(ROOT, "splits"))
    order = [s for part in ("train", "val", "test") for s in split[part]]
    rows, names = aux_cv.nih_findings(data_root)
    crops = [photo_part(recipe, split, part, spec) for part in ("train", "val")]
    extra = aux_cv.extra_samples(rows, {s.path for s in order})

    def stretched():
        from recipes.dicom_proxy import stretched_inputs

        chosen = order[::DICOM_EVERY]
        return chosen, stretched_inputs(chosen, spec)

    return {
        "dicom": stretched,
        "chest": lambda: (order, cache_images(order, spec)),
        "crops": lambda: (crops[0][0] + crops[1][0], torch.cat([crops[0][1], crops[1][1]])),
        "extra": lambda: (extra, cache_images(extra, spec)),
    }, rows, names


def _pediatric_set(data_root, spec):
    """The paediatric module's TRAIN + VAL split files (never its test split)."""
    from recipes.data import cache_images, resolve_split

    _module, split, _info = resolve_split(recipe_for("pediatric-pneumonia"), data_root,
                                          os.path.join(ROOT, "splits"))
    samples = list(split.train) + list(split.val)
    return {"samples": samples, "val_paths": {s.path for s in split.val},
            "images": cache_images(samples, spec)}


def load(description, sets=SETS, data_root=DEFAULT_DATA_ROOT, threads=1, onnx=True):
    """SimpleNamespace: recipe, net (``description``'s, ImageNet-pretrained), NIH rows/names and {set:
    (samples, feature maps)}; missing feature maps are computed (ONNX Runtime by default) and cached."""
    unknown = sorted(set(sets) - set(SETS + OPTIONAL_SETS))
    if unknown:
        raise ConfigError("unknown set(s) {}. Fix: use some of {}".format(unknown,
                                                                      ", ".join(SETS + OPTIONAL_SETS)))
    torch.set_num_threads(threads)
    recipe = recipe_for("chest", contrast=description.input.contrast)
    net = pretrained_net(description)
    spec = description.input
    makers, rows, names = _chest_sets(recipe, data_root, spec)
    cache = feature_cache(recipe)
    out = SimpleNamespace(recipe=recipe, net=net, description=description, rows=rows, names=names, sets={},
                          seconds={}, pediatric_val=set())
    with tempfile.TemporaryDirectory() as folder:
        trunk = trunk_of(net, recipe.arch)
        forward = onnx_forward(trunk, spec, folder) if onnx else trunk
        for name in sets:
            started = time.time()
            if name == "pediatric":
                data = _pediatric_set(data_root, spec)
                samples, images = data["samples"], data["images"]
                out.pediatric_val = data["val_paths"]
            else:
                samples, images = makers[name]()
            out.sets[name] = (samples, cache.embed(forward, images, log=log))
            out.seconds[name] = round(time.time() - started, 1)
            log("feature maps of {}: {} ({}s)".format(name, tuple(out.sets[name][1].shape),
                                                       out.seconds[name]))
    return out


def onnx_forward(trunk, spec, folder):
    from recipes.ort_trunk import onnx_trunk

    return onnx_trunk(trunk, spec, folder)
