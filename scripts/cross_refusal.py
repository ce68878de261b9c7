"""Cross-module refusal, measured both ways: each group of images through each installed module.

For every (group, module): how many images the module's input check refuses (Wilson 95% CI), how many
of those ``edge.suggest`` offers to the other module, and the median cost of that suggestion (one more
inference, ONNX Runtime CPU, one thread). The numbers the model cards report (issue 13 item 3).

Usage: python scripts/cross_refusal.py [--models models] [--count 200] [--seed 0] [--json OUT]
Groups: adult = ../shared/data/chest-nih/images/*.png, child = ../shared/data/chest-pediatric/train/*/*.jpeg
(images the modules trained on are included: the own-group refusal rate is then optimistic).
"""

import argparse
import glob
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
GROUPS = {"adult": os.path.join("chest-nih", "images", "*.png"),
          "child": os.path.join("chest-pediatric", "train", "*", "*.jpeg")}
MODULES = ("chest", "pediatric-pneumonia")


def measure(classifiers, bundles, images, module):
    """{refused, suggested, ...} for ``images`` through ``module``, suggesting the other modules."""
    import numpy as np

    from edge.preprocess import load_image
    from edge.suggest import Candidate, suggest_module
    from training.metrics import wilson_interval

    classifier = classifiers[module]
    others = [Candidate(bundles[m], lambda m=m: classifiers[m]) for m in bundles if m != module]
    refused, suggested, extra = 0, {}, []
    for path in images:
        image = load_image(path)
        prepared = classifier.preparer(1)(image)
        prediction = classifier.infer_prepared(prepared)
        if prediction.out_of_scope:
            refused += 1
            start = time.perf_counter()
            found = suggest_module(prediction, image, bundles[module], others, prepared)
            extra.append(time.perf_counter() - start)
            suggested[found] = suggested.get(found, 0) + 1
    median_ms = 1000 * float(np.median(extra)) if extra else None
    return {"images": len(images), "refused": refused, "refused_ci95": wilson_interval(refused, len(images)),
            "suggested": suggested, "median_extra_ms_on_refusal": median_ms}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=os.path.join(ROOT, "models"))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from edge.bundle import load_lab_bundle
    from edge.classify import Classifier

    rng = random.Random(args.seed)
    groups = {name: rng.sample(sorted(glob.glob(os.path.join(SHARED, pattern))), args.count)
              for name, pattern in sorted(GROUPS.items())}
    bundles = {m: load_lab_bundle(os.path.join(args.models, m)) for m in MODULES}
    classifiers = {m: Classifier.open(b, backend="onnxruntime", precision="fp32", threads=1).__enter__()
                   for m, b in bundles.items()}
    result = {}
    for group, images in groups.items():
        for module in MODULES:
            result["{} on {}".format(group, module)] = entry = measure(classifiers, bundles, images, module)
            print("{} images on {}: {}".format(group, module, json.dumps(entry)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
