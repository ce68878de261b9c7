"""Quality gate on real X-rays and on frames degraded the way a camera degrades them."""

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.preprocess import load_image
from edge.quality import WORK_SIZE, QualityThresholds, _small_grey, assess_quality


@pytest.fixture(scope="module")
def xray(real_xray):
    return load_image(real_xray)


def _names(quality):
    return [name for name, _value in quality.problems]


def test_sharp_real_xray_passes(xray):
    quality = assess_quality(xray, QualityThresholds())
    assert quality.ok, quality.problems
    assert quality.message == ""
    assert quality.sharpness > 60


def test_blurred_frame_is_blurry(xray):
    quality = assess_quality(cv2.GaussianBlur(xray, (0, 0), 3), QualityThresholds())
    assert _names(quality) == ["blurry"]
    assert quality.problems[0][1] == quality.sharpness
    assert quality.sharpness < 60
    assert "blurry" in quality.message and "hold the camera still" in quality.message


def test_dark_frame_is_too_dark(xray):
    quality = assess_quality((xray * 0.15).astype(np.uint8))
    assert _names(quality) == ["too dark"]
    assert quality.problems[0][1] < 40


def test_overexposed_frame(xray):
    quality = assess_quality(np.clip(xray.astype(np.int32) + 150, 0, 255).astype(np.uint8))
    assert _names(quality) == ["overexposed"]
    assert quality.problems[0][1] > 220


def test_mostly_clipped_frame_is_overexposed_even_with_moderate_mean():
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = 255  # half blown out, half black: mean 127
    quality = assess_quality(frame, QualityThresholds(clip_fraction=0.4))
    assert _names(quality) in (["too dark"], ["overexposed"])
    assert not quality.ok


def test_large_frames_are_downscaled_first(xray):
    big = cv2.resize(xray, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    assert max(_small_grey(big).shape) == WORK_SIZE
    assert assess_quality(big).ok
    assert _names(assess_quality(cv2.GaussianBlur(big, (0, 0), 12))) == ["blurry"]


def test_grey_and_bgra_inputs(xray):
    grey = cv2.cvtColor(xray, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(xray, cv2.COLOR_BGR2BGRA)
    expected = assess_quality(xray).sharpness
    assert assess_quality(grey).sharpness == pytest.approx(expected)
    assert assess_quality(bgra).sharpness == pytest.approx(expected)


def test_thresholds_come_from_the_config_section():
    thresholds = QualityThresholds.from_mapping({"blur_threshold": "10", "dark_threshold": 20,
                                                 "bright_threshold": "230"})
    assert thresholds.to_dict() == {"blur_threshold": 10, "dark_threshold": 20, "bright_threshold": 230,
                                    "clip_fraction": 0.35}
    assert QualityThresholds.from_mapping(None).blur_threshold == 60
    with pytest.raises(ConfigError, match="unknown key 'blur'"):
        QualityThresholds.from_mapping({"blur": 3})
    with pytest.raises(ConfigError, match="must be a number"):
        QualityThresholds.from_mapping({"blur_threshold": "sharp"})
    with pytest.raises(ConfigError, match="dark_threshold < bright_threshold"):
        QualityThresholds(dark_threshold=200, bright_threshold=100)


def test_blur_threshold_is_respected(xray):
    sharpness = assess_quality(xray).sharpness
    assert assess_quality(xray, QualityThresholds(blur_threshold=sharpness + 1)).problems[0][0] == "blurry"
    assert assess_quality(xray, QualityThresholds(blur_threshold=sharpness - 1)).ok
