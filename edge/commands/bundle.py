"""`medkiosk bundle verify|sign|keygen`: check bundles on this unit; sign them in the lab.

verify: signature, manifest, hash, ONNX contract, then golden images on the backend; a module id
claimed by two of the given bundles fails too. sign: write signature.json over every file of a
bundle with the maintainer's Ed25519 private key. keygen: make a key pair (private 0600 + .pub).
"""

import json
import sys


def add_arguments(parser):
    from edge.commands.classify import add_backend_arguments

    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION")
    verify = sub.add_parser("verify", help="check bundles: signature, every load check, then golden images "
                                           "through the chosen backend against golden/expected.json")
    verify.add_argument("bundles", nargs="+", metavar="DIR", help="bundle folders")
    verify.add_argument("--json", action="store_true", help="print the checks as JSON")
    verify.add_argument("--config", default=None, metavar="PATH",
                        help="kiosk config whose [security] keys are trusted (default "
                             "/etc/medkiosk/medkiosk.conf when it exists)")
    add_backend_arguments(verify)
    sign = sub.add_parser("sign", help="sign every file of a bundle folder with an Ed25519 private key")
    sign.add_argument("bundle", metavar="DIR", help="bundle folder")
    sign.add_argument("--key", required=True, metavar="KEY", help="private key (made by `bundle keygen`)")
    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair: KEY (private, 0600) and KEY.pub")
    keygen.add_argument("--out", required=True, metavar="KEY", help="private key file to create")


def print_checks(title, checks, stream=None):
    """A titled checklist, one [STATUS] line per check."""
    from edge.console import echo

    echo(title, stream)
    for check in checks:
        echo("  " + check.line(), stream)


def metric_checks(bundle):
    """WARN lines for a bundle whose own test metrics are at chance level, and how it shows numbers."""
    from edge.bundle import chance_level_warnings, display_mode
    from edge.i18n import _
    from edge.verify import PASS, WARN, Check

    if bundle is None:
        return []
    mode, reason = display_mode(bundle.manifest)
    checks = [Check(_("numbers on screen"), PASS, "{} ({})".format(_(mode), reason))]
    checks += [Check(_("test metrics at chance level"), WARN, _("{}: the model may not work; retrain it or "
                                                                "do not install it").format(line))
               for line in chance_level_warnings(bundle.manifest, bundle.description.num_classes)]
    return checks


def run_verify(args):
    from edge.backends import validate_backend
    from edge.config import load_config
    from edge.console import echo
    from edge.signing import trust_from_config
    from edge.verify import duplicate_module_checks, verify_bundle

    backend, precision = args.backend or "auto", args.precision or "fp16"
    validate_backend(backend, precision)
    trust = trust_from_config(load_config(args.config))
    report, failed, bundles = [], 0, []
    for path in args.bundles:
        bundle, checks = verify_bundle(path, backend=backend, precision=precision,
                                       engine_cache=args.engine_cache, trust=trust)
        checks.extend(metric_checks(bundle))
        bundles.append(bundle)
        ok = not any(check.failed for check in checks)
        failed += 0 if ok else 1
        if args.json:
            report.append({"bundle": path, "ok": ok, "checks": [c.to_dict() for c in checks]})
        else:
            print_checks("{}: {}".format("PASS" if ok else "FAIL", path), checks)
    duplicates = duplicate_module_checks(bundles)
    if args.json:
        document = {"ok": not failed and not duplicates, "developer_mode": trust.developer_mode,
                    "duplicates": [c.to_dict() for c in duplicates], "bundles": report}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        if duplicates:
            print_checks("FAIL: module ids", duplicates)
        echo("{} of {} bundles passed{}".format(len(args.bundles) - failed, len(args.bundles),
                                                "; DEVELOPER MODE: signatures not enforced"
                                                if trust.developer_mode else ""))
    return 1 if failed or duplicates else 0


def run_sign(args):
    from edge.console import echo
    from edge.signing import bundle_files, sign_bundle

    signer = sign_bundle(args.bundle, args.key)
    echo("signed {}: {} files with key {}".format(args.bundle, len(bundle_files(args.bundle)), signer))
    return 0


def run_keygen(args):
    from edge.console import echo
    from edge.signing import keygen

    signer = keygen(args.out, args.out + ".pub")
    echo("key {}: private {} (0600, keep it off the device and out of git), public {}.pub (copy it into "
         "config/trusted_keys/)".format(signer, args.out, args.out))
    return 0


ACTIONS = {"verify": run_verify, "sign": run_sign, "keygen": run_keygen}


def run(args):
    from edge.errors import ConfigError

    action = ACTIONS.get(getattr(args, "bundle_command", None))
    if action is None:
        raise ConfigError("say what to do: `medkiosk bundle verify DIR...`, `medkiosk bundle sign DIR --key "
                          "KEY` or `medkiosk bundle keygen --out KEY`")
    return action(args)
