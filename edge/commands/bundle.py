"""`medkiosk bundle verify DIR...`: manifest, hash, ONNX contract, then golden images on the backend."""

import json
import sys


def add_arguments(parser):
    from edge.commands.classify import add_backend_arguments

    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION")
    verify = sub.add_parser("verify", help="check bundles: every load check, then golden images through the "
                                           "chosen backend against golden/expected.json")
    verify.add_argument("bundles", nargs="+", metavar="DIR", help="bundle folders")
    verify.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_backend_arguments(verify)


def print_checks(title, checks, stream=None):
    """A titled checklist, one [STATUS] line per check."""
    from edge.console import echo

    echo(title, stream)
    for check in checks:
        echo("  " + check.line(), stream)


def run(args):
    from edge.backends import validate_backend
    from edge.console import echo
    from edge.errors import ConfigError
    from edge.verify import verify_bundle

    if getattr(args, "bundle_command", None) != "verify":
        raise ConfigError("say what to do: `medkiosk bundle verify DIR...`")
    backend, precision = args.backend or "auto", args.precision or "fp16"
    validate_backend(backend, precision)
    report, failed = [], 0
    for path in args.bundles:
        _bundle, checks = verify_bundle(path, backend=backend, precision=precision,
                                        engine_cache=args.engine_cache)
        ok = not any(check.failed for check in checks)
        failed += 0 if ok else 1
        if args.json:
            report.append({"bundle": path, "ok": ok, "checks": [c.to_dict() for c in checks]})
        else:
            print_checks("{}: {}".format("PASS" if ok else "FAIL", path), checks)
    if args.json:
        sys.stdout.write(json.dumps({"ok": not failed, "bundles": report}, indent=2) + "\n")
    else:
        echo("{} of {} bundles passed".format(len(args.bundles) - failed, len(args.bundles)))
    return 1 if failed else 0
