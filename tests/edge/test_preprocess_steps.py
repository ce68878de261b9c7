"""edge.preprocess step by step (mutation survivors, issue 18): the caller's image limits reach the
reader; normalise_crop's documented recipe
(grey, Gaussian blur sigma 1, the 0.5/99.5 percentiles of every second pixel, a gain of at most 3
about mid-grey 127.5, clipped, truncated to uint8, grey-as-BGR) written out here with its constants,
on images with known answers and on noise where every step shows."""

import cv2
import numpy as np
import pytest

from edge.errors import ImageError
from edge.imageio import ImageLimits
from edge.preprocess import (
    NORMALISE_BLUR_SIGMA,
    NORMALISE_MAX_GAIN,
    NORMALISE_PERCENTILES,
    load_image,
    normalise_crop,
    read_image,
)


def test_the_callers_limits_are_used(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(cv2.imencode(".png", np.full((30, 40), 9, np.uint8))[1].tobytes())
    assert load_image(str(path)).shape == (30, 40, 3)  # the default limits
    small = ImageLimits(max_file_mb=1, max_megapixels=0.001, max_side=100)  # 1000 pixels
    for read in (load_image, read_image):
        with pytest.raises(ImageError, match=r"x\.png: image is too large to open safely \(40x30 = 0 "):
            read(str(path), small)
    assert read_image(str(path), ImageLimits(1, 1, 20)).image.shape == (15, 20, 3)  # reduced to max_side


def _recipe(grey):
    """The documented recipe with literal constants (what the shipped code must equal)."""
    blurred = cv2.GaussianBlur(grey, (0, 0), 1.0)
    low, high = np.percentile(blurred[::2, ::2], (0.5, 99.5))
    gain = min(3.0, 255.0 / max(1.0, float(high - low)))
    out = (blurred.astype(np.float32) - np.float32((low + high) / 2.0)) * np.float32(gain) + np.float32(127.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_the_constants_are_the_documented_ones():
    assert NORMALISE_PERCENTILES == (0.5, 99.5)
    assert NORMALISE_BLUR_SIGMA == 1.0
    assert NORMALISE_MAX_GAIN == 3.0


def test_a_flat_crop_becomes_mid_grey():
    out = normalise_crop(np.full((40, 30), 100, np.uint8))
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    assert (out == 127).all()  # 127.5 truncated


def test_two_tones_are_stretched_to_black_and_white():
    grey = np.full((200, 200), 40, np.uint8)
    grey[:, 100:] = 210  # 170 levels apart: gain 1.5 about 125
    out = normalise_crop(grey)[:, :, 0]
    assert (out[:, :90] == 0).all() and (out[:, 110:] == 255).all()
    mid = normalise_crop(np.dstack([grey // 2 + 60] * 3))[:, :, 0]  # 85 apart: gain exactly 3
    assert (mid[:, :90] == 0).all() and (mid[:, 110:] == 255).all()


@pytest.mark.parametrize("spread", [40, 200])  # gain capped at 3 / not capped
def test_noise_follows_the_recipe_exactly(spread):
    rng = np.random.RandomState(spread)
    grey = np.clip(128 + rng.normal(0, spread / 4.0, (121, 97)), 0, 255).astype(np.uint8)
    grey[:7, :5] = 255  # a few outliers: the percentiles, not the extremes, set the range
    grey[-3:, -9:] = 0
    want = _recipe(grey)
    assert np.array_equal(normalise_crop(grey)[:, :, 1], want)
    colour = np.dstack([grey, np.roll(grey, 1, axis=0), np.roll(grey, 1, axis=1)])
    out = normalise_crop(colour)
    assert np.array_equal(out[:, :, 0], _recipe(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)))
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_a_wide_grey_range_is_stretched_by_less_than_the_cap_in_float32():
    rng = np.random.RandomState(0)
    ramp = np.tile(np.linspace(20, 230, 97), (121, 1))
    grey = np.clip(ramp + rng.normal(0, 6, (121, 97)), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(grey, (0, 0), 1.0)
    low, high = np.percentile(blurred[::2, ::2], (0.5, 99.5))
    assert 1.0 < 255.0 / (high - low) < NORMALISE_MAX_GAIN  # this crop is not capped
    assert np.array_equal(normalise_crop(grey)[:, :, 0], _recipe(grey))  # float32 arithmetic, to the pixel
