"""``medkiosk export engine | verify | engines``: TensorRT engines on this device.

The device half of ``medkiosk export``: it runs on a Jetson with neither torch nor onnx, so
``edge.cli`` hands these three subcommands here without importing the ``export`` package, and
``export.cli`` adds the same subparsers next to its workstation commands (``onnx``, ``compare``).
Python 3.6 compatible; TensorRT is imported only when a command needs it.
"""

import argparse
import sys

from edge.bundle import write_json_atomic
from edge.cliutil import dispatch, print_line
from edge.config import PRECISIONS
from edge.tensorrt.cache import default_cache_dir
from edge.tensorrt.manage import ensure_engine, rebuild_engines, verify_bundle

EXPORT_HELP = "checkpoint -> ONNX bundle -> TensorRT engine"
EXPORT_DESCRIPTION = "checkpoint -> ONNX bundle -> TensorRT engine; parity and verification"


def cmd_engine(args):
    result = ensure_engine(args.bundle, args.cache, precision=args.precision, calib_dir=args.calib,
                           workspace_mb=args.workspace_mb, force=args.force, log=print_line)
    print_line("{} engine {}: {}".format(result.precision, result.action, result.path))
    return 0


def cmd_verify(args):
    report = verify_bundle(args.bundle, args.cache, precision=args.precision, allow_build=not args.no_build,
                           calib_dir=args.calib, log=print_line)
    for line in report["lines"]:
        print_line(line)
    print_line("VERIFIED: this unit computes what the lab computed" if report["ok"] else
               "FAILED: this unit does NOT reproduce the lab's outputs; do not use this module")
    if args.json:
        write_json_atomic(args.json, report)
    return 0 if report["ok"] else 1


def cmd_engines(args):
    summary = rebuild_engines(args.models, args.cache, precision=args.precision, log=print_line,
                              verify=args.verify)
    print_line("engines: {} up to date, {} built, {} failed{}".format(
        summary["fresh"], summary["built"], summary["failed"],
        ", {} verified on their golden images".format(summary["verified"]) if args.verify else ""))
    return 0 if summary["failed"] == 0 else 1


def _bundle_parser(sub, name, help_text, calib_help):
    """A subcommand that works on one bundle's engine: bundle, precision, calibration and cache arguments."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--calib", help=calib_help)
    p.add_argument("--cache", default=default_cache_dir(), help="engine cache folder (default %(default)s)")
    return p


def _add_engine(sub):
    p = _bundle_parser(sub, "engine", "build (or find) the TensorRT engine of a bundle on this device",
                       "folder of calibration images (INT8)")
    p.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit (default 512)")
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine exists")
    p.set_defaults(handler=cmd_engine)


def _add_verify(sub):
    p = _bundle_parser(sub, "verify", "run the bundle's golden images through TensorRT and compare",
                       "folder of calibration images (INT8 builds)")
    p.add_argument("--no-build", action="store_true", help="fail instead of building a missing engine")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(handler=cmd_verify)


def _add_engines(sub):
    p = sub.add_parser("engines", help="rebuild every missing or stale engine (medkiosk-engines.service)")
    p.add_argument("--models", required=True, help="folder of bundle folders")
    p.add_argument("--cache", default=default_cache_dir(), help="engine cache folder (default %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--verify", action="store_true",
                   help="also run each bundle's golden images through its engine")
    p.set_defaults(handler=cmd_engines)


# subcommand of `medkiosk export` -> adds its parser (help, arguments, handler)
SUBCOMMANDS = {"engine": _add_engine, "verify": _add_verify, "engines": _add_engines}


def add_subcommands(sub):
    """Add ``engine``, ``verify`` and ``engines`` to the subparsers of ``medkiosk export``."""
    for name in ("engine", "verify", "engines"):
        SUBCOMMANDS[name](sub)


def handles(argv):
    """Whether ``argv`` (starting with "export") is one of the device subcommands handled here."""
    return len(argv) > 1 and argv[0] == "export" and argv[1] in SUBCOMMANDS


def build_parser():
    """``medkiosk export`` with the device subcommands only."""
    parser = argparse.ArgumentParser(prog="medkiosk", description="TensorRT engine tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    export = commands.add_parser("export", help=EXPORT_HELP, description=EXPORT_DESCRIPTION)
    add_subcommands(export.add_subparsers(dest="export_command", metavar="SUBCOMMAND"))
    return parser


def main(argv=None):
    """Entry for ``medkiosk export engine|verify|engines ...``; ``argv`` starts with "export"."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return dispatch(build_parser(), argv)
