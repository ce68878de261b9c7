"""Pointing game: does the heatmap's peak fall inside the radiologist's box? (evaluation only)

For every image of ``bboxes.csv`` (columns ``image, finding, x, y, w, h``, pixels of the image as
stored, origin top-left) and every boxed finding that is one of the model's classes, the model's
class-activation map of that finding (``edge.heatmap``) is stretched over the whole image, as
``edge.preprocess`` stretches the image to the model input, and its peak pixel is a *hit* when it lies
inside any box of that finding on that image (edges included). One image-finding pair counts once.

Reported per finding and overall: hits / pairs with the Wilson 95% interval, and two baselines a
heatmap must beat to mean anything: the image centre as the "peak" (hit rate, Wilson interval) and
the mean fraction of the image the boxes cover (what a uniformly random point scores).

Usage: ``python -m training.pointing BUNDLE [--model other.onnx] [--data DIR] [--exclude-split SPLIT]
[--json OUT]``;
the bundle must have a heatmap output (``medkiosk export onnx ... --heatmap``).
"""

import argparse
import csv
import json
import os
import sys
from collections import OrderedDict

from edge.errors import ConfigError
from edge.heatmap import heatmap_peak
from edge.preprocess import load_image, preprocess
from training.metrics import wilson_interval

DEFAULT_DATA = os.path.join("..", "shared", "data", "chest-nih")
BOX_COLUMNS = ("image", "finding", "x", "y", "w", "h")


def read_boxes(path):
    """{(image, finding): [(x, y, w, h), ...]} from a bboxes.csv, in file order."""
    boxes = OrderedDict()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError("{}: columns {} missing (need {}). Fix: pass NIH's bboxes.csv as the "
                              "data README describes".format(path, missing, ", ".join(BOX_COLUMNS)))
        for row in reader:
            box = tuple(float(row[c]) for c in ("x", "y", "w", "h"))
            boxes.setdefault((row["image"], row["finding"]), []).append(box)
    return boxes


def inside(point, box):
    """Whether pixel ``point`` (x, y) lies in ``box`` (x, y, w, h), edges included."""
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def _rate(hits, total):
    low, high = wilson_interval(hits, total) if total else (None, None)
    return {"hits": hits, "pairs": total, "rate": hits / float(total) if total else None, "ci95": [low, high]}


def score_pairs(pairs):
    """Pairs of (finding, hit, centre_hit, box_fraction) -> the per-finding and overall report."""
    report = OrderedDict()
    groups = OrderedDict()
    for pair in pairs:
        groups.setdefault(pair[0], []).append(pair)
    groups["all"] = list(pairs)
    for finding, rows in groups.items():
        entry = _rate(sum(1 for r in rows if r[1]), len(rows))
        entry["centre_baseline"] = _rate(sum(1 for r in rows if r[2]), len(rows))
        entry["random_point_baseline"] = sum(r[3] for r in rows) / len(rows) if rows else None
        report[finding] = entry
    return report


def trained_on(split_path):
    """Image file names of a split file's ``train`` and ``val`` lists (what the model learnt from)."""
    with open(split_path, encoding="utf-8") as handle:
        split = json.load(handle)
    return {os.path.basename(entry["path"] if isinstance(entry, dict) else entry)
            for key in ("train", "val") for entry in split.get(key, [])}


def pointing_game(heatmap_of, classes, boxes, images_dir, exclude=()):
    """Run the game. ``heatmap_of(image_bgr)`` -> [K, h, w] maps in ``classes`` order; images named
    in ``exclude`` (e.g. ``trained_on(split)``) are left out and counted.

    Returns {"per_finding": report, "skipped_findings": {finding: pairs}, "images": n, "excluded": n}.
    """
    pairs, skipped, images, excluded = [], OrderedDict(), set(), set()
    cache = {}
    for (image_name, finding), finding_boxes in boxes.items():
        if image_name in exclude:
            excluded.add(image_name)
            continue
        if finding not in classes:
            skipped[finding] = skipped.get(finding, 0) + 1
            continue
        path = os.path.join(images_dir, image_name)
        if image_name not in cache:
            image = load_image(path)
            cache = {image_name: (image.shape[:2], heatmap_of(image))}  # one image at a time
        (height, width), maps = cache[image_name]
        images.add(image_name)
        peak = heatmap_peak(maps[classes.index(finding)], height, width)
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        covered = min(1.0, sum(w * h for _x, _y, w, h in finding_boxes) / float(width * height))
        pairs.append((finding, any(inside(peak, b) for b in finding_boxes),
                      any(inside(centre, b) for b in finding_boxes), covered))
    return {"per_finding": score_pairs(pairs), "skipped_findings": dict(skipped), "images": len(images),
            "excluded": len(excluded)}


def onnx_heatmaps(bundle, model_path=None):
    """``heatmap_of`` for a bundle (or another ONNX file with the same input, e.g. a grafted one)."""
    from edge.lazy import require

    ort = require("onnxruntime", "pip install onnxruntime")
    session = ort.InferenceSession(model_path or bundle.model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    output = (bundle.heatmap or {}).get("output", "heatmap")
    if output not in names:
        raise ConfigError("{} has no heatmap output (outputs: {}). Fix: re-export the bundle with "
                          "`medkiosk export onnx CHECKPOINT --out DIR --heatmap`".format(
                              model_path or bundle.model_path, ", ".join(names)))

    def heatmap_of(image):
        batch = preprocess(image, bundle.description.input)
        return session.run([output], {bundle.input_name: batch})[0][0]

    return heatmap_of


def format_report(result):
    lines = []
    for finding, entry in result["per_finding"].items():
        if not entry["pairs"]:
            continue
        lines.append("{}: {}/{} = {:.1%} (95% CI {:.1%}-{:.1%}); centre {:.1%}; random point {:.1%}".format(
            finding, entry["hits"], entry["pairs"], entry["rate"], entry["ci95"][0], entry["ci95"][1],
            entry["centre_baseline"]["rate"], entry["random_point_baseline"]))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.pointing", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", help="bundle folder whose model has a heatmap output")
    parser.add_argument("--model", help="evaluate this ONNX file instead of the bundle's (same input)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with bboxes.csv and images/")
    parser.add_argument("--exclude-split", metavar="SPLIT",
                        help="leave out this split file's train and val images (splits/chest.json)")
    parser.add_argument("--json", help="write the full result here")
    args = parser.parse_args(argv)
    from edge.bundle import load_lab_bundle
    from edge.errors import MedkioskError

    try:
        bundle = load_lab_bundle(args.bundle)
        exclude = trained_on(args.exclude_split) if args.exclude_split else ()
        result = pointing_game(onnx_heatmaps(bundle, args.model), bundle.description.classes,
                               read_boxes(os.path.join(args.data, "bboxes.csv")),
                               os.path.join(args.data, "images"), exclude)
    except (MedkioskError, OSError, ValueError, KeyError) as exc:
        print("medkiosk: pointing game: {}".format(exc))
        return 1
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    print("; ".join(format_report(result)) or "no boxed finding is one of the model's classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
