"""``medkiosk``: the one console entry.

Device commands (classify, bundle, run, selftest, cases) live in ``edge``; ``train``,
``evaluate`` and ``data`` are handed to ``training.cli`` and ``export`` to ``export.cli``, each
imported only when asked for, so the device never imports torch.
"""

import argparse
import importlib
import sys

from edge import __version__
from edge.errors import MedkioskError

# command -> (module whose main(argv) handles it, one-line help, what to install if it is missing)
TRAIN_HINT = "pip install 'medkiosk[train]'"
DELEGATED = {
    "train": ("training.cli", "train a model on an image folder or CSV dataset", TRAIN_HINT),
    "evaluate": ("training.cli", "evaluate a trained run: metrics, plots, calibration", TRAIN_HINT),
    "data": ("training.cli", "dataset tools: synth, split, augment, leak check", TRAIN_HINT),
    "export": ("export.cli", "checkpoint -> ONNX bundle -> TensorRT engine; parity and verification",
               "pip install 'medkiosk[export]'"),
}

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help)
EDGE_COMMANDS = {
    "classify": ("edge.commands.classify", "classify image files with a model bundle (top-3 per image)"),
    "bundle": ("edge.commands.bundle", "check model bundles: manifest, hash, ONNX contract, golden images"),
    "run": ("edge.commands.run", "run the kiosk: camera or USB images -> top-3 findings on the screen"),
    "cases": ("edge.commands.cases", "list saved cases, export them to a USB stick for referral"),
    "selftest": ("edge.commands.selftest", "on-device checklist: bundles, golden images, camera, display"),
    "serve": ("edge.commands.serve", "optional LAN service: JSON API and web page, device pairing"),
}


def report_error(exc, stream=None):
    """Print a MedkioskError as one line for the user."""
    stream = stream or sys.stderr
    stream.write("medkiosk: error: {}\n".format(exc))
    stream.flush()


def run_guarded(func, *args):
    """Call a command; turn project errors into a one-line message and an exit code."""
    try:
        return int(func(*args) or 0)
    except MedkioskError as exc:
        report_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("medkiosk: interrupted\n")
        return 130


def build_parser():
    parser = argparse.ArgumentParser(
        prog="medkiosk",
        description="Offline diagnostic-assist kiosk. Decision support only - not a diagnosis.",
    )
    parser.add_argument("--version", action="version", version="medkiosk " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in sorted(EDGE_COMMANDS.items()):
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    for name, (_module, help_text, _hint) in sorted(DELEGATED.items()):
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _delegate(argv):
    module_name, _help, hint = DELEGATED[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        report_error(MedkioskError("`medkiosk {}` is not available ({}). Install it: {}".format(
            argv[0], exc, hint)))
        return 2
    return module.main(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return run_guarded(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
