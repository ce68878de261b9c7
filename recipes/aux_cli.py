"""``python -m recipes.aux_cli``: cross-validate the chest head with the 14 NIH findings as auxiliary
targets (``recipes.aux_cv``) at several weights; weight 0 is the shipped head on the same folds."""

import argparse
import json
import os
import sys

from edge.cliutil import run_guarded
from recipes.config import DEFAULT_DATA_ROOT, ROOT


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.aux_cli", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--hidden", type=int, default=256, help="shared hidden units (0: linear head)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "aux-cv-chest.json"))
    parser.add_argument("--threads", type=int, default=2)
    return parser


def _data(recipe, module, data_root):
    """{"files", "crops", "extra": (samples, embeddings, class index, multi-hot)} and the finding names."""
    import torch

    from recipes import aux_cv
    from recipes.camera_data import Part, embed_parts
    from recipes.data import cache_images, resolve_split, targets_of
    from recipes.photo_data import photo_part
    from recipes.run import build_description
    from training.checkpoint import build_net
    from training.registry import split_network

    _module, split, _info = resolve_split(recipe, data_root, os.path.join(ROOT, "splits"))
    description = build_description(recipe, module)
    spec = description.input
    rows, names = aux_cv.nih_findings(data_root)
    order = [s for part in ("train", "val", "test") for s in split[part]]
    crops = [photo_part(recipe, split, part, spec) for part in ("train", "val")]
    extra = aux_cv.extra_samples(rows, {s.path for s in order})
    parts = {"files": Part(order, cache_images(order, spec)),
             "crops": Part(crops[0][0] + crops[1][0], torch.cat([crops[0][1], crops[1][1]])),
             "extra": Part(extra, cache_images(extra, spec))}
    net = build_net(description, pretrained=True).eval()
    embed_parts(recipe, split_network(net, recipe.arch, 0)[0], parts)
    classes = list(module.classes)
    out = {}
    for name, part in parts.items():
        if name == "extra":
            main = torch.full((len(part.samples),), -1, dtype=torch.long)
        else:
            main = targets_of(part.samples, classes, "multiclass")
        hot = aux_cv.multi_hot([s.path for s in part.samples], rows, names)
        out[name] = (part.samples, part.embeddings, main, hot)
    return out, names


def _run(args):
    import torch

    from recipes import aux_cv
    from recipes.config import recipe_for
    from training.modules import get_module

    torch.set_num_threads(args.threads)
    recipe = recipe_for("chest")
    module = get_module(recipe.module)
    data, names = _data(recipe, module, args.data_root)
    results = {"findings": names, "extra_images": len(data["extra"][0]), "hidden": args.hidden, "weights": {}}
    for weight in args.weights:
        summary, per_fold = aux_cv.aux_cross_validate(
            data["files"], data["crops"], data["extra"], list(module.classes), recipe.cv_folds, recipe.seed,
            weight, hidden=args.hidden)
        results["weights"][str(weight)] = {"summary": aux_cv.as_numpy_summary(summary),
                                           "fold_macro_auroc": per_fold}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    return "; ".join("weight {}: macro AUROC {:.3f}, ECE {:.3f}".format(
        w, r["summary"]["macro_auroc"]["mean"], r["summary"]["ece"]["mean"])
        for w, r in results["weights"].items())


def main(argv=None):
    """Run the comparison; prints one line: the summary or the error."""
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: print(_run(args)))


if __name__ == "__main__":
    sys.exit(main())
