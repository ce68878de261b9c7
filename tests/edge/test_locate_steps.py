"""edge.locate step by step on synthetic inputs with a known answer (issue 18: mutation survivors).

Each step of the film finder gets an input whose result is known exactly: letterbox bars of a
known width, a border ring that is a known quadratic surface, a film of a known quadrilateral on
a known plane, outline points of a known quadrilateral, a warp of an axis-aligned rectangle, the
reduction of a frame made of constant blocks. Thresholds are pinned at their boundary. The
end-to-end tests on real camera frames are in test_locate.py. Python 3.6 compatible.
"""

import cv2
import numpy as np
import pytest

import edge.locate as loc_mod
from edge.locate import (
    CROP_MAX_SIDE,
    _bar_bounds,
    _box_quad,
    _chroma,
    _find_quad,
    _full_box,
    _quad_of,
    _refine,
    _region_mask,
    _ring_plane,
    _small,
    _warp,
    _whole_image,
    guide_quad,
    locate,
)

# --- step 1: letterbox bars ---------------------------------------------------------------------


def _bars(height, width, left, right, level=0, content=100):
    grey = np.full((height, width), content, np.uint8)
    grey[:, :left] = level
    grey[:, width - right:] = level
    return grey


def test_bars_of_a_video_frame_are_cut_exactly():
    assert _bar_bounds(_bars(100, 130, 6, 5)) == (6, 0, 125, 100)  # 130 = 1.3 x 100: video


def test_a_frame_just_under_the_video_aspect_keeps_its_dark_edges():
    assert _bar_bounds(_bars(100, 129, 6, 5)) == (0, 0, 129, 100)


def test_bar_level_is_inclusive():
    grey = _bars(100, 200, 10, 10, level=16)
    assert _bar_bounds(grey) == (10, 0, 190, 100)  # a column whose brightest pixel is 16 is black
    grey[50, 9] = 17
    assert _bar_bounds(grey) == (9, 0, 190, 100)  # 17 is picture


def test_bars_must_take_min_bars_of_the_width():
    assert _bar_bounds(_bars(100, 200, 8, 8)) == (8, 0, 192, 100)  # 16 = 0.08 x 200: cut
    assert _bar_bounds(_bars(100, 200, 8, 7)) == (0, 0, 200, 100)  # 15: a dark edge, kept


def test_bars_of_a_tall_frame_are_rows():
    grey = _bars(100, 200, 12, 9).T.copy()  # 200 high, 100 wide
    assert _bar_bounds(grey) == (0, 12, 100, 191)
    assert _bar_bounds(np.zeros((200, 100), np.uint8)) == (0, 0, 100, 200)  # all black: nothing kept
    assert _bar_bounds(np.zeros((100, 200), np.uint8)) == (0, 0, 200, 100)


# --- step 2: the ring plane and the surround ----------------------------------------------------

def _quadratic(height, width, coef):
    u = (np.arange(width, dtype=np.float64) / width - 0.5)[None, :]
    v = (np.arange(height, dtype=np.float64) / height - 0.5)[:, None]
    a, b, c, d, e, f = coef
    return a + b * u + c * v + d * u * u + e * v * v + f * u * v + 0 * u * v


COEF = (120.0, 30.0, -20.0, 16.0, -12.0, 10.0)


def test_ring_plane_is_fitted_to_the_two_pixel_ring_only():
    surface = _quadratic(60, 80, COEF)
    grey = surface.copy()
    grey[2:-2, 2:-2] = 250.0  # anything inside the ring must not pull the fit
    fitted, spread = _ring_plane(grey)
    assert fitted.shape == (60, 80)
    np.testing.assert_allclose(fitted, surface, atol=0.01)  # the whole surface, every term
    assert spread == pytest.approx(0.0, abs=1e-3)


