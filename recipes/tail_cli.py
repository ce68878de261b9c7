"""``python -m recipes.tail_cli``: cross-validate chest recipe variants that fine-tune the last backbone
blocks on cached feature maps (``recipes.tail_cv``) against the shipped head, on the same folds.

Each variant's result (per-fold metrics, summary, out-of-fold probabilities, CPU seconds) is written
to ``OUT/<variant>.json``, so variants can run in separate processes; every run then rewrites
``OUT/summary.json`` and ``OUT/summary.md``: every stored variant vs the stored ``head`` (the shipped
recipe), paired patient-level bootstrap of the pooled out-of-fold AUROCs. Prints one line.
"""

import argparse
import os
import sys

from edge.cliutil import run_guarded
from edge.preprocess import CONTRAST_MODES
from recipes.config import DEFAULT_DATA_ROOT, ROOT

SUMMARY = ("summary.json", "summary.md")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.tail_cli", description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="head,tail2", help="comma-separated: recipes.tail_cv.VARIANTS")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "tail-cv-adult"),
                        help="where each variant's record goes (the recipe reads its own from the default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws of the paired differences")
    parser.add_argument("--folds", type=int, help="cross-validation folds (default: the recipe's)")
    parser.add_argument("--tune-epochs", type=int, help="stage-2 epochs (default: the recipe's)")
    parser.add_argument("--tune-lr", type=float, help="stage-2 learning rate (default: the recipe's); stored "
                        "as <variant>-lr<value>")
    parser.add_argument("--contrast", choices=["none"] + sorted(CONTRAST_MODES),
                        help="the input's contrast normalisation (default: the recipe's); a variant run with "
                        "another than the recipe's is stored as <variant>-contrast-<mode>")
    parser.add_argument("--dicom", action="store_true", help="also score every 2nd file with its grey range "
                        "stretched (a DICOM without a window): the probability change per class")
    parser.add_argument("--warm", action="store_true", help="only fill the feature-map cache of --sets")
    parser.add_argument("--sets", default="chest,crops,extra,pediatric", help="with --warm")
    return parser


def chest_description(contrast=None):
    """The chest recipe's description (``recipes.run.build_description``), with ``contrast`` if given."""
    from recipes.config import recipe_for
    from recipes.run import build_description
    from training.modules import get_module

    recipe = recipe_for("chest", contrast=contrast)
    return build_description(recipe, get_module(recipe.module))


def _warm(args):
    from recipes import tail_data

    data = tail_data.load(chest_description(args.contrast), args.sets.split(","), args.data_root,
                          args.threads)
    return " ".join("{}={}/{}s".format(k, len(v[0]), data.seconds[k]) for k, v in data.sets.items())


def _run(args):
    from recipes import tail_cv, tail_data
    from recipes.config import recipe_for
    from recipes.tail_report import store, summarise_dir

    if args.warm:
        return _warm(args)

    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(tail_cv.VARIANTS))
    if unknown:
        from edge.errors import ConfigError

        raise ConfigError("unknown variant(s) {}. Fix: use some of {}".format(
            unknown, ", ".join(tail_cv.VARIANTS)))
    if args.folds is not None and args.folds < 3:
        from edge.errors import ConfigError

        raise ConfigError("--folds {} leaves no training fold (one tests, the next validates). Fix: use 3 or "
                          "more".format(args.folds))
    os.makedirs(args.out, exist_ok=True)
    pediatric = any(tail_cv.VARIANTS[n].pretrain for n in names)
    sets = ("chest", "crops", "extra") + (("pediatric",) if pediatric else ())
    data = tail_data.load(chest_description(args.contrast), sets + (("dicom",) if args.dicom else ()),
                          args.data_root, args.threads)
    mode = data.recipe.contrast
    suffix = "" if mode == recipe_for("chest").contrast else "-contrast-" + mode
    changes = {k: v for k, v in (("cv_folds", args.folds), ("tune_epochs", args.tune_epochs),
                                             ("tune_lr", args.tune_lr)) if v}
    tail_cv.with_recipe(data, **changes)
    classes = list(data.description.classes)
    body, pretrain_s = None, None
    for name in names:
        variant = tail_cv.VARIANTS[name]
        if variant.pretrain and body is None:
            kept = os.path.join(args.out, "pretrained-tail{}.pt".format(suffix))
            body, pretrain_s = tail_cv.pretrain_pediatric(data, data.recipe, store=kept)
        result = tail_cv.run_variant(data, variant, classes, body if variant.pretrain else None)
        result["pretrain_s"] = pretrain_s if variant.pretrain else None
        label = name + ("-lr{:g}".format(args.tune_lr) if args.tune_lr and variant.tune_blocks else "")
        label += suffix
        store(os.path.join(args.out, label + ".json"), label, variant, result, data)
    if not os.path.isfile(os.path.join(args.out, "head.json")):
        return "stored {} in {} (the comparison needs head: run --variants head)".format(
            ", ".join(names), args.out)
    summary = summarise_dir(args.out, classes, data.sets["chest"][0], args.draws)
    return "; ".join("{}: macro AUROC {:.3f}, ECE {:.3f}".format(
        n, r["macro_auroc"]["mean"], r["ece"]["mean"]) for n, r in summary["variants"].items())


def main(argv=None):
    """Run the variants; prints one line: the summary or the error."""
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: print(_run(args)))


if __name__ == "__main__":
    sys.exit(main())
