"""``medkiosk export ...``: ONNX bundles, backend comparison, TensorRT engines, verification.

Python 3.6 compatible and light at import: torch, onnx and tensorrt are imported inside the
handlers, so ``engine``, ``verify`` and ``engines`` run on a Jetson that has neither torch nor onnx.
"""

import argparse
import os
import sys

DEFAULT_CACHE_ENV = "MEDKIOSK_ENGINE_CACHE"
DEFAULT_CACHE = "/var/lib/medkiosk/engines"
PRECISIONS = ("fp16", "fp32", "int8")


def default_cache():
    return os.environ.get(DEFAULT_CACHE_ENV) or DEFAULT_CACHE


def _print(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_onnx(args):
    from export.onnx_export import export_bundle

    out = export_bundle(args.checkpoint, args.out, opset=args.opset, sample_images=args.samples,
                        module_id=args.module_id, title=args.title, version=args.version, fp16=args.fp16,
                        dynamic_batch=args.dynamic_batch, golden=not args.no_golden, key=args.key)
    from edge.bundle import load_bundle
    from edge.signing import UNCHECKED

    bundle = load_bundle(out, trust=UNCHECKED, require_golden=not args.no_golden)
    parity = bundle.manifest["export"]["parity"]
    _print("bundle {} written to {} (opset {}, {}, parity on {} images: max |dprob| {:.2g}, top-1 "
           "agreement {:.0%})".format(bundle.bundle_id, out, bundle.onnx_info.opset, parity["precision"],
                                      parity["images"], parity["max_abs_diff"], parity["top1_agreement"]))
    return 0


def cmd_compare(args):
    from export.compare import compare_backends, format_report

    report = compare_backends(args.model, args.images, precisions=args.precisions,
                              int8_tolerance=args.int8_tolerance, cache_dir=args.cache,
                              calib_dir=args.calib, limit=args.limit)
    _print(format_report(report))
    if args.json:
        from edge.bundle import write_json_atomic

        write_json_atomic(args.json, report)
        _print("results written to {}".format(args.json))
    return 0 if report["ok"] else 1


def cmd_engine(args):
    from export.engine.manage import ensure_engine

    result = ensure_engine(args.bundle, args.cache, precision=args.precision, calib_dir=args.calib,
                           workspace_mb=args.workspace_mb, force=args.force, log=_print)
    _print("{} engine {}: {}".format(result.precision, result.action, result.path))
    return 0


def cmd_verify(args):
    from export.engine.manage import verify_bundle

    report = verify_bundle(args.bundle, args.cache, precision=args.precision, allow_build=not args.no_build,
                           calib_dir=args.calib, log=_print)
    for line in report["lines"]:
        _print(line)
    _print("VERIFIED: this unit computes what the lab computed" if report["ok"] else
           "FAILED: this unit does NOT reproduce the lab's outputs; do not use this module")
    if args.json:
        from edge.bundle import write_json_atomic

        write_json_atomic(args.json, report)
    return 0 if report["ok"] else 1


def cmd_engines(args):
    from export.engine.manage import rebuild_engines

    summary = rebuild_engines(args.models, args.cache, precision=args.precision, log=_print,
                              verify=args.verify)
    _print("engines: {} up to date, {} built, {} failed{}".format(
        summary["fresh"], summary["built"], summary["failed"],
        ", {} verified on their golden images".format(summary["verified"]) if args.verify else ""))
    return 0 if summary["failed"] == 0 else 1


def _precisions(text):
    values = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in values if p not in PRECISIONS]
    if bad or not values:
        raise argparse.ArgumentTypeError("precisions must be a comma list of {}, got {!r}".format(
            ",".join(PRECISIONS), text))
    return values


def build_parser():
    parser = argparse.ArgumentParser(prog="medkiosk", description="Export and engine tools.")
    parser.set_defaults(print_help=parser.print_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    export = commands.add_parser("export", help="checkpoint -> ONNX bundle -> TensorRT engine",
                                 description="checkpoint -> ONNX bundle -> TensorRT engine; parity and "
                                             "verification")
    export.set_defaults(print_help=export.print_help)
    sub = export.add_subparsers(dest="export_command", metavar="SUBCOMMAND")

    p = sub.add_parser("onnx", help="export a training checkpoint to a model bundle (ONNX + manifest)")
    p.add_argument("checkpoint", help="checkpoint file written by `medkiosk train` (best.pt)")
    p.add_argument("--out", required=True, help="bundle folder to write (replaced if it is a bundle)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13: TensorRT 8.2's ceiling)")
    p.add_argument("--fp16", action="store_true", help="store FP16 weights (parity at 1e-2)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default: batch 1)")
    p.add_argument("--module-id", help="module id (default: from the checkpoint, else the folder name)")
    p.add_argument("--title", help="module title shown on the kiosk")
    p.add_argument("--version", default="1.0.0", help="bundle version (default 1.0.0)")
    p.add_argument("--samples", help="folder of images for the parity check and golden set "
                                     "(default: the checkpoint's validation split)")
    p.add_argument("--no-golden", action="store_true", help="do not store golden images in the bundle")
    p.add_argument("--key", help="maintainer's Ed25519 private key to sign the bundle with (default "
                                 "$MEDKIOSK_SIGNING_KEY; unsigned otherwise: see `medkiosk bundle sign`)")
    p.set_defaults(handler=cmd_onnx)

    p = sub.add_parser("compare", help="the same images through PyTorch, ONNX Runtime and TensorRT")
    p.add_argument("model", help="a checkpoint (.pt) or a bundle folder")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--precisions", type=_precisions, default=["fp32"],
                   help="comma list of fp32,fp16,int8 (default fp32)")
    p.add_argument("--int8-tolerance", type=float, default=None, help="max |dprob| for INT8 (default 0.05)")
    p.add_argument("--calib", help="calibration images for INT8 (TensorRT only)")
    p.add_argument("--cache", default=None, help="engine cache for TensorRT runs (default: a temporary "
                                                      "folder)")
    p.add_argument("--limit", type=int, default=200, help="at most this many images (default 200)")
    p.add_argument("--json", help="write the results as JSON here")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("engine", help="build (or find) the TensorRT engine of a bundle on this device")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--calib", help="folder of calibration images (INT8)")
    p.add_argument("--cache", default=default_cache(), help="engine cache folder (default %(default)s)")
    p.add_argument("--workspace-mb", type=int, default=512, help="builder workspace limit (default 512)")
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine exists")
    p.set_defaults(handler=cmd_engine)

    p = sub.add_parser("verify", help="run the bundle's golden images through TensorRT and compare")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--calib", help="folder of calibration images (INT8 builds)")
    p.add_argument("--cache", default=default_cache(), help="engine cache folder (default %(default)s)")
    p.add_argument("--no-build", action="store_true", help="fail instead of building a missing engine")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("engines", help="rebuild every missing or stale engine (medkiosk-engines.service)")
    p.add_argument("--models", required=True, help="folder of bundle folders")
    p.add_argument("--cache", default=default_cache(), help="engine cache folder (default %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--verify", action="store_true",
                   help="also run each bundle's golden images through its engine")
    p.set_defaults(handler=cmd_engines)
    return parser


def main(argv=None):
    """Entry for ``medkiosk export ...``; ``argv`` starts with "export"."""
    from edge.cli import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        args.print_help()
        return 2
    return run_guarded(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