def test_ring_spread_is_the_robust_mad_of_the_residuals():
    grey = np.full((40, 50), 100.0)
    ring = np.zeros(grey.shape, bool)
    ring[:2, :] = ring[-2:, :] = ring[:, :2] = ring[:, -2:] = True
    ys, xs = np.nonzero(ring)
    rng = np.random.RandomState(3)
    grey[ys, xs] += rng.normal(0, 5, ys.size)
    _surface, spread = _ring_plane(grey)
    u, v = xs / 50.0 - 0.5, ys / 40.0 - 0.5
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=1)
    coef = np.linalg.lstsq(design, grey[ys, xs], rcond=-1)[0]
    residual = grey[ys, xs] - design.dot(coef)
    expected = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    assert spread == pytest.approx(expected, rel=1e-4)
    assert 3.0 < spread < 7.0


def _film(height=60, width=80, level=100.0, inside=40.0, box=(20, 15, 60, 45)):
    grey = np.full((height, width), level, np.float32)
    x0, y0, x1, y1 = box
    grey[y0:y1, x0:x1] = inside
    return grey, np.full((height, width), level, np.float32)


def test_region_is_the_film_exactly():
    grey, plane = _film()
    region = _region_mask(grey, plane, 0.0)
    expected = np.zeros(grey.shape, np.uint8)
    expected[15:45, 20:60] = 1
    assert region.dtype == np.uint8
    np.testing.assert_array_equal(region, expected)


@pytest.mark.parametrize("spread, limit", [(0.0, 14.0), (1.5, 14.0), (2.0, 16.0), (3.0, 20.0)])
def test_surround_tolerance_is_inclusive(spread, limit):
    """Tolerance: max(6, 4 x spread) + 0.08 x the plane's level (100 here)."""
    within, _plane = _film(inside=100.0 + limit)
    assert not _region_mask(within, _plane, spread).any()
    beyond, _plane = _film(inside=100.0 + limit + 0.01)
    assert _region_mask(beyond, _plane, spread).sum() == 40 * 30
    below, _plane = _film(inside=100.0 - limit - 0.01)
    assert _region_mask(below, _plane, spread).sum() == 40 * 30


def test_tolerance_grows_with_the_level_of_a_negative_plane():
    grey, plane = _film(level=-100.0, inside=-100.0 + 14.0)
    assert not _region_mask(grey, plane, 0.0).any()  # 0.08 x |plane|


def test_a_surround_coloured_hole_reached_by_a_thin_channel_stays_film():
    grey, plane = _film(height=80, width=100, box=(20, 10, 80, 70))
    grey[30:50, 40:60] = 100.0  # a hole at the surround's level
    grey[10:30, 50] = 100.0  # joined to the surround by a one-pixel channel
    region = _region_mask(grey, plane, 0.0)
    assert region[40, 50] == 1 and region[20, 50] == 1  # the opening cut the channel: no surround
    assert region.sum() == 60 * 60


def test_a_small_gap_in_the_film_is_closed():
    grey, plane = _film(height=80, width=100, box=(20, 10, 80, 70))
    grey[30:33, 20:80] = 100.0  # a three-pixel band of surround level across the film...
    grey[30:33, 20:21] = 40.0  # ...not touching the surround (the opening would keep it then)
    grey[30:33, 79:80] = 40.0
    region = _region_mask(grey, plane, 0.0)
    assert region[31, 50] == 1 and region.sum() == 60 * 60


def test_no_surround_or_no_border_connected_surround_is_no_region():
    grey, plane = _film()
    assert _region_mask(grey, plane + 50.0, 0.0) is None  # nothing within the tolerance
    ring_off = plane.copy()
    ring_off[:2, :] = ring_off[-2:, :] = ring_off[:, :2] = ring_off[:, -2:] = 0.0
    inside_only = grey.copy()
    inside_only[:4, :] = inside_only[-4:, :] = inside_only[:, :4] = inside_only[:, -4:] = 200.0
    assert _region_mask(inside_only, ring_off, 0.0) is None  # the surround touches no edge


