"""``python -m recipes MODULE``: train, calibrate, export and evaluate a shipped chest module on CPU."""

import argparse
import json
import os

from edge.cliutil import run_guarded
from recipes.card import rewrite_card
from recipes.config import BASELINES, DEFAULT_DATA_ROOT, RECIPES, ROOT, recipe_for
from recipes.evaluation import headline
from recipes.run import train_recipe


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recipes",
        description="Train, calibrate, export and evaluate a shipped chest module on CPU.",
    )
    parser.add_argument("module", choices=sorted(RECIPES))
    parser.add_argument("--out", help="run folder (default runs/<module>)")
    parser.add_argument(
        "--data-root", default=DEFAULT_DATA_ROOT, help="folder holding chest-nih/ and chest-pediatric/"
    )
    parser.add_argument(
        "--splits", default=os.path.join(ROOT, "splits"), help="folder of the committed split files"
    )
    parser.add_argument(
        "--models", default=os.path.join(ROOT, "models"), help="where the bundle is installed"
    )
    parser.add_argument(
        "--docs", default=os.path.join(ROOT, "docs", "models"), help="where the report is written"
    )
    parser.add_argument(
        "--baseline", choices=sorted(BASELINES), help="train this baseline instead (installs nothing)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="write the bundle and report under --out only"
    )
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--tune-blocks", type=int)
    parser.add_argument("--tune-epochs", type=int)
    parser.add_argument("--patience", type=int, help="stage-2 epochs without validation improvement")
    parser.add_argument("--limit-per-class", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rewrite-card",
        action="store_true",
        help="only rewrite the installed bundle's model card from --out",
    )
    return parser


def _run(args):
    recipe = recipe_for(args.module, args.baseline, image_size=args.image_size, tune_blocks=args.tune_blocks,
                        tune_epochs=args.tune_epochs, patience=args.patience,
                        limit_per_class=args.limit_per_class)
    out = args.out or os.path.join(ROOT, "runs", args.module + ("-" + args.baseline if args.baseline else ""))
    if args.rewrite_card:
        return rewrite_card(recipe, out, args.models, args.splits)
    install = not args.no_install and not args.baseline
    docs = None
    if not args.no_install:
        docs = os.path.join(args.docs, args.module, "baseline-" + args.baseline if args.baseline else "")
    models = args.models if install else (os.path.join(out, "models") if not args.baseline else None)
    result = train_recipe(recipe, out, data_root=args.data_root, split_dir=args.splits, models_dir=models,
                          docs_dir=docs, threads=args.threads)
    return json.dumps({
        "checkpoint": result.checkpoint,
        "bundle": result.bundle,
        "report": result.report,
        "headline": headline(result.metrics),
        "timings": result.timings,
        "cross_check_training_evaluate": result.cross_check,
    })


def main(argv=None):
    """Train (or rewrite the card of) one module; prints one line: the run's summary or the error."""
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: print(_run(args)))
