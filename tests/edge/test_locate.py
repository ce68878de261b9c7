"""edge.locate on real frames: camera frames of real X-rays (samples/chest/camera--*.jpg, rendered
from the committed samples with their ground-truth quadrilaterals), digital files, letterboxed
frames, frames without an X-ray, and a film that moves and settles. Python 3.6 compatible."""

import glob
import json
import os

import cv2
import numpy as np
import pytest

from edge.locate import (
    GUIDE,
    HOLD_STILL,
    LOCKED,
    MIN_BARS,
    SEARCHING,
    Localisation,
    OutlineTracker,
    guide_quad,
    locate,
    quad_iou,
)
from edge.preprocess import load_image
from edge.quality import QualityThresholds, assess_quality

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "samples", "chest")


def _camera_frames():
    with open(os.path.join(SAMPLES, "camera-frames.json")) as handle:
        truth = json.load(handle)
    return [(os.path.join(SAMPLES, name), entry) for name, entry in sorted(truth.items())]


CAMERA_FRAMES = _camera_frames()


@pytest.mark.parametrize("path, truth", CAMERA_FRAMES, ids=[e["scene"] for _p, e in CAMERA_FRAMES])
def test_camera_frame_is_found_with_iou_at_least_0_9(path, truth):
    frame = load_image(path)
    loc = locate(frame)
    assert loc.found
    assert loc.method == {"film": "lightbox", "monitor": "screen"}[truth["scene"]]
    assert quad_iou(loc.quad, truth["quad"]) >= 0.9
    # The crop is the rectified X-ray: upright, the X-ray's (square) shape, inside the budget.
    height, width = loc.crop.shape[:2]
    assert 0.85 < width / float(height) < 1.15
    assert max(width, height) <= 384
    source = cv2.resize(load_image(os.path.join(SAMPLES, truth["source"])), (width, height))
    grey = cv2.cvtColor(loc.crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    correlation = np.corrcoef(grey.ravel(), source[:, :, 0].astype(np.float32).ravel())[0, 1]
    assert correlation > 0.8  # the same picture, not the lightbox or a shifted part of it


def test_quad_corners_are_ordered_tl_tr_br_bl():
    loc = locate(load_image(CAMERA_FRAMES[0][0]))
    tl, tr, br, bl = loc.quad
    assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]


def test_digital_file_comes_back_unchanged(real_xray):
    image = load_image(real_xray)
    loc = locate(image)
    assert loc.found and loc.method == "whole" and loc.crop is image
    height, width = image.shape[:2]
    assert quad_iou(loc.quad, [[0, 0], [width, 0], [width, height], [0, height]]) == pytest.approx(1.0)


def test_every_sample_xray_file_is_identity():
    for path in sorted(glob.glob(os.path.join(ROOT, "samples", "*", "*"))):
        if os.path.basename(path).startswith(("camera", "not-an-xray")) or path.endswith((".json", ".md")):
            continue
        image = load_image(path)
        assert locate(image).crop is image, path


def _letterboxed(image, size=(1280, 720)):
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    side = height
    x = (width - side) // 2
    frame[:, x:x + side] = cv2.resize(image, (side, side))
    return frame, x


def test_letterboxed_xray_loses_its_bars_and_is_not_too_dark(real_xray):
    frame, x = _letterboxed(load_image(real_xray))
    assert not assess_quality(frame, QualityThresholds()).ok  # the bars alone make it "too dark"
    loc = locate(frame)
    assert loc.found and loc.method == "letterbox"
    assert abs(loc.quad[0][0] - x) <= 8 and abs(loc.quad[1][0] - (1280 - x)) <= 8
    assert assess_quality(loc.crop, QualityThresholds()).ok


def test_dark_edges_of_a_square_xray_are_not_bars(real_xray):
    image = load_image(real_xray).copy()
    width = image.shape[1]
    image[:, :int(width * MIN_BARS)] = 0  # black edges wider than MIN_BARS, but not a video frame
    image[:, width - int(width * MIN_BARS):] = 0
    assert locate(image).crop is image


def _wall(seed=0):
    rng = np.random.RandomState(seed)
    ys, xs = np.mgrid[0:720, 0:1280].astype(np.float32)
    wall = 150 + 30 * xs / 1280.0 + rng.normal(0, 3, (720, 1280))
    return np.clip(np.dstack([wall * 0.9, wall, wall * 1.1]), 0, 255).astype(np.uint8)


def _colour_scene(seed=0):
    rng = np.random.RandomState(seed)
    scene = cv2.resize(rng.randint(0, 255, (9, 16, 3)).astype(np.uint8), (1280, 720),
                       interpolation=cv2.INTER_CUBIC)
    return scene


@pytest.mark.parametrize("make", [_wall, _colour_scene,
                                  lambda: np.full((720, 1280, 3), 235, np.uint8),  # an empty lightbox
                                  lambda: np.zeros((720, 1280, 3), np.uint8)],  # a dark room
                         ids=["wall", "colour-scene", "empty-lightbox", "dark"])
def test_frame_without_an_xray_is_not_found_and_uses_the_guide(make):
    loc = locate(make())
    assert not loc.found and loc.method == "guide"
    np.testing.assert_allclose(loc.quad, guide_quad(1280, 720))
    x0, y0, x1, y1 = GUIDE
    height, width = loc.crop.shape[:2]
    assert max(height, width) == 384  # the guide's part of the frame, rectified
    assert width / float(height) == pytest.approx((x1 - x0) * 1280 / ((y1 - y0) * 720), rel=0.01)


def test_localisation_reports_itself():
    data = locate(load_image(CAMERA_FRAMES[0][0])).to_dict()
    assert data["found"] is True and data["method"] == "lightbox" and len(data["quad"]) == 4
    assert data["frame_size"] == [1280, 720]
    json.dumps(data)


def _shifted(frame, dx, dy):
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def test_moving_film_that_settles_goes_searching_hold_still_locked():
    frame = load_image(CAMERA_FRAMES[0][0])
    tracker = OutlineTracker(frames=3, max_motion=0.01)
    states = [tracker.update(locate(_wall()))]
    for offset in (60, 40, 20):  # moving: more than 1% of the diagonal (14.7 px) per frame
        states.append(tracker.update(locate(_shifted(frame, offset, 0))))
    for _still in range(4):
        states.append(tracker.update(locate(frame)))
    assert states == [SEARCHING, HOLD_STILL, HOLD_STILL, HOLD_STILL, HOLD_STILL, HOLD_STILL, HOLD_STILL,
                      LOCKED]
    assert tracker.update(locate(_wall())) == SEARCHING  # taken away: search again


def test_tracker_motion_threshold_is_the_boundary():
    quad = np.array([[100, 100], [300, 100], [300, 400], [100, 400]], np.float32)
    frame = np.zeros((720, 1280, 3), np.uint8)
    step = 0.01 * np.hypot(1280, 720)
    tracker = OutlineTracker(frames=1, max_motion=0.01)
    tracker.update(Localisation(True, quad, "lightbox", frame))
    assert tracker.update(Localisation(True, quad + [step * 0.99, 0], "lightbox", frame)) == LOCKED
    assert tracker.update(Localisation(True, quad + [step * 2.1, 0], "lightbox", frame)) == HOLD_STILL
