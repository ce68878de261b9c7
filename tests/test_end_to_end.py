"""The foundation slice end to end: synthetic images -> training -> ONNX bundle -> `medkiosk classify`.

The `test_artifacts` fixture really trains (EfficientNet-Lite0 from its offline ImageNet weights)
and really exports; here the bundle is judged on the run's held-out test split through the CLI a
user would call, in a subprocess.
"""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from training.splits import Split


def _classify_json(bundle, images):
    command = [sys.executable, "-m", "edge", "classify", "--json", "--backend", "onnxruntime",
               "--bundle", bundle] + list(images)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode())


def test_held_out_synthetic_split_is_classified_at_least_90_percent(test_artifacts):
    split = Split.from_file(os.path.join(test_artifacts.root, "run", "split.json"))
    assert len(split.test) >= 20
    paths = [sample.path for sample in split.test]
    report = _classify_json(test_artifacts.bundle, paths)
    assert len(report["images"]) == len(paths)
    correct = 0
    for sample, result in zip(split.test, report["images"]):
        probabilities = result["probabilities"]
        assert abs(sum(probabilities.values()) - 1.0) < 1e-4  # every class, softmax inside the graph
        assert len(result["top3"]) == 3
        correct += result["top3"][0]["name"] == sample.labels[0]
    assert correct / float(len(paths)) >= 0.9, "held-out accuracy {}/{}".format(correct, len(paths))


def test_held_out_images_were_not_trained_on(test_artifacts):
    with open(os.path.join(test_artifacts.root, "run", "split.json")) as handle:
        split = json.load(handle)
    train = {item["path"] for item in split["train"]} | {item["path"] for item in split["val"]}
    assert not train & {item["path"] for item in split["test"]}