def test_diagonal_contact_does_not_join_the_surround():
    grey, plane = _film(height=60, width=80, box=(10, 10, 70, 50))
    grey[10:50, 10:70] = 40.0
    grey[20:40, 25:55] = 100.0  # a surround-level hole...
    region = _region_mask(grey, plane, 0.0)
    assert region[30, 40] == 1  # ...is film: not connected to the border


# --- step 3: corners ----------------------------------------------------------------------------

TRUE_QUAD = np.array([[30.0, 22.0], [132.0, 30.0], [124.0, 108.0], [24.0, 100.0]])


def _outline(quad, per_side=200):
    points = []
    for index in range(4):
        start, end = quad[index], quad[(index + 1) % 4]
        for t in np.linspace(0.0, 1.0, per_side, endpoint=False):
            points.append(start + t * (end - start))
    return np.array(points, np.float32)


def test_refine_moves_rough_corners_onto_the_intersection_of_the_sides():
    rough = (TRUE_QUAD + [[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]]).astype(np.float32)
    refined = _refine(_outline(TRUE_QUAD), rough)
    assert refined.dtype == np.float32
    np.testing.assert_allclose(refined, TRUE_QUAD, atol=0.02)


def test_refine_uses_the_middle_of_each_side_only():
    """Rounded corners (the first and last 12% of each side bent inwards) do not pull the lines."""
    points = []
    for index in range(4):
        start, end = TRUE_QUAD[index], TRUE_QUAD[(index + 1) % 4]
        normal = np.array([-(end - start)[1], (end - start)[0]]) / np.hypot(*(end - start))
        for t in np.linspace(0.0, 1.0, 400, endpoint=False):
            bend = 1.5 if (t < 0.11 or t > 0.89) else 0.0
            points.append(start + t * (end - start) + bend * normal)
    refined = _refine(np.array(points, np.float32), TRUE_QUAD.astype(np.float32))
    np.testing.assert_allclose(refined, TRUE_QUAD, atol=0.05)


def test_refine_ignores_points_off_the_side():
    outline = _outline(TRUE_QUAD)
    centre = TRUE_QUAD.mean(axis=0)
    inner = centre + 0.8 * (_outline(TRUE_QUAD, 50) - centre)  # points far inside: no side's
    points = np.concatenate([outline, inner.astype(np.float32)])
    np.testing.assert_allclose(_refine(points, TRUE_QUAD.astype(np.float32)), TRUE_QUAD, atol=0.02)


def test_refine_keeps_the_corners_of_a_tiny_side_or_too_few_points():
    tiny = np.array([[10, 10], [13.9, 10], [13.9, 40], [10, 40]], np.float32)  # top side < 4 px
    assert _refine(_outline(tiny), tiny) is tiny
    four = np.array([[10, 10], [14, 10], [14, 40], [10, 40]], np.float32)  # 4 px: refined
    assert _refine(_outline(four, 400), four) is not four
    corners = TRUE_QUAD.astype(np.float32)
    assert _refine(_outline(TRUE_QUAD, 6), corners) is corners  # 5 points inside 12-88% of a side: < 6
    assert _refine(_outline(TRUE_QUAD, 7), corners) is not corners  # 6 points: enough


SQUARE = np.array([[10.0, 10.0], [110.0, 10.0], [110.0, 90.0], [10.0, 90.0]])  # extent 100


@pytest.mark.parametrize("shift, refined", [(10.0, True), (10.01, False)])
def test_refine_keeps_the_corners_when_a_line_is_pulled_far_off(monkeypatch, shift, refined):
    """A notch that moves a refined corner more than 10% of the quad's extent: the plain corners stay."""
    real = loc_mod._intersect

    def pulled(line_a, line_b):
        x, y = real(line_a, line_b)
        return round(x) + shift, round(y)  # the true corner (to 1e-4) moved exactly by shift

    monkeypatch.setattr(loc_mod, "_intersect", pulled)
    corners = SQUARE.astype(np.float32)
    result = _refine(_outline(SQUARE), corners)
    assert (result is not corners) == refined
    if refined:
        np.testing.assert_allclose(result, SQUARE + [shift, 0.0], atol=0.01)


