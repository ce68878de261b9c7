"""Fill the shared embedding cache (``training.embed_cache``) for a head-on-frozen-network recipe with ONNX
Runtime instead of PyTorch, before ``python -m recipes MODULE`` runs (which then finds every input cached).

Why: on this CPU the frozen EfficientNet-Lite0 pass in PyTorch eager mode is dominated by its depthwise
convolutions; the same trunk exported to ONNX (TorchScript exporter, opset 13) and run by ONNX Runtime
(one thread) was 6x faster on a batch of 32 (27.1 s vs 4.4 s under load 12), with embeddings equal to
9.1e-06. The cache's key is the input's content, so the recipe reads these rows as its own.

``python -m recipes.warm_cache MODULE [--parts train,val,...] [--shard NAME] [--contrast MODE]`` prints one
line; two processes with disjoint ``--parts`` share the work. The cache is per input normalisation
(``training.embed_cache.cache_dir``): ``--contrast`` warms a candidate's before the recipe names it.
"""

import argparse
import os
import sys
import tempfile
import time

import torch

from edge.description import CONTRAST_MODES
from edge.errors import ConfigError, MedkioskError
from recipes.config import DEFAULT_DATA_ROOT, RECIPES, ROOT, log, recipe_for
from recipes.ort_trunk import onnx_trunk


def part_names(recipe):
    """The parts ``recipe_inputs`` returns for ``recipe``."""
    names = ["train", "val", "test"]
    names += ["train_photo", "val_photo"] if recipe.photo_renders else []
    names += ["other_train", "other_val", "other_test"] if recipe.other_group else []
    return names + (["negatives"] if recipe.negatives else [])


def recipe_inputs(recipe, spec):
    """{part: uint8 inputs} the recipe embeds (as ``recipes.run`` assembles them): the split's files,
    the photographed crops, the other patient group's X-rays and the generated negatives."""
    from recipes import photo_data
    from recipes.data import cache_images, resolve_split

    _module, split, _info = resolve_split(recipe, DEFAULT_DATA_ROOT, os.path.join(ROOT, "splits"))
    parts = dict(split.parts())
    if recipe.train_limit:
        parts["train"] = photo_data.train_subset(recipe, split)
    images = {name: cache_images(samples, spec) for name, samples in parts.items()}
    if recipe.photo_renders:
        for part in ("train", "val"):
            images[part + "_photo"] = photo_data.photo_part(recipe, split, part, spec)[1]
    if recipe.other_group:
        for part in ("train", "val", "test"):
            images["other_" + part] = photo_data.other_group(recipe, DEFAULT_DATA_ROOT, spec, part)[1]
    if recipe.negatives:
        images["negatives"] = photo_data.negatives(spec)[1]
    return images


def warm(module, parts=None, shard=None, contrast=None):
    """Embed the recipe's inputs (all parts, or ``parts``; normalised with ``contrast`` instead of the
    recipe's own when given); returns {part: {images, seconds}}."""
    from recipes import photo_data
    from recipes.run import build_description
    from training.checkpoint import build_net
    from training.modules import get_module
    from training.registry import split_network

    torch.set_num_threads(1)
    recipe = recipe_for(module, contrast=contrast)
    if recipe.tune_blocks != 0:
        raise ConfigError("{} fine-tunes the network: its trunk outputs are not cached embeddings. Fix: warm "
                          "only a head-on-frozen-network recipe (tune_blocks 0)".format(module))
    unknown = sorted(set(parts or ()) - set(part_names(recipe)))
    if unknown:
        raise ConfigError("unknown part(s) {}. Fix: use some of {}".format(unknown, part_names(recipe)))
    description = build_description(recipe, get_module(recipe.module))
    images = recipe_inputs(recipe, description.input)
    with tempfile.TemporaryDirectory() as folder:
        net = build_net(description, pretrained=True).eval()
        trunk, _tail = split_network(net, recipe.arch, 0)
        forward = onnx_trunk(trunk, description.input, folder)
        cache = photo_data.embedding_cache(recipe)
        cache.shard_name = "shard-ort-{}-{}-{}".format(shard or os.getpid(), os.getpid(), int(time.time()))
        done = {}
        for name in parts or sorted(images):
            started = time.time()
            cache.embed(forward, images[name], log=log)
            done[name] = {"images": len(images[name]), "seconds": round(time.time() - started, 1)}
        return done


def main(argv=None):
    """Warm the cache; prints one line (per part: images and seconds) or the error."""
    parser = argparse.ArgumentParser(prog="python -m recipes.warm_cache", description=__doc__.split("\n")[0])
    parser.add_argument("module", choices=sorted(RECIPES))
    parser.add_argument("--parts", help="comma-separated parts (default: all), e.g. train,val,test")
    parser.add_argument("--shard", help="a name for this process's shard files")
    parser.add_argument("--contrast", choices=CONTRAST_MODES,
                        help="warm for this input normalisation instead of the recipe's (a candidate)")
    args = parser.parse_args(argv)
    try:
        done = warm(args.module, args.parts.split(",") if args.parts else None, args.shard, args.contrast)
    except MedkioskError as exc:
        sys.stderr.write("medkiosk: error: {}\n".format(exc))
        return getattr(exc, "exit_code", 2)
    print(" ".join("{}={}/{}s".format(k, v["images"], v["seconds"]) for k, v in sorted(done.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
