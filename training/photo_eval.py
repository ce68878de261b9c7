"""Score bundles on photographed X-rays through the real camera path, beside the same images as files.

For each bundle, every image of its module's TEST split (``splits/<module>.json``; never trained
on) is classified twice with ``edge.classify.Classifier`` -- the one path the kiosk and
``medkiosk classify`` use -- once as the file and once as a 1280x720 camera frame rendered by
``training.photograph`` (film and monitor scenes alternate, seeded). Reported, with 95% CIs:

* refused as out of scope ("Not a chest X-ray"), files vs frames (Wilson interval);
* AUROC per class, files vs frames, and the paired difference (bootstrap over images);
* localisation IoU against the rendered quadrilateral (mean; share >= 0.9 with a Wilson interval);
* non-X-ray camera frames refused: scikit-image's real photographs and generated scenes (faces and
  hands from the skin-photo generator, walls, documents, an empty lightbox, a blank monitor), each
  as a full frame and photographed on a lightbox.

``python -m training.photo_eval --bundles models/chest models/pediatric-pneumonia --out DIR
--doc docs/models/photographed.md`` writes ``DIR/<module>.json`` and the Markdown report.
"""

import argparse
import json
import os
import sys

import cv2
import numpy as np

from edge.errors import ConfigError, MedkioskError
from training.metrics import PAIRED_RESAMPLES, paired_auroc_table, wilson_interval

BOOTSTRAP = PAIRED_RESAMPLES


def wilson(successes, total):
    """(rate, low, high) of a proportion with its 95% Wilson score interval (``training.metrics``)."""
    if total == 0:
        return None, None, None
    low, high = wilson_interval(successes, total)
    return successes / float(total), low, high


def auroc_table(classes, labels, files, frames, seed=0):
    """Per class: AUROC of files and frames and of frames - files, each with a paired bootstrap 95% CI
    (``training.metrics.paired_auroc_table``, BOOTSTRAP draws)."""
    return paired_auroc_table(classes, labels, files, frames, seed=seed, draws=BOOTSTRAP)


def rate_of(flags):
    """{"rate", "ci95" (Wilson), "count", "of"} of a list of booleans."""
    rate, low, high = wilson(int(sum(flags)), len(flags))
    return {"rate": None if rate is None else round(rate, 4), "ci95": [round(low, 4), round(high, 4)]
            if rate is not None else None, "count": int(sum(flags)), "of": len(flags)}


def _probabilities(prediction):
    return np.asarray(prediction.probabilities, dtype=np.float64)


def score_test_split(classifier, split, seed=0, limit=None):
    """Files vs photographed frames for the test split; returns the result dict."""
    from edge.locate import quad_iou
    from edge.preprocess import load_image
    from training.data import strided
    from training.photograph import SCENES, photograph_file

    rows = []
    # ``limit``: that many images evenly spaced through the split (every class), each rendered as in
    # the full run (its frame index is its position in the split).
    for index in strided(range(len(split.test)), limit):
        sample = split.test[index]
        scene = SCENES[index % len(SCENES)]
        file_prediction = classifier.classify(load_image(sample.path))
        photo = photograph_file(sample.path, seed, index, scene)
        frame_prediction = classifier.classify(photo.frame)
        loc = frame_prediction.localisation
        rows.append({"labels": list(sample.labels), "scene": scene, "file": file_prediction,
                     "frame": frame_prediction, "found": loc.found, "method": loc.method,
                     "iou": quad_iou(loc.quad, photo.quad) if loc.found else 0.0})
    return _summarise(classifier.bundle, rows, seed)


