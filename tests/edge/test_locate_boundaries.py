"""edge.locate's boundaries and cases found by the mutation run on merged main (issue 18): each test
kills mutants that the step tests (test_locate_steps.py, whose synthetic inputs it reuses) let
survive. Python 3.6 compatible.
"""

import cv2
import numpy as np

import edge.locate as loc_mod
from edge.locate import _bar_bounds, _quad_of, _refine, _region_mask, _small, _whole_image
from tests.edge.test_locate_steps import TRUE_QUAD, _bars, _film, _outline, _region, _two_level


def test_a_frame_exactly_video_tall_has_its_rows_cut_and_a_square_frame_keeps_them():
    tall = _bars(100, 130, 10, 10).T.copy()  # 130 high = 1.3 x 100 wide
    assert _bar_bounds(tall) == (0, 10, 100, 120)
    square = _bars(100, 100, 10, 10).T.copy()  # black rows above and below a square picture
    assert _bar_bounds(square) == (0, 0, 100, 100)


def test_intersect_determinant_limit_is_exclusive():
    from edge.locate import _intersect

    # [[1, 0], [0, 1e-6]]: the determinant is exactly 1e-6 (a diagonal matrix)
    assert _intersect((1.0, 0.0, 0.0, 0.0), (0.0, -1e-6, 3.0, 5.0)) is not None
    assert _intersect((1.0, 0.0, 0.0, 0.0), (0.0, -9.9e-7, 3.0, 5.0)) is None


def test_the_largest_region_is_the_film_not_a_speck():
    region = _region(140, 160, TRUE_QUAD)
    region[2:6, 150:156] = 1  # a small second region
    np.testing.assert_allclose(_quad_of(region), TRUE_QUAD, atol=0.75)


def test_quad_of_upper_area_limit_is_inclusive():
    region = np.ones((100, 198), np.uint8)  # contour area 197 x 99 = 19503 = 0.985 x 19800 exactly
    assert _quad_of(region) is not None


TALL = np.array([[10.0, 30.0], [60.0, 30.0], [60.0, 130.0], [10.0, 130.0]])  # extent 100 (y), x 50


def test_refine_limit_is_ten_percent_of_the_larger_extent_of_a_tall_quad(monkeypatch):
    real = loc_mod._intersect
    monkeypatch.setattr(loc_mod, "_intersect", lambda a, b: (round(real(a, b)[0]) + 10.01,
                                                             round(real(a, b)[1])))
    corners = TALL.astype(np.float32)
    assert _refine(_outline(TALL), corners) is corners  # 10.01 > 0.1 x 100


def test_refine_takes_points_within_the_across_tolerance_only():
    """Outline points 2.5 px off each side (alternating): inside 4% of a 100 px side, outside the
    2 px floor of a 50 px side."""
    def zigzag(quad, per_side=200, offset=2.5):
        points = []
        for index in range(4):
            start, end = quad[index], quad[(index + 1) % 4]
            normal = np.array([-(end - start)[1], (end - start)[0]]) / np.hypot(*(end - start))
            for k, t in enumerate(np.linspace(0.0, 1.0, per_side, endpoint=False)):
                points.append(start + t * (end - start) + (offset if k % 2 else -offset) * normal)
        return np.array(points, np.float32)

    big = np.array([[10.0, 10.0], [110.0, 10.0], [110.0, 110.0], [10.0, 110.0]])
    corners = big.astype(np.float32)
    assert _refine(zigzag(big), corners) is not corners  # within 4 px of each side: lines fitted
    small = np.array([[10.0, 10.0], [60.0, 10.0], [60.0, 60.0], [10.0, 60.0]])
    corners = small.astype(np.float32)  # 50 px sides: the 2 px floor applies
    assert _refine(zigzag(small), corners) is corners  # nothing within 2 px of a side: kept