def test_parallel_fitted_sides_keep_the_corners(monkeypatch):
    monkeypatch.setattr(loc_mod, "_intersect", lambda a, b: None)
    corners = TRUE_QUAD.astype(np.float32)
    assert _refine(_outline(TRUE_QUAD), corners) is corners


def _region(height, width, quad):
    region = np.zeros((height, width), np.uint8)
    cv2.fillPoly(region, [np.round(np.asarray(quad)).astype(np.int32)], 1)
    return region


def test_quad_of_a_drawn_quadrilateral_is_its_corners():
    corners = _quad_of(_region(140, 160, TRUE_QUAD))
    np.testing.assert_allclose(corners, TRUE_QUAD, atol=0.75)
    assert corners.dtype == np.float32


def test_quad_of_area_limits_are_inclusive():
    # contourArea of a w x h pixel block is (w - 1) x (h - 1); the region is 100 x 100 = 10000 px
    at_min = _region(100, 100, [[10, 10], [40, 10], [40, 50], [10, 50]])  # 30 x 40 = 1200 = 0.12
    assert _quad_of(at_min) is not None
    below = _region(100, 100, [[10, 10], [39, 10], [39, 50], [10, 50]])  # 29 x 40 = 1160
    assert _quad_of(below) is None
    assert _quad_of(np.ones((200, 200), np.uint8)) is None  # 199 x 199 = 0.990 of it: > 0.985
    at_max = np.zeros((200, 200), np.uint8)
    at_max[0:198, 0:201] = 1  # 199 x 197 = 39203 < 39400
    assert _quad_of(at_max) is not None
    assert _quad_of(np.zeros((100, 100), np.uint8)) is None  # no outline at all


def test_quad_of_refuses_shapes_that_are_no_quadrilateral():
    disc = np.zeros((200, 200), np.uint8)
    cv2.circle(disc, (100, 100), 60, 1, -1)
    assert _quad_of(disc) is None  # its diagonal extremes span a quad of 64% of its hull
    ell = _region(200, 200, [[20, 20], [180, 20], [180, 60], [60, 60], [60, 180], [20, 180]])
    assert _quad_of(ell) is None  # an L fills too little of its quad
    square = _region(200, 200, [[40, 40], [160, 40], [160, 160], [40, 160]])
    assert _quad_of(square) is not None
    notched = square.copy()
    notched[40:75, 40:75] = 0  # a corner cut away: 8.5% of the square, still over 85% filled
    assert _quad_of(notched) is not None
    bitten = square.copy()
    bitten[40:80, 80:120] = 0  # a 40 x 40 bite out of the top side: 89% of the quad filled
    assert _quad_of(bitten) is not None
    bitten[40:100, 80:120] = 0  # 40 x 60: 83%, no film
    assert _quad_of(bitten) is None


# --- step 4: the warp, boxes, the small copy, chroma ----------------------------------------------

def _pattern(height, width):
    rng = np.random.RandomState(5)
    return rng.randint(0, 256, (height, width, 3)).astype(np.uint8)


def test_warp_of_an_axis_aligned_rectangle_is_the_frame_slice():
    frame = _pattern(120, 160)
    quad = _box_quad((30, 20, 130, 100))
    crop = _warp(frame, quad)
    assert crop.shape == (80, 100, 3)
    np.testing.assert_array_equal(crop, frame[20:100, 30:130])


