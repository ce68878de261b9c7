"""training.photograph: camera frames of real X-rays, deterministic for a seed, with ground-truth
outlines that edge.locate finds (IoU >= 0.9), and the `medkiosk data photograph` command."""

import glob
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.locate import locate, quad_iou
from training.photograph import FRAME_SIZE, HEIGHT_RANGE, SCENES, photograph_file, read_index

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data")


def _xrays(count):
    adult = sorted(glob.glob(os.path.join(SHARED, "chest-nih", "images", "*.png")))[:count]
    child = sorted(glob.glob(os.path.join(SHARED, "chest-pediatric", "train", "*", "*.jpeg")))[::400][:count]
    if not adult or not child:
        pytest.skip("../shared/data is not beside this checkout")
    return adult + child


def test_same_seed_same_bytes_other_seed_other_frame():
    path = _xrays(1)[0]
    first, again = photograph_file(path, 7, 3), photograph_file(path, 7, 3)
    assert first.jpeg == again.jpeg and np.array_equal(first.quad, again.quad)
    assert photograph_file(path, 8, 3).jpeg != first.jpeg
    assert first.frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)


def test_outline_geometry_is_within_the_brief():
    for index, path in enumerate(_xrays(6)):
        photo = photograph_file(path, 0, index)
        quad = photo.quad
        height = (np.hypot(*(quad[3] - quad[0])) + np.hypot(*(quad[2] - quad[1]))) / 2.0
        assert HEIGHT_RANGE[0] * 0.95 <= height / FRAME_SIZE[1] <= HEIGHT_RANGE[1] * 1.05
        assert abs(photo.params["tilt_deg"]) <= 6.0
        assert 60 <= photo.params["jpeg_quality"] <= 90
        assert quad[:, 0].min() > 0 and quad[:, 1].min() > 0
        assert quad[:, 0].max() < FRAME_SIZE[0] and quad[:, 1].max() < FRAME_SIZE[1]


@pytest.mark.parametrize("scene", SCENES)
def test_locate_finds_rendered_xrays_with_iou_at_least_0_9(scene):
    ious = []
    for index, path in enumerate(_xrays(8)):
        photo = photograph_file(path, 11, index, scene)
        loc = locate(photo.frame)
        assert loc.found and loc.method == {"film": "lightbox", "monitor": "screen"}[scene]
        ious.append(quad_iou(loc.quad, photo.quad))
    assert min(ious) >= 0.9, ious


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_data_photograph_command_writes_frames_and_truth(tmp_path):
    from training.cli import main
    from training.splits import Split

    split_path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "splits", "chest.json")
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data is not beside this checkout")
    out = str(tmp_path / "photo")
    assert main(["data", "photograph", "--split", split_path, "--out", out, "--limit", "3",
                 "--seed", "5"]) == 0
    index = read_index(out)
    assert [f["scene"] for f in index["frames"]] == ["film", "monitor", "film"]
    test_names = [os.path.basename(s.path) for s in Split.from_file(split_path).test[:3]]
    assert [os.path.basename(f["source"]) for f in index["frames"]] == test_names  # the TEST split
    for entry in index["frames"]:
        frame = cv2.imread(os.path.join(out, entry["frame"]))
        assert frame.shape == (720, 1280, 3)
        assert quad_iou(locate(frame).quad, entry["quad"]) >= 0.9
    again = str(tmp_path / "again")
    main(["data", "photograph", "--split", split_path, "--out", again, "--limit", "1", "--seed", "5"])
    assert _sha256(os.path.join(again, index["frames"][0]["frame"])) == _sha256(
        os.path.join(out, index["frames"][0]["frame"]))
    with pytest.raises(ConfigError):
        read_index(str(tmp_path))
    json.dumps(index)
