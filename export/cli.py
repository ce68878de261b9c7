"""``medkiosk export ...``: ONNX bundles, backend comparison, TensorRT engines, verification.

The workstation commands (``onnx``, ``compare``) are here; the device commands (``engine``,
``verify``, ``engines``) come from ``edge.commands.engines``, which ``medkiosk`` runs directly on a
Jetson without importing this package. Light at import: torch and onnx are imported inside the
handlers.
"""

import argparse
import sys

from edge.cliutil import dispatch, print_line
from edge.commands.engines import EXPORT_DESCRIPTION, EXPORT_HELP, add_subcommands
from edge.config import PRECISIONS


def cmd_onnx(args):
    from export.onnx_export import export_bundle

    out = export_bundle(args.checkpoint, args.out, opset=args.opset, sample_images=args.samples,
                        module_id=args.module_id, title=args.title, version=args.version, fp16=args.fp16,
                        dynamic_batch=args.dynamic_batch, golden=not args.no_golden, key=args.key,
                        heatmap=args.heatmap)
    from edge.bundle import load_bundle
    from edge.signing import UNCHECKED

    bundle = load_bundle(out, trust=UNCHECKED, require_golden=not args.no_golden)
    parity = bundle.manifest["export"]["parity"]
    print_line("bundle {} written to {} (opset {}, {}, parity on {} images: max |dprob| {:.2g}, top-1 "
           "agreement {:.0%}{})".format(bundle.bundle_id, out, bundle.onnx_info.opset, parity["precision"],
                                        parity["images"], parity["max_abs_diff"], parity["top1_agreement"],
                                        ", heatmap {}x{}".format(*bundle.heatmap["shape"][1:])
                                        if bundle.heatmap else ""))
    return 0


def cmd_compare(args):
    from export.compare import compare_backends, format_report

    report = compare_backends(args.model, args.images, precisions=args.precisions,
                              int8_tolerance=args.int8_tolerance, cache_dir=args.cache,
                              calib_dir=args.calib, limit=args.limit)
    print_line(format_report(report))
    if args.json:
        from edge.bundle import write_json_atomic

        write_json_atomic(args.json, report)
        print_line("results written to {}".format(args.json))
    return 0 if report["ok"] else 1


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
    export = commands.add_parser("export", help=EXPORT_HELP, description=EXPORT_DESCRIPTION)
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
    p.add_argument("--heatmap", action="store_true", help="add a class-activation map output `heatmap` "
                                                          "[N, classes, h, w] (H key, referral sheet)")
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

    add_subcommands(sub)
    return parser


def main(argv=None):
    """Entry for ``medkiosk export ...``; ``argv`` starts with "export"."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
