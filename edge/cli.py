"""``medkiosk``: the one console entry.

Device commands (classify, bundle, run, selftest, cases) live in ``edge``, and so do the device
half of ``export`` (``export engine|verify|engines``, in ``edge.commands.engines``); ``train``,
``evaluate`` and ``data`` are handed to ``training.cli`` and the rest of ``export`` to
``export.cli``, each imported only when asked for, so the device never imports torch.
"""

import argparse
import importlib
import sys

from edge import __version__
from edge.cliutil import dispatch, report_error
from edge.commands import bundle, capture, cases, classify, engines, run, selftest, serve
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

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help); the command
# modules are light at import (their libraries are imported when a command runs).
EDGE_COMMANDS = {
    "classify": (classify, "classify image files with a model bundle (top-3 per image)"),
    "bundle": (bundle, "check model bundles: manifest, hash, ONNX contract, golden images"),
    "run": (run, "run the kiosk: camera or USB images -> top-3 findings on the screen"),
    "cases": (cases, "list saved cases, export them to a USB stick for referral"),
    "capture": (capture, "labelled photos of capture mode (key C): list, export for training"),
    "selftest": (selftest, "on-device checklist: bundles, golden images, camera, display"),
    "serve": (serve, "optional LAN service: JSON API and web page, device pairing"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="medkiosk",
        description="Offline diagnostic-assist kiosk. Decision support only - not a diagnosis.",
    )
    parser.add_argument("--version", action="version", version="medkiosk " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in sorted(EDGE_COMMANDS.items()):
        command = sub.add_parser(name, help=help_text, description=help_text)
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
    if engines.handles(argv):
        return engines.main(argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv)
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
