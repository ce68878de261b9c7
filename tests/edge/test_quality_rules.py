"""The quality gate's rules pinned at their thresholds (issue 18): the shipped defaults, the
exposure rules (mean OR clipped fraction), config validation and the per-bundle blur calibration.

Frames are built so each measure sits exactly where a rule changes its answer.
"""

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.quality import (
    BLACK_LEVEL,
    WHITE_LEVEL,
    WORK_SIZE,
    QualityThresholds,
    assess_quality,
    calibrate_blur_threshold,
    sharpness,
)


class _Bundle(object):
    def __init__(self, quality):
        self.manifest = {"quality": quality} if quality is not None else {}


def _names(quality):
    return [name for name, _value in quality.problems]


def _flat(level, shape=(64, 64)):
    return np.full(shape + (3,), level, np.uint8)


def _checker(low, high, shape=(64, 64)):
    """A sharp frame whose grey mean is (low + high) / 2."""
    grid = (np.indices(shape).sum(axis=0) % 2).astype(bool)
    return np.where(grid[:, :, None], np.uint8(high), np.uint8(low)).repeat(3, axis=2)


def test_shipped_defaults():
    assert QualityThresholds().to_dict() == {"blur_threshold": 60.0, "dark_threshold": 40.0,
                                             "bright_threshold": 220.0, "clip_fraction": 0.35}
    assert (WORK_SIZE, BLACK_LEVEL, WHITE_LEVEL) == (256, 5, 250)


@pytest.mark.parametrize("mean, problems", [
    (39.5, ["too dark"]), (40.5, []), (219.5, []), (220.5, ["overexposed"]),
])
def test_shipped_dark_and_bright_defaults_at_their_boundary(mean, problems):
    # checkerboard of mean-0.5 / mean+0.5: mean exactly `mean`, sharp, nothing clipped
    frame = _checker(int(mean - 0.5), int(mean + 0.5))
    quality = assess_quality(frame, QualityThresholds(blur_threshold=0))
    assert quality.brightness == mean
    assert _names(quality) == problems


def test_mean_exactly_at_a_threshold_passes():
    thresholds = QualityThresholds(blur_threshold=0, dark_threshold=100, bright_threshold=150)
    assert assess_quality(_flat(100), thresholds).ok
    assert assess_quality(_flat(150), thresholds).ok
    assert _names(assess_quality(_flat(99), thresholds)) == ["too dark"]
    assert _names(assess_quality(_flat(151), thresholds)) == ["overexposed"]


def _clipped(fraction_percent, level, rest=128):
    """100 x 100 frame: ``fraction_percent`` rows at ``level``, the rest mid-grey."""
    frame = _flat(rest, (100, 100))
    frame[:fraction_percent] = level
    return frame


@pytest.mark.parametrize("rows, clipped", [(35, False), (36, True)])
def test_clipped_fraction_alone_is_enough_or_not_and(rows, clipped):
    """The rule is mean OR clipped fraction: a moderate mean with many crushed pixels is still bad."""
    thresholds = QualityThresholds(blur_threshold=0, clip_fraction=0.35)
    dark = assess_quality(_clipped(rows, BLACK_LEVEL), thresholds)
    assert dark.brightness > thresholds.dark_threshold
    assert dark.dark_fraction == rows / 100.0
    assert _names(dark) == (["too dark"] if clipped else [])
    bright = assess_quality(_clipped(rows, WHITE_LEVEL, rest=100), thresholds)
    assert bright.brightness < thresholds.bright_threshold
    assert bright.bright_fraction == rows / 100.0
    assert _names(bright) == (["overexposed"] if clipped else [])


def test_clip_levels_are_inclusive():
    thresholds = QualityThresholds(blur_threshold=0, clip_fraction=0.35)
    assert assess_quality(_clipped(50, BLACK_LEVEL + 1), thresholds).dark_fraction == 0.0
    assert assess_quality(_clipped(50, WHITE_LEVEL - 1), thresholds).bright_fraction == 0.0


def test_dark_or_blown_frames_are_not_also_called_blurry():
    assert _names(assess_quality(_flat(0))) == ["too dark"]
    assert _names(assess_quality(_flat(255))) == ["overexposed"]
    assert _names(assess_quality(_flat(128))) == ["blurry"]
    blurry = assess_quality(_flat(128))
    assert blurry.problems == [("blurry", 0.0)]
    assert blurry.message == "Image quality: blurry - hold the camera still and focus"
    assert assess_quality(_flat(0)).message == "Image quality: too dark - add light"
    assert assess_quality(_flat(255)).message == "Image quality: overexposed - reduce glare or light"


