"""edge.pixels: shrinking to a side limit and 16-bit to 8-bit by the bits used, pinned at the
boundaries (issue 18: mutation survivors of the image reader tests). Python 3.6 compatible.
"""

import numpy as np

from edge.pixels import fit_side, to_8bit, to_bgr


def test_fit_side_keeps_an_image_at_the_limit_and_shrinks_a_larger_one_by_area():
    image = np.zeros((100, 400, 3), np.uint8)
    image[:, ::4] = 200  # one column in four: area averaging to a quarter gives 50 (bilinear: 0)
    assert fit_side(image, 400) is image and fit_side(image, 500) is image
    small = fit_side(image, 100)
    assert small.shape == (25, 100, 3) and int(small.min()) == int(small.max()) == 50
    assert fit_side(np.zeros((1, 1000), np.uint8), 10).shape == (1, 10)  # never under one pixel
    assert fit_side(np.zeros((1000, 1), np.uint8), 10).shape == (10, 1)


def test_to_8bit_uses_the_declared_bits_between_9_and_16():
    assert to_8bit(np.array([[100]], np.uint16), bits=9).tolist() == [[50]]
    assert to_8bit(np.array([[1000]], np.uint16), bits=16).tolist() == [[3]]
    assert to_8bit(np.array([[4095]], np.uint16), bits=12).tolist() == [[255]]


def test_to_8bit_ignores_declared_bits_outside_9_to_16_and_uses_the_highest_value():
    assert to_8bit(np.array([[1000]], np.uint16), bits=17).tolist() == [[250]]  # 10 bits used
    assert to_8bit(np.array([[1000]], np.uint16), bits=8).tolist() == [[250]]
    assert to_8bit(np.array([[1000]], np.uint16)).tolist() == [[250]]
    assert to_8bit(np.array([[200]], np.uint16)).tolist() == [[200]]  # 8 bits used: unchanged


def test_to_8bit_clips_data_above_the_declared_bits_and_handles_an_empty_image():
    assert to_8bit(np.array([[4000]], np.uint16), bits=10).tolist() == [[255]]  # 1000 after the shift
    empty = to_8bit(np.zeros((0, 4), np.uint16))
    assert empty.shape == (0, 4) and empty.dtype == np.uint8
    image = np.array([[7]], np.uint8)
    assert to_8bit(image) is image


def test_to_bgr_of_grey_single_channel_bgra_and_bgr():
    grey = np.array([[10, 20]], np.uint8)
    assert to_bgr(grey).tolist() == [[[10, 10, 10], [20, 20, 20]]]
    assert to_bgr(grey[:, :, None]).tolist() == [[[10, 10, 10], [20, 20, 20]]]
    bgra = np.array([[[1, 2, 3, 4]]], np.uint8)
    assert to_bgr(bgra).tolist() == [[[1, 2, 3]]]
    bgr = np.array([[[1, 2, 3]]], np.uint8)
    assert to_bgr(bgr) is bgr