def test_refine_ignores_the_first_twelve_percent_of_a_side():
    points = []
    for index in range(4):
        start, end = TRUE_QUAD[index], TRUE_QUAD[(index + 1) % 4]
        normal = np.array([-(end - start)[1], (end - start)[0]]) / np.hypot(*(end - start))
        for t in np.linspace(0.0, 1.0, 400, endpoint=False):
            points.append(start + t * (end - start) + (3.0 if t < 0.115 else 0.0) * normal)
    refined = _refine(np.array(points, np.float32), TRUE_QUAD.astype(np.float32))
    np.testing.assert_allclose(refined, TRUE_QUAD, atol=0.02)


def test_a_non_square_digital_xray_is_whole_and_a_letterbox_crop_is_a_view():
    frame, grey = _two_level(40, 56, 60, 160)
    found = _whole_image(frame, frame, grey, 1.0)
    assert found.method == "whole" and found.crop is frame
    grey = np.zeros((40, 80), np.uint8)
    grey[:, 20:60] = np.tile([60, 160], (40, 20))
    small = np.dstack([grey] * 3)
    frame = cv2.resize(small, (320, 160), interpolation=cv2.INTER_NEAREST)
    boxed = _whole_image(frame, small, grey, 0.25)
    assert np.shares_memory(boxed.crop, frame)  # the frame's own pixels, not a warped copy


def test_corners_of_a_quad_whose_top_corner_is_not_its_top_left():
    tilted = np.array([[30.0, 40.0], [130.0, 20.0], [140.0, 110.0], [20.0, 120.0]])  # TR is the highest
    np.testing.assert_allclose(_quad_of(_region(140, 160, tilted)), tilted, atol=0.75)


def test_a_three_pixel_notch_of_surround_into_the_film_is_closed():
    grey, plane = _film(height=80, width=100, box=(20, 10, 80, 70))
    grey[10:20, 48:51] = 100.0  # a 3 px wide notch from the film's top edge, open to the surround
    region = _region_mask(grey, plane, 0.0)
    assert region[12, 49] == 1 and region.sum() == 60 * 60  # closed by the 5x5 closing


def test_a_hole_touching_the_surround_only_diagonally_is_film():
    grey, plane = _film(height=60, width=80, box=(10, 10, 70, 50))
    grey[10, 10] = 100.0  # the film's corner pixel at the surround's level...
    grey[11:20, 11:20] = 100.0  # ...touches this hole only diagonally
    region = _region_mask(grey, plane, 0.0)
    assert region[15, 15] == 1  # 4-connectivity: the hole is not the surround


def test_only_the_outermost_rows_and_columns_define_the_surround():
    """Surround-level holes one pixel inside a film that fills the frame's edges are film: the
    surround is what touches row 0, the last row, column 0 or the last column."""
    grey = np.full((60, 80), 40.0, np.float32)
    plane = np.full((60, 80), 100.0, np.float32)
    grey[20:40, 0:4] = 100.0  # a true surround strip on the left edge (so there is one)
    for rows, cols in ((slice(1, 6), slice(30, 36)), (slice(54, 59), slice(30, 36)),
                       (slice(45, 51), slice(1, 6)), (slice(10, 16), slice(74, 79))):
        grey[rows, cols] = 100.0  # a hole one pixel in from the top, bottom, left, right edge
    region = _region_mask(grey, plane, 0.0)
    assert region[3, 33] == 1 and region[56, 33] == 1 and region[48, 3] == 1 and region[13, 76] == 1


def test_small_averages_area_blocks_and_drops_the_remainder():
    frame = np.zeros((48, 644, 3), np.uint8)  # 644 / 160 -> factor 4, 644 % 4 = 0; rows 48 % 4 = 0
    frame[:, ::4] = 200  # one bright column in four: area averaging gives 50 (bilinear would not)
    grey = _small(frame)[1]
    assert grey.shape == (12, 161) and int(grey.min()) == int(grey.max()) == 50
    edge = np.zeros((603, 1003, 3), np.uint8)  # factor 6: 3 rows and 1 column of remainder
    edge[600:, :] = 255
    edge[:, 1002:] = 255
    assert int(_small(edge)[1].max()) == 0  # the remainder is cut, not averaged in
