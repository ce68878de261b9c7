"""The per-image contrast normalisation (``input.contrast``): known inputs -> known outputs, an already
normalised image unchanged, blank frames kept blank, colour kept, the description field, and the device's
``edge.classify.prepare`` applying it. Python 3.6 compatible (the device tests run under it)."""

import cv2
import numpy as np
import pytest

from edge import preprocess as pre
from edge.description import CONTRAST_MODES, DescriptionError, InputSpec, ModelDescription
from edge.preprocess import load_image, normalise_contrast, preprocess

MAPPED = sorted(pre.CONTRAST_MODES)
BLANK_NOISE_GAIN = {"equalize-clahe": 7}


def _grey(image):
    return np.dstack([image, image, image])


def _tile_uniform(size=224, grid=8, seed=0):
    """Every CLAHE tile holds each grey level equally often (already equalised, locally and globally)."""
    rng = np.random.RandomState(seed)
    tile = size // grid
    out = np.empty((size, size), np.uint8)
    levels = (np.arange(tile * tile) * 256 // (tile * tile)).astype(np.uint8)
    for row in range(grid):
        for col in range(grid):
            block = rng.permutation(levels).reshape(tile, tile)
            out[row * tile:(row + 1) * tile, col * tile:(col + 1) * tile] = block
    return out


def test_the_description_and_preprocess_know_the_same_modes():
    assert set(CONTRAST_MODES) == {"none"} | set(pre.CONTRAST_MODES)


def test_none_is_todays_preprocessing_exactly(real_xray):
    image = load_image(real_xray)
    pixels = np.ascontiguousarray(image[:64, :64])
    assert normalise_contrast(pixels, "none") is pixels
    np.testing.assert_array_equal(preprocess(image, InputSpec(64, 64)), preprocess(image, InputSpec(64, 64,
                                                                                                   contrast="none")))


def test_stretch_maps_known_percentiles_to_the_full_range():
    # 128 grey levels 64..191, each 392 times: the 1st percentile is level 65, the 99th level 190.
    grey = np.repeat(np.arange(64, 192, dtype=np.uint8), 392).reshape(224, 224)
    out = normalise_contrast(grey[:, :, None], "stretch")[:, :, 0]
    gain = 255.0 / (190 - 65)
    expected = np.clip(np.round((np.arange(256) - (65 + 190) / 2.0) * gain + 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected[grey])
    assert out.min() == 0 and out.max() == 255


def test_stretch_gain_is_capped_at_its_limit():
    grey = np.repeat(np.arange(100, 116, dtype=np.uint8), 224 * 14).reshape(224, 224)  # 16 levels
    out = normalise_contrast(grey[:, :, None], "stretch")[:, :, 0].astype(np.float64)
    steps = np.diff(np.unique(out))
    assert steps.max() == pytest.approx(pre.CONTRAST_MAX_GAIN, abs=1.0)  # 3 levels per level, not 255/15
    assert out.max() - out.min() <= pre.CONTRAST_MAX_GAIN * 15 + 1


def test_equalize_flattens_a_skewed_histogram():
    rng = np.random.RandomState(1)
    skewed = np.clip(rng.gamma(2.0, 20.0, (224, 224)), 0, 255).astype(np.uint8)  # mostly dark
    out = normalise_contrast(skewed[:, :, None], "equalize")[:, :, 0]
    assert np.median(out) > np.median(skewed) + 40  # the dark majority spread upwards
    order = np.argsort(skewed.ravel(), kind="mergesort")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # monotonic: the same image, re-levelled


@pytest.mark.parametrize("mode", MAPPED)
def test_an_already_normalised_image_is_unchanged(mode):
    flat = _tile_uniform()
    out = normalise_contrast(flat[:, :, None], mode)[:, :, 0].astype(int)
    assert np.abs(out - flat.astype(int)).max() <= 4, mode
    assert np.abs(out - flat.astype(int)).mean() <= 2.0, mode


@pytest.mark.parametrize("mode", MAPPED)
def test_a_blank_frame_stays_blank(mode):
    rng = np.random.RandomState(2)
    blank = np.clip(120 + rng.normal(0, 3, (224, 224)), 0, 255).astype(np.uint8)
    out = normalise_contrast(_grey(blank), mode)
    # contrast-limited: the noise is amplified at most ~5x (the input check's contrast term still sees a
    # nearly uniform frame: a real X-ray's grey spread is 40-70), never stretched to the full range;
    # equalisation then CLAHE compounds two limited gains (measured 6.5x)
    assert blank.std() < 3.2
    assert out[:, :, 0].std() < BLANK_NOISE_GAIN.get(mode, 5) * blank.std(), mode
    assert out.min() > 40 and out.max() < 215, mode


@pytest.mark.parametrize("mode", MAPPED)
def test_an_xray_stays_grey_and_a_colour_photo_keeps_its_colour(mode, real_xray):
    xray = cv2.resize(load_image(real_xray), (224, 224), interpolation=cv2.INTER_AREA)
    out = normalise_contrast(xray, mode)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    single = normalise_contrast(np.ascontiguousarray(xray[:, :, :1]), mode)
    np.testing.assert_array_equal(out[:, :, :1], single)  # RGB and GRAY models see the same grey
    rng = np.random.RandomState(3)
    photo = np.clip(rng.normal(128, 30, (224, 224, 3)), 0, 255).astype(np.uint8)
    photo[:, :, 0] = np.clip(photo[:, :, 0].astype(int) + 40, 0, 255)  # a colour cast
    before = photo.copy()
    mapped = normalise_contrast(photo, mode)
    assert np.array_equal(photo, before)  # pure
    spread_in = photo.max(axis=2).astype(int) - photo.min(axis=2)
    spread_out = mapped.max(axis=2).astype(int) - mapped.min(axis=2)
    unclipped = (mapped.min(axis=2) > 0) & (mapped.max(axis=2) < 255)
    np.testing.assert_array_equal(spread_out[unclipped], spread_in[unclipped])  # chroma kept exactly
    assert unclipped.mean() > 0.8


@pytest.mark.parametrize("mode", MAPPED)
def test_preprocess_normalises_after_the_resize(mode, real_xray):
    image = load_image(real_xray)
    spec = InputSpec(224, 224, contrast=mode)
    resized = cv2.cvtColor(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    expected = normalise_contrast(resized, mode).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(preprocess(image, spec)[0], expected)
    assert not np.array_equal(expected, resized.transpose(2, 0, 1))


def test_unknown_mode_is_refused_naming_the_choices():
    with pytest.raises(DescriptionError) as info:
        normalise_contrast(np.zeros((8, 8, 1), np.uint8), "gamma")
    assert "input.contrast" in str(info.value) and "equalize" in str(info.value)


def test_the_description_field_round_trips_and_is_absent_when_none():
    spec = InputSpec(224, 224, contrast="clahe")
    assert spec.to_dict()["contrast"] == "clahe"
    assert InputSpec.from_dict(spec.to_dict()) == spec
    description = ModelDescription("efficientnet_lite0", "multiclass", ["Normal", "Pneumonia"], spec)
    again = ModelDescription.from_dict(description.to_dict())
    assert again.input.contrast == "clahe" and again == description
    assert again.replace(temperature=2.0).input.contrast == "clahe"
    old = InputSpec(224, 224).to_dict()
    assert "contrast" not in old  # descriptions written before the field: byte-identical
    assert InputSpec.from_dict(old).contrast == "none"


def test_the_description_refuses_an_unknown_mode_and_names_the_fix():
    data = dict(InputSpec(224, 224).to_dict(), contrast="histogram")
    with pytest.raises(DescriptionError) as info:
        InputSpec.from_dict(data)
    message = str(info.value)
    assert info.value.field == "input.contrast"
    assert "'histogram'" in message and "equalize" in message and "Fix:" in message


class _Bundle(object):
    """The fields ``edge.classify.prepare`` reads of a bundle (a real one needs an exported graph)."""

    def __init__(self, spec):
        self.description = ModelDescription("efficientnet_lite0", "multiclass", ["Normal", "Pneumonia"], spec,
                                            extra={"module": "pediatric-pneumonia"})
        self.module_id = "pediatric-pneumonia"


@pytest.mark.parametrize("mode", MAPPED)
def test_the_device_path_applies_the_bundles_normalisation(mode, real_xray):
    from edge.classify import prepare

    image = load_image(real_xray)
    spec = InputSpec(224, 224, contrast=mode)
    prepared = prepare(image, _Bundle(spec))
    np.testing.assert_array_equal(prepared.batch, preprocess(image, spec))
    plain = prepare(image, _Bundle(InputSpec(224, 224)))
    assert not np.array_equal(prepared.batch, plain.batch)


@pytest.mark.parametrize("mode", MAPPED)
def test_two_equal_channels_are_not_taken_for_grey(mode):
    rng = np.random.RandomState(4)
    grey = np.clip(rng.normal(128, 30, (64, 64)), 0, 255).astype(np.uint8)
    pixels = np.dstack([grey, grey, np.clip(grey.astype(int) + 20, 0, 255).astype(np.uint8)])
    out = normalise_contrast(pixels, mode)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and not np.array_equal(out[:, :, 1], out[:, :, 2])
    offset = out.astype(int) - pixels.astype(int)
    unclipped = (out > 0).all(axis=2) & (out < 255).all(axis=2)
    assert np.array_equal(offset[:, :, 0][unclipped], offset[:, :, 2][unclipped])  # one offset per pixel
