"""``medkiosk train``, ``medkiosk evaluate`` and ``medkiosk data``: thin wrappers over the libraries.

Light at import: torch and the training modules are imported inside the handlers, and a missing
torch becomes a one-line error saying what to install.
"""

import argparse
import sys

from edge.errors import MissingDependencyError
from training.metrics import BOOTSTRAP_RESAMPLES
from training.train_args import add_train_arguments, set_threads, train_config

TRAIN_HINT = "pip install 'medkiosk[train]'"


def _need_torch():
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("PyTorch is not installed ({}). Install it: {}".format(
            exc, TRAIN_HINT)) from exc


def _strip_option(argv, option):
    """argv without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == option:
            skip = True
        elif not token.startswith(option + "="):
            out.append(token)
    return out


def add_evaluate_arguments(parser):
    parser.add_argument("run", help="run folder (uses best.pt and split.json) or a checkpoint .pt")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--data", help="evaluate on this folder (class subfolders) instead of the run's "
                        "split; with --csv: the images folder")
    parser.add_argument("--csv", help="NIH-style CSV to evaluate on (with --data as the images folder)")
    parser.add_argument("--out", help="report folder (default RUN/eval-SPLIT)")
    parser.add_argument("--coverage", type=float, default=None,
                        help="coverage for the abstain threshold (default: the one training used)")
    parser.add_argument("--set-threshold", action="store_true",
                        help="store the abstain threshold found here into the checkpoint")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES,
                        help="bootstrap resamples for 95%% CIs (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: one per core)")


def run_train(args):
    _need_torch()
    set_threads(args)
    from training.train import train

    result = train(train_config(args))
    last = result.history[-1] if result.history else {}
    print("best checkpoint: {}".format(result.best_checkpoint))
    print("run folder: {} ({} epochs, last val loss {})".format(
        result.run_dir, len(result.history), last.get("val_loss")))
    return 0


def run_evaluate(args):
    _need_torch()
    set_threads(args)
    from training.evaluate import evaluate_cli

    return evaluate_cli(args)


def run_list_archs(_args):
    _need_torch()
    from training.registry import ARCHITECTURES

    for name, spec in sorted(ARCHITECTURES.items()):
        print("{:20s} {:4d}px  weights: {} ({})  {}".format(
            name, spec.default_size, spec.weights, "present" if spec.offline_weights() else "absent",
            spec.summary))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="medkiosk", description="Training tools (need the [train] extra).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_parser = sub.add_parser("train", help="train a model on an image folder or CSV dataset")
    add_train_arguments(train_parser)
    train_parser.add_argument("--nproc-per-node", type=int, default=1,
                              help="train with N processes (DDP via torchrun: gloo on CPU, NCCL on CUDA)")
    train_parser.set_defaults(handler=run_train)
    archs = sub.add_parser("archs", help="list the architectures and whether their weights are here")
    archs.set_defaults(handler=run_list_archs)
    evaluate = sub.add_parser("evaluate", help="evaluate a run: metrics, plots, calibration, report.md")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=run_evaluate)
    data = sub.add_parser("data", help="dataset tools: synth, split, augment, leak check")
    try:
        from training import data_cli
    except ImportError as exc:
        data.set_defaults(handler=lambda _a, exc=exc: _missing_data_cli(exc))
    else:
        data_cli.add_arguments(data)
        if not data.get_default("handler"):
            data.set_defaults(handler=getattr(data_cli, "run", None))
    return parser


def _missing_data_cli(exc):
    raise MissingDependencyError("`medkiosk data` is not available ({}). Install: {}".format(exc, TRAIN_HINT))


def main(argv=None):
    from edge.cliutil import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train" and "--list-archs" in argv:
        argv = ["archs"]
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    if args.command == "train" and args.nproc_per_node > 1:
        from training.distributed import launch

        return run_guarded(launch, _strip_option(argv[1:], "--nproc-per-node"), args.nproc_per_node)
    return run_guarded(handler, args)


if __name__ == "__main__":
    sys.exit(main())