def test_warp_size_averages_opposite_sides_and_caps_the_longest():
    frame = _pattern(600, 1200)
    trapezoid = np.array([[100, 100], [200, 100], [260, 200], [50, 200]], np.float32)
    height = (np.hypot(50, 100) + np.hypot(60, 100)) / 2.0  # 114.2
    assert _warp(frame, trapezoid).shape[:2] == (int(round(height)), 155)  # width (100 + 210) / 2
    big = _box_quad((0, 0, 1000, 500))
    assert _warp(frame, big).shape[:2] == (CROP_MAX_SIDE // 2, CROP_MAX_SIDE)
    tall = _box_quad((0, 0, 300, 600))
    assert _warp(frame, tall).shape[:2] == (CROP_MAX_SIDE, CROP_MAX_SIDE // 2)
    tiny = _box_quad((10, 10, 13, 12))
    assert _warp(frame, tiny).shape[:2] == (8, 8)  # never under 8 pixels a side
    speck = _box_quad((10, 10, 10, 10)) + np.float32([[0, 0], [1e-3, 0], [1e-3, 1e-3], [0, 1e-3]])
    assert _warp(frame, speck).shape[:2] == (8, 8)  # a side under one pixel: max(..., 1.0)


def test_warp_replicates_the_border():
    frame = np.full((50, 50, 3), 200, np.uint8)
    quad = np.array([[-10, -10], [60, -10], [60, 60], [-10, 60]], np.float32)
    assert (_warp(frame, quad) == 200).all()  # outside the frame: its edge, not black


def test_full_box_rounds_and_clamps():
    assert _full_box((10, 20, 150, 100), 0.25, 1000, 1000) == (40, 80, 600, 400)
    assert _full_box((-1, -2, 300, 100), 0.5, 500, 190) == (0, 0, 500, 190)
    assert _full_box((10.2, 9.8, 20.6, 30.4), 1.0, 100, 100) == (10, 10, 21, 30)
    np.testing.assert_array_equal(_box_quad((1, 2, 3, 4)), [[1, 2], [3, 2], [3, 4], [1, 4]])
    assert _box_quad((1, 2, 3, 4)).dtype == np.float32


def test_small_reduces_by_an_integer_factor_with_area_averaging():
    blocks = np.repeat(np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, 4, axis=0), 4, axis=1)
    frame = np.zeros((12 * 8, 16 * 40, 3), np.uint8)  # 640 wide: factor 4 to 160
    frame[:12, :16] = blocks[:, :, None]
    colour, grey, scale = _small(frame)
    assert scale == 0.25 and colour.shape == (24, 160, 3) and grey.shape == (24, 160)
    np.testing.assert_array_equal(grey[:3, :4], np.arange(12).reshape(3, 4) * 20)


def test_small_crops_the_remainder_and_rounds_the_factor():
    colour, grey, scale = _small(np.zeros((600, 1000, 3), np.uint8))  # 1000 / 160 = 6.25: factor 6
    assert scale == pytest.approx(1 / 6.0) and grey.shape == (100, 166)
    colour, grey, scale = _small(np.zeros((600, 1040, 3), np.uint8))  # 6.5 rounds to 6 (even)
    assert grey.shape == (100, 173)
    colour, grey, scale = _small(np.zeros((600, 1050, 3), np.uint8))  # 6.56: 7
    assert grey.shape == (85, 150) and scale == pytest.approx(1 / 7.0)


def test_small_keeps_a_narrow_or_flat_frame():
    frame = np.zeros((100, 239, 3), np.uint8)  # 239 / 160 rounds to 1
    colour, grey, scale = _small(frame)
    assert colour is frame and scale == 1.0 and grey.shape == (100, 239)
    flat = np.zeros((15, 640, 3), np.uint8)  # factor 4 would leave fewer than 8 rows... or 3
    colour, grey, scale = _small(flat)
    assert colour is flat and scale == 1.0
    sixteen = np.zeros((16, 320, 3), np.uint8)  # factor 2, 16 rows = 8 x 2: reduced
    colour, grey, scale = _small(sixteen)
    assert grey.shape == (8, 160) and scale == 0.5


def test_small_grey_is_bgr_weighted():
    frame = np.zeros((10, 10, 3), np.uint8)
    frame[:, :, 2] = 200  # red only
    assert int(_small(frame)[1][0, 0]) == int(round(0.299 * 200))


def test_chroma_is_twice_the_mean_distance_from_the_grey():
    assert _chroma(np.full((4, 4, 3), 90, np.uint8)) == 0.0
    pixel = np.array([[[0, 0, 30]]], np.uint8)  # mean 10; distances 10, 10, 20
    assert _chroma(pixel) == pytest.approx(2 * 40 / 3.0)
    assert _chroma(np.array([[[250, 0, 0]]], np.uint8)) == pytest.approx(2 * (500 / 3.0) * 2 / 3.0)


def test_guide_quad_in_pixels():
    np.testing.assert_allclose(guide_quad(1000, 500), [[300, 40], [700, 40], [700, 460], [300, 460]])
    assert guide_quad(10, 10).dtype == np.float32


# --- whole image: the texture and colour rules ------------------------------------------------------

def _two_level(height, width, low, high, colour_shift=0, coloured=None):
    grey = np.full((height, width), low, np.uint8)
    grey[:, width // 2:] = high
    frame = np.dstack([grey, grey, grey]).astype(np.int16)
    if colour_shift:
        mask = np.zeros((height, width), bool)
        mask.reshape(-1)[:coloured] = True
        frame[mask, 2] += colour_shift
    return frame.astype(np.uint8), grey


def test_whole_image_contrast_limit_is_inclusive():
    frame, grey = _two_level(40, 40, 82, 118)  # standard deviation exactly 18
    found = _whole_image(frame, frame, grey, 1.0)
    assert found is not None and found.method == "whole" and found.crop is frame
    frame, grey = _two_level(40, 40, 83, 118)  # 17.5: blank
    assert _whole_image(frame, frame, grey, 1.0) is None


def test_whole_image_chroma_limit_is_inclusive():
    # 7/8 of the pixels are (x, x, x + 18): chroma 2 x (7/8 x 8) = 14.0 exactly
    frame, grey = _two_level(40, 40, 60, 140, colour_shift=18, coloured=1400)
    assert _chroma(frame) == 14.0
    assert _whole_image(frame, frame, grey, 1.0) is not None
    frame, grey = _two_level(40, 40, 60, 140, colour_shift=18, coloured=1401)
    assert _whole_image(frame, frame, grey, 1.0) is None


def test_whole_image_needs_eight_pixels_each_way_inside_the_bars():
    frame, grey = _two_level(8, 8, 0, 200)
    assert _whole_image(frame, frame, grey, 1.0) is not None
    frame, grey = _two_level(7, 8, 0, 200)
    assert _whole_image(frame, frame, grey, 1.0) is None
    frame, grey = _two_level(8, 7, 0, 200)
    assert _whole_image(frame, frame, grey, 1.0) is None


def test_whole_image_with_bars_is_a_letterbox_box_in_full_pixels():
    grey = np.zeros((40, 80), np.uint8)
    grey[:, 20:60] = np.tile([60, 160], (40, 20))
    small = np.dstack([grey] * 3)
    frame = cv2.resize(small, (320, 160), interpolation=cv2.INTER_NEAREST)
    found = _whole_image(frame, small, grey, 0.25)
    assert found.method == "letterbox" and found.found
    np.testing.assert_array_equal(found.quad, _box_quad((80, 0, 240, 160)))
    np.testing.assert_array_equal(found.crop, frame[:, 80:240])


# --- the whole finder on a synthetic lightbox and monitor ------------------------------------------

FILM = np.array([[170.0, 70.0], [470.0, 90.0], [450.0, 410.0], [150.0, 390.0]])


def _scene(surround, film, gradient=30.0, noise=0.0, seed=0):
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
    light = surround + gradient * (xs / 640.0 - 0.5) + 0.5 * gradient * (ys / 480.0 - 0.5) ** 2
    mask = np.zeros((480, 640), np.uint8)
    cv2.fillPoly(mask, [np.round(FILM * 16).astype(np.int32)], 1, shift=4)
    texture = film + 25.0 * np.sin(xs / 9.0) * np.cos(ys / 13.0)
    grey = np.where(mask > 0, texture, light)
    if noise:
        grey = grey + np.random.RandomState(seed).normal(0, noise, grey.shape)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey])


