"""edge.locate's small contracts, pinned exactly (issue 18: mutation survivors of test_locate.py).

The record a case keeps (``to_dict``), grey and BGRA frames, letterbox boxes that touch the frame's
edge, quad_iou's values and OutlineTracker's defaults and motion boundary. Real X-rays where a
picture is needed; the tracker needs only quadrilaterals and a frame size. Python 3.6 compatible.
"""

import cv2
import numpy as np
import pytest

from edge.locate import HOLD_STILL, LOCKED, SEARCHING, Localisation, OutlineTracker, locate, quad_iou
from edge.preprocess import load_image


def _xray(real_xray, width, height):
    return cv2.resize(load_image(real_xray), (width, height), interpolation=cv2.INTER_AREA)


def _letterbox(image, width, height, x0, y0):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[y0:y0 + image.shape[0], x0:x0 + image.shape[1]] = image
    return frame


def test_to_dict_and_repr_of_a_letterbox(real_xray):
    image = _xray(real_xray, 300, 240)
    loc = locate(_letterbox(image, 640, 240, 170, 0))  # bars left and right only: y0 = 0
    assert repr(loc) == "Localisation(found=True, method='letterbox')"
    data = loc.to_dict()
    assert data == {"found": True, "method": "letterbox", "frame_size": [640, 240],
                    "quad": [[float(x), float(y)] for x, y in loc.quad],
                    "crop_size": [loc.crop.shape[1], loc.crop.shape[0]]}
    x0, y0 = loc.quad[0]
    assert y0 == 0 and abs(x0 - 170) <= 4  # the box found at the work size, scaled back
    assert loc.crop.shape[0] == 240 and abs(loc.crop.shape[1] - 300) <= 8


def test_letterbox_with_bars_above_and_below_keeps_x_zero(real_xray):
    image = _xray(real_xray, 320, 200)
    loc = locate(_letterbox(image, 320, 480, 0, 140))
    assert loc.method == "letterbox"
    assert loc.quad[0][0] == 0 and loc.quad[1][0] == 320 and abs(loc.quad[0][1] - 140) <= 2


def test_to_dict_rounds_the_quad_to_one_decimal():
    frame = np.zeros((100, 200, 3), np.uint8)
    quad = np.array([[10.26, 20.34], [150.71, 20.16], [150.44, 80.96], [10.0, 80.5]], np.float32)
    data = Localisation(True, quad, "screen", frame, box=(10, 20, 150, 80)).to_dict()
    assert data["quad"] == [[10.3, 20.3], [150.7, 20.2], [150.4, 81.0], [10.0, 80.5]]
    assert data["crop_size"] == [140, 60] and data["frame_size"] == [200, 100]
    assert repr(Localisation(False, quad, "guide", frame)) == "Localisation(found=False, method='guide')"


def test_grey_and_bgra_frames_are_located_like_bgr(real_xray):
    bgr = _xray(real_xray, 320, 320)
    expected = locate(bgr)
    grey = locate(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    bgra = locate(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    for loc in (grey, bgra):
        assert (loc.found, loc.method) == (expected.found, expected.method) == (True, "whole")
        assert loc.crop.shape == (320, 320, 3)
        np.testing.assert_array_equal(loc.quad, expected.quad)
    np.testing.assert_array_equal(bgra.crop, bgr)


def test_quad_iou_values():
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    assert quad_iou(square, square) == 1.0
    assert quad_iou(square, [[20, 0], [30, 0], [30, 10], [20, 10]]) == 0.0
    assert quad_iou(square, [[5, 0], [15, 0], [15, 10], [5, 10]]) == pytest.approx(1 / 3.0)
    assert quad_iou(square, [[0, 0], [10, 0], [10, 5], [0, 5]]) == pytest.approx(0.5)
    point = [[1, 1], [1, 1], [1, 1], [1, 1]]
    assert quad_iou(point, point) == 0.0


def _found(quad, width=400, height=300):  # diagonal 500
    return Localisation(True, np.asarray(quad, np.float32), "screen", np.zeros((height, width, 3), np.uint8))


QUAD = [[100, 50], [300, 50], [300, 250], [100, 250]]


def test_tracker_locks_after_five_still_frames_by_default():
    tracker = OutlineTracker()
    assert (tracker.frames, tracker.max_motion, tracker.state) == (5, 0.01, SEARCHING)
    states = [tracker.update(_found(QUAD)) for _ in range(7)]
    assert states == [HOLD_STILL] * 5 + [LOCKED] * 2
    tracker.reset()
    assert tracker.state == SEARCHING
    assert tracker.update(_found(QUAD)) == HOLD_STILL  # starts over: nothing remembered


def test_tracker_motion_boundary_is_inclusive():
    tracker = OutlineTracker(frames=1)
    tracker.update(_found(QUAD))
    moved = [[103, 54]] + QUAD[1:]  # one corner moved 5 px = 0.01 of the 500 px diagonal
    assert tracker.update(_found(moved)) == LOCKED
    further = [[106, 58.01]] + QUAD[1:]  # just over 5 px from the previous outline
    assert tracker.update(_found(further)) == HOLD_STILL
    guide = Localisation(False, np.asarray(QUAD, np.float32), "guide", np.zeros((300, 400, 3), np.uint8))
    assert tracker.update(guide) == SEARCHING
    assert tracker.update(_found(QUAD)) == HOLD_STILL


def test_quad_iou_of_a_small_quad_is_not_zero():
    tiny = [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]  # area 0.25: a union below one pixel still counts
    assert quad_iou(tiny, tiny) == pytest.approx(1.0)


def test_corner_refinement_intersects_fitted_edges_exactly():
    """_intersect meets two fitted edge lines (cv2.fitLine's (vx, vy, x0, y0)) at the film's corner."""
    from edge.locate import _intersect

    assert _intersect((1.0, 0.0, 3.0, 7.0), (0.0, 1.0, 11.0, 2.0)) == pytest.approx((11.0, 7.0))
    diagonal = (0.6, 0.8, 10.0, 20.0)  # a unit direction, through (10, 20)
    assert _intersect(diagonal, (1.0, 0.0, 0.0, 60.0)) == pytest.approx((40.0, 60.0))
    assert _intersect((0.0, 1.0, 5.0, 0.0), (0.6, 0.8, 10.0, 20.0)) == pytest.approx((5.0, 20.0 - 5.0 / 0.75))
    assert _intersect((1.0, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 5.0)) is None  # parallel edges
    assert _intersect((1.0, 0.0, 0.0, 0.0), (1.0, 1e-6, 0.0, 5.0)) is not None  # |det| 1e-6: at the limit
    assert _intersect((1.0, 0.0, 0.0, 0.0), (1.0, 5e-7, 0.0, 5.0)) is None  # below it: parallel enough
