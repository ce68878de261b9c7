"""`medkiosk classify IMG... --bundle DIR`: top-3 per image, or every probability with --json.

A file that is missing, unreadable, truncated, not an image, not a regular file (a pipe, a device),
too large, or over the pixel limit gets one error line; the others are still classified and the
exit code is 1. File names are escaped (``edge.console.printable``) in every line printed.
"""

import json
import os
import sys

BACKEND_HELP = "inference backend (default auto: TensorRT when it works, else ONNX Runtime)"


def add_backend_arguments(parser):
    """--backend/--precision/--engine-cache, shared with `bundle verify` and `selftest`."""
    from edge.backends import BACKEND_CHOICES
    from edge.backends.base import PRECISIONS

    parser.add_argument("--backend", choices=BACKEND_CHOICES, default=None, help=BACKEND_HELP)
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="precision asked of the backend (default fp16; a backend that cannot honour "
                             "it says so)")
    parser.add_argument("--engine-cache", default=None, metavar="DIR",
                        help="folder of TensorRT engines built on this device")


def add_arguments(parser):
    parser.add_argument("images", nargs="+", metavar="IMG",
                        help="image files or folders (folders: every image file in them)")
    parser.add_argument("--bundle", required=True, metavar="DIR", help="model bundle folder")
    parser.add_argument("--json", action="store_true", help="print one JSON document with every probability")
    parser.add_argument("--modules", metavar="DIR", default=None,
                        help="installed bundles offered when the input check refuses an image (default: the "
                             "folder holding --bundle); see edge.suggest")
    add_backend_arguments(parser)


def expand_inputs(arguments):
    """Files and folders -> [(path, error or None)]; a folder yields its image files, sorted."""
    from edge.console import printable
    from edge.preprocess import is_image_file

    items = []
    for argument in arguments:
        if os.path.isdir(argument):
            names = sorted(n for n in os.listdir(argument)
                           if not n.startswith(".") and is_image_file(n)
                           and not os.path.isdir(os.path.join(argument, n)))
            if not names:
                items.append((argument, "{}: folder has no image files".format(printable(argument))))
            items.extend((os.path.join(argument, n), None) for n in names)
        else:
            items.append((argument, None))
    return items


def format_prediction(path, prediction):
    """Human-readable lines for one image."""
    from edge.classify import DISCLAIMER
    from edge.console import printable

    lines = [printable(path)]
    if prediction.out_of_scope:
        lines.extend("  " + note for note in prediction.notes()[:2 if prediction.suggested_module else 1])
    else:
        width = max(len(name) for name, _p in prediction.top3)
        for rank, (name, probability) in enumerate(prediction.top3, 1):
            lines.append("  {}. {:<{}}  {:>6}".format(rank, name, width,
                                                      prediction.value_text(probability, "{:.1%}")))
        if prediction.task == "multilabel":
            lines.append("  (per-finding probabilities; present: {})".format(
                ", ".join(prediction.present) or "none"))
        lines.extend("  ! " + note for note in prediction.notes())
    lines.append("  " + DISCLAIMER)
    return lines


class OtherModules(object):
    """The other usable bundles under ``models_dir`` as edge.suggest Candidates, found on first use."""

    def __init__(self, models_dir, bundle, args):
        self.models_dir, self.bundle, self.args = models_dir, bundle, args
        self._candidates = None

    def candidates(self):
        if self._candidates is None:
            from edge.classify import Classifier
            from edge.kiosk.modules import discover_modules
            from edge.suggest import Candidate

            args = self.args
            slots, _start = discover_modules(self.models_dir, [])
            self._candidates = [Candidate(slot.bundle, lambda b=slot.bundle: Classifier.open(
                b, backend=args.backend or "auto", precision=args.precision or "fp16",
                engine_cache=args.engine_cache).__enter__())
                for slot in slots if slot.usable and slot.module_id != self.bundle.module_id]
        return self._candidates

    def close(self):
        for candidate in self._candidates or []:
            candidate.close()


def classify_one(classifier, image, others):
    """Classify; on refusal, name another module whose input check accepts the image."""
    from edge.suggest import suggest_module

    prepared = classifier.preparer(depth=1)(image)
    prediction = classifier.infer_prepared(prepared)
    if prediction.out_of_scope:
        suggest_module(prediction, image, classifier.bundle, others.candidates(), prepared)
    return prediction


def run(args):
    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.classify import DISCLAIMER, Classifier
    from edge.console import echo, printable, quiet_opencv, warn
    from edge.errors import ImageError
    from edge.preprocess import read_image
    from edge.quality import QualityThresholds

    quiet_opencv()
    bundle = load_bundle(args.bundle)
    items = expand_inputs(args.images)
    runner = open_runner(bundle, backend=args.backend or "auto", precision=args.precision or "fp16",
                         engine_cache=args.engine_cache)
    results, failures = [], 0
    others = OtherModules(args.modules or os.path.dirname(os.path.abspath(args.bundle)), bundle, args)
    try:
        with Classifier(runner, quality_thresholds=QualityThresholds()) as classifier:
            for note in runner.notices():
                warn("note: " + note)
            for path, error in items:
                if error is None:
                    try:
                        loaded = read_image(path)
                        prediction = classify_one(classifier, loaded.image, others)
                    except ImageError as exc:
                        error = str(exc)
                    else:
                        for note in loaded.notes:
                            warn("note: {}: {}".format(printable(path), note))
                if error is not None:
                    failures += 1
                    warn("error: " + error)
                    results.append({"path": path, "error": error})
                    continue
                if args.json:
                    entry = {"path": path}
                    entry.update(prediction.to_dict())
                    results.append(entry)
                else:
                    for line in format_prediction(path, prediction):
                        echo(line)
    finally:
        others.close()
    if args.json:
        document = {"bundle_id": bundle.bundle_id, "module": bundle.module_id, "title": bundle.title,
                    "backend": runner.describe(), "notices": runner.notices(), "disclaimer": DISCLAIMER,
                    "images": results, "errors": failures}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    if failures:
        warn("{} of {} images could not be classified".format(failures, len(items)))
    return 1 if failures else 0