def _summarise(bundle, rows, seed):
    classes = bundle.description.classes
    files = np.stack([_probabilities(r["file"]) for r in rows])
    frames = np.stack([_probabilities(r["frame"]) for r in rows])
    ious = np.array([r["iou"] for r in rows])
    threshold = float((bundle.description.input_check or {}).get("threshold", float("nan")))
    result = {"bundle": bundle.bundle_id, "module": bundle.module_id, "images": len(rows), "seed": seed,
              "refused_files": rate_of([r["file"].out_of_scope for r in rows]),
              "refused_frames": rate_of([r["frame"].out_of_scope for r in rows]),
              "quality_flagged_files": rate_of([not r["file"].quality.ok for r in rows]),
              "quality_flagged_frames": rate_of([not r["frame"].quality.ok for r in rows]),
              "auroc": auroc_table(classes, [r["labels"] for r in rows], files, frames, seed=seed),
              "iou": {"mean": round(float(ious.mean()), 4), "median": round(float(np.median(ious)), 4),
                      "min": round(float(ious.min()), 4), "at_least_0_9": rate_of(list(ious >= 0.9))},
              "found": rate_of([r["found"] for r in rows]),
              "ood_threshold": threshold}
    scores = [(r["file"].ood_score, r["frame"].ood_score) for r in rows if r["file"].ood_score is not None]
    if scores:
        file_ood, frame_ood = np.array(scores).T
        result["ood_score_median"] = {"files": round(float(np.median(file_ood)), 4),
                                      "frames": round(float(np.median(frame_ood)), 4)}
    result["per_scene"] = {}
    for scene in sorted({r["scene"] for r in rows}):
        part = [r for r in rows if r["scene"] == scene]
        result["per_scene"][scene] = {"refused": rate_of([r["frame"].out_of_scope for r in part]),
                                      "iou_mean": round(float(np.mean([r["iou"] for r in part])), 4)}
    return result


def _documents(rng):
    page = np.full((720, 1280, 3), 245, np.uint8)
    for line in range(14):
        words = " ".join("".join(chr(97 + rng.randint(26)) for _ in range(rng.randint(2, 9)))
                         for _ in range(10))
        cv2.putText(page, words, (60, 60 + 45 * line), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (30, 30, 30), 2)
    return page


def _wall(rng):
    base = rng.uniform(90, 220, size=3)
    ys, xs = np.mgrid[0:720, 0:1280].astype(np.float32)
    light = 0.85 + 0.15 * xs / 1280.0
    noise = cv2.GaussianBlur(rng.normal(0, 8, (720, 1280)).astype(np.float32), (0, 0), 3)
    return np.clip((light[..., None] * base[None, None, :]) + noise[..., None], 0, 255).astype(np.uint8)


def _empty_lightbox(rng):
    ys, xs = np.mgrid[0:720, 0:1280].astype(np.float32)
    light = rng.uniform(215, 250) * (0.85 + 0.15 * ys / 720.0)
    return np.clip(np.dstack([light * 0.97, light, light * 1.02]), 0, 255).astype(np.uint8)


def _blank_monitor(rng):
    frame = np.full((720, 1280, 3), int(rng.uniform(8, 22)), np.uint8)
    level = rng.uniform(40, 220)
    cv2.rectangle(frame, (220, 90), (1060, 630), (level * 1.05, level, level * 0.95), -1)
    return frame


def _skin_scenes(seed, count):
    """Faces/hands stand-ins: the project's generated skin photos (``medkiosk data synth --kind skin``)."""
    import tempfile

    from training import synth

    folder = tempfile.mkdtemp(prefix="photo-eval-skin-")
    synth.generate_skin_like(folder, count, size=224, seed=seed, classes=["nevus"])
    paths = sorted(os.path.join(root, name) for root, _dirs, names in os.walk(folder) for name in names)
    return [("generated-skin", cv2.imread(path)) for path in paths[:count]]


SKIMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "text", "page", "brick", "grass",
                 "gravel", "moon", "hubble_deep_field", "immunohistochemistry", "retina", "cat", "colorwheel",
                 "logo", "horse", "clock", "coins")


def _skimage_bgr(name):
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(1.0, float(image.max())))).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def generated_scenes(seed=0, copies=3, skin=6):
    """[(kind, BGR image)]: generated documents, walls, empty lightboxes, blank monitors, skin photos.
    Seed 0 is the evaluation set; training (the input check's negatives) uses another seed."""
    rng = np.random.RandomState(seed)
    images = []
    for maker in (_documents, _wall, _empty_lightbox, _blank_monitor):
        for _copy in range(copies):
            images.append(("generated-" + maker.__name__.strip("_").replace("_", "-"), maker(rng)))
    return images + _skin_scenes(seed, skin)


