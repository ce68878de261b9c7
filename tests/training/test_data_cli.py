"""`medkiosk data ...` end to end in real subprocesses: synth -> split -> leakcheck -> augment."""

import json
import os
import re
import subprocess
import sys

import pytest

from training.splits import Split

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def medkiosk(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "edge"] + [str(a) for a in args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_data_cli_is_light_at_import():
    code = ("import sys, training.data_cli; heavy = [m for m in ('torch', 'torchvision', 'numpy', 'cv2') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    result = medkiosk("data", "synth", "--out", work / "data", "--classes", 3, "--per-class", 12,
                      "--size", 48)
    assert result.returncode == 0, result.stderr
    module = work / "shapes.json"
    module.write_text(json.dumps({"id": "shapes", "title": "Shapes", "augmentation": "skin", "image_size": 48,
                                  "classes": ["circle", "square", "triangle"]}))
    result = medkiosk("data", "split", "--module", module, "--data", work / "data",
                      "--out", work / "split.json", "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert "leak check passed" in result.stdout
    return work


def test_split_file(workspace):
    data = json.loads((workspace / "split.json").read_text())
    assert data["seed"] == 3 and data["meta"]["module"] == "shapes"
    assert sum(data["counts"][p]["images"] for p in ("train", "val", "test")) == 36
    again = medkiosk("data", "split", "--module", workspace / "shapes.json", "--data", workspace / "data",
                     "--out", workspace / "split2.json", "--seed", 3, "--no-leakcheck")
    assert again.returncode == 0, again.stderr
    assert (workspace / "split2.json").read_bytes() == (workspace / "split.json").read_bytes()


def test_leakcheck_passes_then_fails_on_planted_leak(workspace):
    ok = medkiosk("data", "leakcheck", workspace / "split.json")
    assert ok.returncode == 0 and "no leaks" in ok.stdout, ok.stderr
    data = json.loads((workspace / "split.json").read_text())
    data["val"].append(dict(data["train"][0]))  # the same image (and patient) in train and val
    leaky = workspace / "leaky.json"
    leaky.write_text(json.dumps(data))
    bad = medkiosk("data", "leakcheck", leaky)
    assert bad.returncode != 0
    assert "patient" in bad.stderr and data["train"][0]["path"].split("/")[-1] in bad.stderr
    assert "Traceback" not in bad.stderr


def test_augment_fills_train_classes_only(workspace):
    out = workspace / "augmented"
    result = medkiosk("data", "augment", "--split", workspace / "split.json", "--out", out, "--per-class", 20)
    assert result.returncode == 0, result.stderr
    train = Split.from_file(str(workspace / "split.json")).train
    train_sources = {sample.path for sample in train}
    manifest = json.loads((out / "augment.json").read_text())
    assert {f["source"] for f in manifest["files"]} <= train_sources
    for cls in ("circle", "square", "triangle"):
        names = sorted(os.listdir(str(out / cls)))
        assert len(names) == 20
        originals = [n for n in names if re.fullmatch(r"\d{3}\.png", n)]
        assert set(originals) == {os.path.basename(s.path) for s in train if list(s.labels) == [cls]}
        augmented = [n for n in names if n not in originals]
        assert augmented and all(re.search(r"_(rot-?\d+|flipH|flipV|scale[\d.]+|bright[\d.]+|contrast[\d.]+|"
                                           r"sat[\d.]+)", n) for n in augmented)
        assert len(originals) == manifest["per_class"][cls]["originals"]
    # No val/test image was copied: the per-class originals are exactly the train ones.
    assert sum(v["originals"] for v in manifest["per_class"].values()) == len(train)


def test_errors_are_one_line(workspace):
    result = medkiosk("data", "split", "--module", "nonexistent", "--data", workspace / "data", "--out",
                      workspace / "x.json")
    assert result.returncode == 2 and "unknown module" in result.stderr and "Traceback" not in result.stderr
    result = medkiosk("data")
    assert result.returncode != 0