def test_blur_threshold_boundary():
    frame = _checker(100, 140)
    value = sharpness(frame)
    assert value > 0
    assert assess_quality(frame, QualityThresholds(blur_threshold=value)).ok
    assert _names(assess_quality(frame, QualityThresholds(blur_threshold=value * 1.0001))) == ["blurry"]
    assert assess_quality(frame).to_dict() == {
        "ok": True, "problems": [], "message": "", "sharpness": round(value, 2), "brightness": 120.0}


@pytest.mark.parametrize("values, message", [
    ({"dark_threshold": 100, "bright_threshold": 100}, "0 <= dark_threshold < bright_threshold <= 255"),
    ({"dark_threshold": -1}, "0 <= dark_threshold"),
    ({"bright_threshold": 256}, "bright_threshold <= 255"),
    ({"blur_threshold": -0.5}, "blur_threshold must be >= 0, got -0.5"),
    ({"clip_fraction": 0}, "clip_fraction must be in (0, 1], got 0.0"),
    ({"clip_fraction": 1.01}, "clip_fraction must be in (0, 1]"),
])
def test_invalid_thresholds_are_refused(values, message):
    with pytest.raises(ConfigError) as info:
        QualityThresholds(**values)
    assert message in str(info.value)


@pytest.mark.parametrize("values", [
    {"dark_threshold": 0, "bright_threshold": 255}, {"dark_threshold": 99, "bright_threshold": 100},
    {"blur_threshold": 0}, {"clip_fraction": 1}, {"clip_fraction": 1e-6},
])
def test_thresholds_at_the_edge_of_valid(values):
    assert QualityThresholds(**values).to_dict()[sorted(values)[0]] == float(values[sorted(values)[0]])


def test_from_mapping_refuses_unknown_keys_and_non_numbers():
    assert QualityThresholds.from_mapping(None).to_dict() == QualityThresholds().to_dict()
    assert QualityThresholds.from_mapping({"dark_threshold": "30"}).dark_threshold == 30.0
    with pytest.raises(ConfigError, match=r"unknown key 'blur'; known: blur_threshold, dark_threshold"):
        QualityThresholds.from_mapping({"blur": "3"})
    with pytest.raises(ConfigError, match=r"\[quality\] clip_fraction must be a number, got 'many'"):
        QualityThresholds.from_mapping({"clip_fraction": "many"})


@pytest.mark.parametrize("calibrated, expected", [
    (None, 60.0), (60.0, 60.0), (75.0, 60.0), (59.5, 59.5), (0, 0.0),
])
def test_bundle_calibration_only_ever_lowers_the_blur_threshold(calibrated, expected):
    base = QualityThresholds(dark_threshold=30, bright_threshold=200, clip_fraction=0.5)
    quality = {"blur_threshold": calibrated} if calibrated is not None else None
    tuned = base.for_bundle(_Bundle(quality))
    assert tuned.blur_threshold == expected
    assert (tuned.dark_threshold, tuned.bright_threshold, tuned.clip_fraction) == (30.0, 200.0, 0.5)
    assert (tuned is base) == (expected == 60.0)


def test_calibration_formula_half_the_first_percentile():
    frames = [_checker(128 - k, 128 + k) for k in range(1, 102)]  # 101 sharpness values
    values = sorted(sharpness(f) for f in frames)
    result = calibrate_blur_threshold(frames)
    index = int(round((len(values) - 1) * 1.0 / 100.0))  # the 1st percentile: index 1 of 101
    assert index == 1
    assert result == {"blur_threshold": round(values[1] * 0.5, 3),
                      "sharpness_percentile_1": round(values[1], 3), "images": 101,
                      "method": "half the 1st percentile of validation-image sharpness"}
    assert calibrate_blur_threshold([]) is None
    single = calibrate_blur_threshold(frames[:1])
    assert single["sharpness_percentile_1"] == round(values[0], 3) and single["images"] == 1


def test_large_frames_are_measured_at_the_work_size():
    small = _checker(100, 140, (WORK_SIZE, WORK_SIZE))
    large = _checker(100, 140, (WORK_SIZE * 4, WORK_SIZE * 2))
    grey = assess_quality(large)
    assert grey.brightness == pytest.approx(120.0, abs=0.5)
    # exactly the work size is not resized
    expected = float(np.var(_laplacian(small[:, :, 0].astype(float))))
    assert sharpness(small) == pytest.approx(expected, rel=1e-6)


def _laplacian(grey):
    padded = np.pad(grey, 1, mode="reflect")
    return (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * grey)