def non_xray_images(seed=0):
    """[(kind, BGR image)]: scikit-image's real photographs and generated non-X-ray scenes."""
    return [("skimage-" + name, _skimage_bgr(name)) for name in SKIMAGE_NAMES] + generated_scenes(seed)


def score_non_xrays(classifier, seed=0):
    """Each non-X-ray image as a full camera frame and photographed on a lightbox: refused?"""
    from training.photograph import photograph

    rows = []
    for index, (kind, image) in enumerate(non_xray_images(seed)):
        full = cv2.resize(image, (1280, 720), interpolation=cv2.INTER_AREA)
        on_film = photograph(image, np.random.RandomState([seed, index]), "film").frame
        for variant, frame in (("frame", full), ("on-lightbox", on_film)):
            prediction = classifier.classify(frame)
            rows.append({"kind": kind, "variant": variant, "refused": prediction.out_of_scope,
                         "no_result": prediction.out_of_scope or not prediction.quality.ok,
                         "method": prediction.localisation.method})
    return {"refused": rate_of([r["refused"] for r in rows]),
            "no_result_shown": rate_of([r["no_result"] for r in rows]),
            "accepted": sorted("{} ({}, {})".format(r["kind"], r["variant"], r["method"])
                               for r in rows if not r["refused"])}


def evaluate_bundle(bundle_dir, split_path=None, seed=0, limit=None):
    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from edge.quality import QualityThresholds
    from training.splits import Split

    bundle = load_bundle(bundle_dir)
    split_path = split_path or os.path.join("splits", bundle.module_id + ".json")
    split = Split.from_file(split_path)
    runner = open_runner(bundle, backend="onnxruntime", precision="fp32")
    with Classifier(runner, quality_thresholds=QualityThresholds()) as classifier:
        result = score_test_split(classifier, split, seed=seed, limit=limit)
        result["non_xray"] = score_non_xrays(classifier, seed=seed)
    result["split"] = split_path
    return result


def _pct(entry):
    if entry["rate"] is None:
        return "n/a"
    return "{:.1f}% [{:.1f}, {:.1f}] ({}/{})".format(100 * entry["rate"], 100 * entry["ci95"][0],
                                                     100 * entry["ci95"][1], entry["count"], entry["of"])


def _ci(values):
    return "{:.3f} [{:.3f}, {:.3f}]".format(*values)


