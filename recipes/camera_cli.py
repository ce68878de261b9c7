"""``python -m recipes.camera_cli``: the cross-validated camera-path evaluation of the chest recipe."""

import argparse
import json
import os
import sys

from edge.cliutil import run_guarded
from edge.errors import ConfigError
from edge.preprocess import CONTRAST_MODES
from recipes.camera_cv import THRESHOLDS
from recipes.config import DEFAULT_DATA_ROOT, ROOT


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recipes.camera_cli", description=(
        "Cross-validate the chest head recipe on the camera path: every image's file and camera crop "
        "scored by the fold that never trained on it."))
    parser.add_argument("--module", default="chest")
    parser.add_argument("--contrast", choices=["none"] + sorted(CONTRAST_MODES),
                        help="the input's contrast normalisation (default: the recipe's input.contrast)")
    parser.add_argument("--renders", type=int, default=1, help="photographed training crops per image")
    parser.add_argument("--threshold", choices=sorted(THRESHOLDS), default="val",
                        help="how the input check's thresholds are set (recipes.camera_cv)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    parser.add_argument("--out", help="JSON result (default runs/camera-cv-<module>-r<R>-<threshold>.json)")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="only write the Markdown table of these results to --doc")
    parser.add_argument("--doc", help="Markdown file written by --report")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering camera frames")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def _report(args):
    from recipes.camera_cv import markdown

    if not args.doc:
        raise ConfigError("--report needs --doc. Fix: name the Markdown file to write")
    results = []
    for path in args.report:
        try:
            with open(path, encoding="utf-8") as handle:
                results.append(json.load(handle))
        except (OSError, ValueError) as exc:
            message = "{} cannot be read ({}). Fix: run the evaluation first".format(path, exc)
            raise ConfigError(message) from exc
    with open(args.doc, "w", encoding="utf-8") as handle:
        handle.write(markdown(results))
    return "{} result(s) written to {}".format(len(results), args.doc)


def _run(args):
    if args.report:
        return _report(args)
    import torch

    from recipes.camera_cv import camera_cross_validate
    from recipes.camera_data import load
    from recipes.config import recipe_for
    from recipes.run import build_description
    from training.checkpoint import build_net
    from training.modules import get_module
    from training.registry import split_network

    torch.set_num_threads(args.threads)
    recipe = recipe_for(args.module, contrast=args.contrast)
    torch.manual_seed(recipe.seed)
    module = get_module(recipe.module)
    net = build_net(build_description(recipe, module), pretrained=True).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    trunk, _tail = split_network(net, recipe.arch, 0)
    parts = load(recipe, trunk, list(module.classes), module.task, renders=args.renders,
                 data_root=args.data_root, workers=args.workers)
    head = net.backbone.head
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    result = camera_cross_validate(recipe, head, initial, parts, list(module.classes), module.task,
                                   threshold=args.threshold)
    result["settings"] = {"module": recipe.module, "renders": args.renders, "threshold": args.threshold,
                          "folds": recipe.cv_folds, "seed": recipe.seed, "contrast": recipe.contrast}
    out = args.out or os.path.join(ROOT, "runs", "camera-cv-{}-r{}-{}{}.json".format(
        recipe.module, args.renders, args.threshold,
        "" if recipe.contrast == "none" else "-contrast-" + recipe.contrast))
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    refused = result["refused"]
    return "{}: refused files {} frames {}; non-X-rays {} child {}; written {}".format(
        recipe.module, refused["files"]["rate"], refused["frames"]["rate"], refused["non_xray"]["rate"],
        refused["other_test"]["rate"], out)


def main(argv=None):
    """Run the evaluation; prints one line: the summary or the error."""
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: print(_run(args)))


if __name__ == "__main__":
    sys.exit(main())