@pytest.mark.parametrize("values, message", [
    ({"dark_threshold": 100, "bright_threshold": 90},
     "[quality] needs 0 <= dark_threshold < bright_threshold <= 255, got 100.0 and 90.0"),
    ({"blur_threshold": -2}, "[quality] blur_threshold must be >= 0, got -2.0"),
    ({"clip_fraction": 2}, "[quality] clip_fraction must be in (0, 1], got 2.0"),
])
def test_config_errors_say_exactly_what_is_wrong(values, message):
    with pytest.raises(ConfigError) as info:
        QualityThresholds(**values)
    assert str(info.value) == message


def test_from_mapping_messages():
    with pytest.raises(ConfigError) as info:
        QualityThresholds.from_mapping({"blur": "3"})
    assert str(info.value) == ("[quality] has unknown key 'blur'; known: blur_threshold, dark_threshold, "
                               "bright_threshold, clip_fraction")
    with pytest.raises(ConfigError) as info:
        QualityThresholds.from_mapping({"clip_fraction": "many"})
    assert str(info.value) == "[quality] clip_fraction must be a number, got 'many'"


def test_quality_to_dict_rounding_and_repr():
    from edge.quality import Quality

    quality = Quality([("blurry", 12.345678)], 12.345678, 100.123456, 0.0, 0.0)
    assert quality.to_dict() == {"ok": False, "problems": [["blurry", 12.346]],
                                 "message": "Image quality: blurry - hold the camera still and focus",
                                 "sharpness": 12.35, "brightness": 100.12}
    assert repr(quality) == "Quality(ok=False, problems=[('blurry', 12.345678)])"


def test_single_channel_frames_and_small_frames_are_measured_as_they_are():
    grey = _checker(100, 140)[:, :, 0]
    one_channel = grey[:, :, None]
    assert sharpness(one_channel) == sharpness(grey)
    assert assess_quality(one_channel).to_dict() == assess_quality(grey).to_dict()
    # a 64x64 frame is not upscaled to the work size: the measure is the raw Laplacian variance
    expected = float(np.var(_laplacian(grey.astype(float))))
    assert sharpness(grey) == pytest.approx(expected, rel=1e-6)


def test_large_frames_are_reduced_by_area_averaging():
    # A one-pixel checkerboard at 4x the work size averages to flat grey: no texture left.
    large = _checker(100, 140, (WORK_SIZE * 4, WORK_SIZE * 4))
    assert sharpness(large) < 1.0
    assert assess_quality(large).brightness == pytest.approx(120.0, abs=0.01)


def test_thin_strips_keep_at_least_one_pixel():
    from edge.quality import _small_grey

    assert _small_grey(np.full((1, 1000, 3), 128, np.uint8)).shape == (1, WORK_SIZE)
    assert _small_grey(np.full((1000, 1, 3), 128, np.uint8)).shape == (WORK_SIZE, 1)


@pytest.mark.parametrize("count, index", [(150, 1), (151, 2)])
def test_calibration_percentile_index_and_rounding(count, index):
    """(count - 1) * 1 / 100 rounds to the index: 1.49 -> 1, 1.5 -> 2."""
    rng = np.random.RandomState(0)
    frames = [np.clip(128 + rng.randn(32, 32, 3) * s, 0, 255).astype(np.uint8) for s in range(1, count + 1)]
    values = sorted(sharpness(f) for f in frames)
    assert len(set(values)) == count
    result = calibrate_blur_threshold(frames)
    assert result["sharpness_percentile_1"] == round(values[index], 3)
    assert result["blur_threshold"] == round(values[index] * 0.5, 3) != round(values[index] * 0.5, 4)


def test_frames_between_half_and_full_work_size_are_not_resized():
    frame = _checker(100, 140, (200, 200))
    expected = float(np.var(_laplacian(frame[:, :, 0].astype(float))))
    assert sharpness(frame) == pytest.approx(expected, rel=1e-6)


def test_reduction_is_the_mean_of_each_pixel_block():
    """INTER_AREA at a 4x reduction averages 4x4 blocks; other interpolations sample pixels."""
    rng = np.random.RandomState(1)
    grey = rng.randint(0, 256, size=(WORK_SIZE * 4, WORK_SIZE * 4)).astype(np.uint8)
    blocks = grey.reshape(WORK_SIZE, 4, WORK_SIZE, 4).astype(float).mean(axis=(1, 3))
    expected = float(np.var(_laplacian(np.floor(blocks + 0.5))))
    assert sharpness(grey) == pytest.approx(expected, rel=0.02)