@pytest.mark.parametrize("surround, film, method", [(225.0, 90.0, "lightbox"), (20.0, 150.0, "screen")])
def test_a_film_on_a_lit_plane_is_found_to_a_pixel(surround, film, method):
    frame = _scene(surround, film)
    found = locate(frame)
    assert found.found and found.method == method
    assert np.abs(found.quad - FILM).max() <= 2.0  # 4x reduced: half a work pixel is 2 px
    assert found.quad.dtype == np.float32


def test_the_quad_is_mapped_back_through_pixel_centres(monkeypatch):
    frame = _scene(225.0, 90.0)
    colour, grey, scale = _small(frame)
    corners = np.array([[10.0, 20.0], [100.0, 20.0], [100.0, 100.0], [10.0, 100.0]], np.float32)
    monkeypatch.setattr(loc_mod, "_quad_of", lambda region: corners)
    found = _find_quad(frame, grey, scale)
    np.testing.assert_allclose(found.quad, (corners + 0.5) * 4 - 0.5)


def test_a_ring_spread_at_the_limit_is_still_uniform(monkeypatch):
    frame = _scene(225.0, 40.0)
    colour, grey, scale = _small(frame)
    surface = np.full(grey.shape, 225.0, np.float32)
    monkeypatch.setattr(loc_mod, "_ring_plane", lambda g: (surface, 9.0))
    assert _find_quad(frame, grey, scale) is not None
    monkeypatch.setattr(loc_mod, "_ring_plane", lambda g: (surface, 9.0001))
    assert _find_quad(frame, grey, scale) is None


