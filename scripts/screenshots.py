"""The kiosk screen in each shipped language, for docs/screenshots/ (`python scripts/screenshots.py`).

A real chest X-ray from ../shared/data through the shipped chest bundle (ONNX Runtime), drawn by
edge.overlay.draw_overlay at the 7-inch panel's 800x480 in English, Hindi and Bengali.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_IMAGE = os.path.join(ROOT, "..", "shared", "data", "chest-nih", "images", "00001697_011.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--bundle", default=os.path.join(ROOT, "models", "chest"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "screenshots"))
    parser.add_argument("--size", default="800x480")
    args = parser.parse_args(argv)
    import cv2

    from edge.backends import open_runner
    from edge.bundle import load_bundle
    from edge.classify import Classifier
    from edge.i18n import LANGUAGE_NAMES, installed_languages
    from edge.overlay import OverlayState, draw_overlay
    from edge.preprocess import read_image
    from edge.quality import QualityThresholds
    from edge.text import start

    bundle = load_bundle(args.bundle)
    runner = open_runner(bundle, backend="onnxruntime", precision="fp32")
    with Classifier(runner, quality_thresholds=QualityThresholds()) as classifier:
        image = read_image(args.image).image
        prediction = classifier.classify(image)
    width, height = (int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    for language in installed_languages():
        start(language)
        state = OverlayState(module_title=bundle.title, size=(width, height), frozen=True)
        canvas = draw_overlay(image, prediction, state)
        path = os.path.join(args.out, "kiosk-{}.png".format(language))
        cv2.imwrite(path, canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print("{}: {} ({})".format(path, LANGUAGE_NAMES.get(language, language), ", ".join(
            "{} {:.0%}".format(name, p) for name, p in prediction.top3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