def cross_validated(doc, module):
    """The module's cross-validated camera-path table (``<doc folder>/<module>/camera-cv.md``, written by
    ``python -m recipes.camera_cli --report``), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(doc)), module, "camera-cv.md")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def markdown(results, extra=None):
    """The report ``docs/models/photographed.md`` from the per-module results; ``extra``: {module:
    Markdown of its cross-validated camera path}, shown under the module's section."""
    extra = extra or {}
    lines = ["# Photographed X-rays: the camera path, measured", "",
             "Made by `python -m training.photo_eval` (training/photo_eval.py). Each module's TEST split",
             "is classified as files and as 1280x720 camera frames rendered by `training/photograph.py`",
             "(film on a lightbox and monitor scenes alternate; seeded), through",
             "`edge.classify.Classifier` -- the path of the kiosk and `medkiosk classify` (localisation,",
             "crop normalisation, quality gate).",
             "95% intervals: Wilson for rates, bootstrap over images (1000 draws) for AUROC. AUROC uses",
             "every image's probabilities, refused ones included.",
             "Phase 2: bundles retrained with photographed TRAIN/VAL crops (`training/photo_crops.py`, seed",
             "1000; the device's own `edge.locate` + `normalise_crop`) and the input check refitted on files",
             "+ crops with the other patient group and generated non-X-rays as negatives (`recipes/`).",
             "A module scored on fewer images than its test split used `--limit` (evenly spaced images,",
             "each rendered exactly as in the full run).", ""]
    for result in results:
        title = "## `{}` ({} test images, seed {})".format(result["module"], result["images"], result["seed"])
        lines += [title,
                  "", "| | as files | as camera frames | goal |", "|---|---|---|---|",
                  "| refused as out of scope | {} | {} | <= 5% |".format(
                      _pct(result["refused_files"]), _pct(result["refused_frames"])),
                  "| image-quality warning | {} | {} | |".format(
                      _pct(result["quality_flagged_files"]), _pct(result["quality_flagged_frames"]))]
        if "ood_score_median" in result:
            lines.append("| median input-check score (refused above {}) | {} | {} | |".format(
                result["ood_threshold"], result["ood_score_median"]["files"],
                result["ood_score_median"]["frames"]))
        lines += ["", "| class (positives) | AUROC files | AUROC frames | frames - files | goal |",
                  "|---|---|---|---|---|"]
        for name, row in sorted(result["auroc"].items()):  # sorted: the same order as from the JSON
            lines.append("| {} ({}) | {} | {} | {} | within 0.03 |".format(
                name, row["positives"], _ci(row["files"]), _ci(row["frames"]), _ci(row["difference"])))
        iou = result["iou"]
        lines += ["", "Localisation: found {}; IoU mean {:.3f}, median {:.3f}, min {:.3f}; IoU >= 0.9: {} "
                  "(goal >= 0.9 IoU).".format(_pct(result["found"]), iou["mean"], iou["median"], iou["min"],
                                              _pct(iou["at_least_0_9"])), ""]
        for scene, part in result["per_scene"].items():
            lines.append("- {}: refused {}, mean IoU {:.3f}".format(scene, _pct(part["refused"]),
                                                                   part["iou_mean"]))
        non = result["non_xray"]
        lines += ["", "Non-X-ray camera frames refused as out of scope: {} (goal >= 95%); no result shown "
                  "(refused or quality warning): {}.".format(_pct(non["refused"]),
                                                             _pct(non["no_result_shown"])),
                  "Accepted: {}.".format(", ".join(non["accepted"]) or "none"), ""]
        if extra.get(result["module"]):
            title = "### `{}`: the camera path cross-validated over all its images".format(result["module"])
            lines += [title, "", extra[result["module"]], ""]
    lines += ["## Rules", "",
              "- The photographed TEST frames scored here are never trained or fitted on (training renders",
              "  TRAIN/VAL images only, with other seeds).",
              "- The non-X-ray set's generated scenes use seed 0; the input check was fitted on seed 1's,",
              "  and never on scikit-image's photographs.", ""]
    return "\n".join(lines) + "\n"


def _scored(bundle_dir, args):
    """The result for one bundle: scored now, or read from --out with --report-only."""
    if args.report_only:
        from edge.bundle import load_bundle

        path = os.path.join(args.out, load_bundle(bundle_dir).module_id + ".json")
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except OSError as exc:
            raise ConfigError("{}: cannot be read ({}). Fix: run without --report-only first".format(
                path, exc.strerror)) from exc
    result = evaluate_bundle(bundle_dir, seed=args.seed, limit=args.limit)
    with open(os.path.join(args.out, result["module"] + ".json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.photo_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", nargs="+", required=True, metavar="DIR")
    parser.add_argument("--out", required=True, help="folder for <module>.json")
    parser.add_argument("--doc", help="write the Markdown report here (e.g. docs/models/photographed.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int,
                        help="N test images evenly spaced through the split (same frames as the full run)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not score: rewrite --doc from the <module>.json already in --out")
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
        results = [_scored(bundle_dir, args) for bundle_dir in args.bundles]
        if args.doc:
            with open(args.doc, "w", encoding="utf-8") as handle:
                handle.write(markdown(results, {r["module"]: cross_validated(args.doc, r["module"])
                                                for r in results}))
    except (MedkioskError, ConfigError) as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    print("scored {} bundle(s); results in {}{}".format(len(results), args.out,
                                                      "; report " + args.doc if args.doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