def test_the_method_compares_the_surround_with_the_film_itself(monkeypatch):
    frame = _scene(128.0, 60.0, gradient=0.0)
    colour, grey, scale = _small(frame)
    region = _region_mask(grey, _ring_plane(grey)[0], 0.0)
    grey = np.where(region > 0, 60, 128).astype(np.uint8)  # the film 60 exactly
    monkeypatch.setattr(loc_mod, "_region_mask", lambda g, p, s: region)
    monkeypatch.setattr(loc_mod, "_ring_plane", lambda g: (np.full(g.shape, 60.0, np.float32), 0.0))
    assert _find_quad(frame, grey, scale).method == "screen"  # a surround as bright as the film
    monkeypatch.setattr(loc_mod, "_ring_plane", lambda g: (np.full(g.shape, 60.01, np.float32), 0.0))
    assert _find_quad(frame, grey, scale).method == "lightbox"


def test_no_region_or_no_quad_is_not_found(monkeypatch):
    frame = _scene(225.0, 90.0)
    colour, grey, scale = _small(frame)
    monkeypatch.setattr(loc_mod, "_region_mask", lambda g, p, s: None)
    assert _find_quad(frame, grey, scale) is None
    monkeypatch.undo()
    monkeypatch.setattr(loc_mod, "_quad_of", lambda region: None)
    assert _find_quad(frame, grey, scale) is None


def test_a_noisy_ring_is_no_surround():
    frame = _scene(150.0, 60.0, noise=60.0)
    colour, grey, scale = _small(frame)
    assert _ring_plane(grey)[1] > 9.0
    assert _find_quad(frame, grey, scale) is None
