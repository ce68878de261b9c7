"""training.synth: deterministic, learnable-looking synthetic images, skin-like photos, videos."""

import glob
import hashlib
import os

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from training.synth import class_names, generate_dataset, generate_skin_like, generate_video


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _digests(root):
    return {os.path.relpath(p, root): hashlib.sha256(_read(p)).hexdigest()
            for p in sorted(glob.glob(os.path.join(root, "*", "*.png")))}


def test_dataset_layout_and_determinism(tmp_path):
    names = generate_dataset(str(tmp_path / "a"), num_classes=4, per_class=5, size=64, seed=3)
    generate_dataset(str(tmp_path / "b"), num_classes=4, per_class=5, size=64, seed=3)
    generate_dataset(str(tmp_path / "c"), num_classes=4, per_class=5, size=64, seed=4)
    assert names == class_names(4) and len(set(names)) == 4
    first, second, other = (_digests(str(tmp_path / name)) for name in "abc")
    assert sorted(first) == sorted("{}/{:03d}.png".format(n, i) for n in names for i in range(5))
    assert first == second
    assert set(first.values()).isdisjoint(other.values())
    image = cv2.imread(str(tmp_path / "a" / names[0] / "000.png"))
    assert image.shape == (64, 64, 3)


def test_dataset_is_learnable_but_not_trivial(tmp_path):
    """A nearest-centroid classifier on tiny colour thumbnails separates held-out images well,
    while images of one class still vary (position/scale/background)."""
    names = generate_dataset(str(tmp_path), num_classes=4, per_class=30, size=64, seed=0)

    def features(path):
        image = cv2.imread(path)
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        saturated = hsv[..., 1] > 120
        hist = np.bincount(hsv[..., 0][saturated] // 6, minlength=30).astype(np.float64)
        return hist / max(1.0, hist.sum())

    train, test = {}, []
    for index, name in enumerate(names):
        paths = sorted(glob.glob(str(tmp_path / name / "*.png")))
        train[index] = np.mean([features(p) for p in paths[:20]], axis=0)
        test.extend((features(p), index) for p in paths[20:])
    correct = sum(int(np.argmin([np.abs(f - train[c]).sum() for c in train]) == label) for f, label in test)
    assert correct / len(test) >= 0.9
    same_class = [cv2.imread(p).astype(np.float32)
                  for p in sorted(glob.glob(str(tmp_path / names[0] / "*.png")))]
    assert np.mean(np.abs(same_class[0] - same_class[1])) > 5.0


def test_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        generate_dataset(str(tmp_path), num_classes=1)
    with pytest.raises(ConfigError):
        generate_dataset(str(tmp_path), num_classes=99)
    with pytest.raises(ConfigError):
        generate_dataset(str(tmp_path), per_class=0)


def test_skin_like_images(tmp_path):
    paths = generate_skin_like(str(tmp_path / "flat"), 3, size=128, seed=1)
    assert len(paths) == 3 and all(os.path.isfile(p) for p in paths)
    again = generate_skin_like(str(tmp_path / "again"), 3, size=128, seed=1)
    assert [_read(p) for p in paths] == [_read(p) for p in again]
    for path in paths:
        image = cv2.imread(path)
        assert image.shape == (128, 128, 3)
        b, g, r = (float(image[..., c].mean()) for c in range(3))
        assert r > b  # skin tones are red-leaning, unlike a grey X-ray
        assert image.std() > 5  # texture and a lesion, not a flat colour
    per_class = generate_skin_like(str(tmp_path / "classes"), 2, size=64, classes=["Acne", "Warts"])
    assert len(per_class) == 4
    assert sorted(os.listdir(str(tmp_path / "classes"))) == ["Acne", "Warts"]


def test_video_reads_back(tmp_path):
    images = generate_skin_like(str(tmp_path / "imgs"), 2, size=64)
    path = generate_video(str(tmp_path / "clip.avi"), 12, size=(160, 120), fps=10, images=images)
    capture = cv2.VideoCapture(path)
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (120, 160, 3)
        frames += 1
    capture.release()
    assert frames == 12
    with pytest.raises(ConfigError):
        generate_video(str(tmp_path / "clip.mkv"), 3)
