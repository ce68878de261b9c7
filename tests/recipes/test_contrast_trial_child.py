"""The second contrast trial's third proxy family (``vendor``: another unit's rendering chain) and how it is
added to the shared trial (recipes.contrast_trial_child), on real child X-rays."""

import glob
import os

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.preprocess import load_image, normalise_contrast
from recipes import contrast_trial
from recipes.config import DEFAULT_DATA_ROOT
from recipes.contrast_trial_child import VENDOR_SETTINGS, main, vendor, with_proxies

CHILD = os.path.join(DEFAULT_DATA_ROOT, "chest-pediatric", "train", "*", "*.jpeg")


@pytest.fixture(scope="module")
def xrays():
    paths = sorted(glob.glob(CHILD))[::700][:4]
    if not paths:
        pytest.skip("no pediatric X-rays under {}".format(CHILD))
    return [load_image(p) for p in paths]


def test_vendor_is_deterministic_by_index_and_alternates_two_settings(xrays):
    image = xrays[0]
    assert len(VENDOR_SETTINGS) == 2
    np.testing.assert_array_equal(vendor(image, 0), vendor(image, 2))
    np.testing.assert_array_equal(vendor(image, 1), vendor(image, 3))
    assert not np.array_equal(vendor(image, 0), vendor(image, 1))
    before = image.copy()
    out = vendor(image, 0)
    assert np.array_equal(image, before)  # pure
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    grey = vendor(np.ascontiguousarray(image[:, :, 0]), 0)  # a grey input gives the same rendering
    np.testing.assert_array_equal(grey, out)


@pytest.mark.parametrize("index", [0, 1])
def test_vendor_is_a_real_shift_of_the_same_image(xrays, index):
    """Not a no-op (the grey levels move by 10+ on average) and not a different image (the structure is
    kept: correlation with the original above 0.8); the full 0-255 range is used, as a unit's output."""
    for image in xrays:
        grey = image[:, :, 0].astype(np.float64)
        out = vendor(image, index)[:, :, 0].astype(np.float64)
        assert np.abs(out - grey).mean() > 10
        assert np.corrcoef(out.ravel(), grey.ravel())[0, 1] > 0.8
        assert out.min() == 0 and out.max() == 255


def test_vendor_is_not_undone_by_any_candidate_exactly(xrays):
    """The family is not made of a candidate's own operation: after each normalisation the rendered image
    still differs from the original's normalisation."""
    for mode in ("equalize", "clahe", "equalize-clahe"):
        for image in xrays:
            small = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)
            shifted = cv2.resize(vendor(image, 0), (224, 224), interpolation=cv2.INTER_AREA)
            change = np.abs(normalise_contrast(shifted, mode).astype(int)
                            - normalise_contrast(small, mode).astype(int)).mean()
            assert change > 2, mode


def test_with_proxies_extends_the_trial_for_the_block_and_restores_it():
    before = dict(contrast_trial.PROXIES)
    with with_proxies({"vendor": vendor}) as proxies:
        assert list(proxies) == list(before) + ["vendor"]
        assert contrast_trial.PROXIES["vendor"] is vendor
    assert before == contrast_trial.PROXIES
    with pytest.raises(RuntimeError), with_proxies({"vendor": vendor}):
        raise RuntimeError("a failed trial")
    assert before == contrast_trial.PROXIES


def test_with_proxies_refuses_a_name_the_trial_already_has():
    with pytest.raises(ConfigError) as info, with_proxies({"exposure": vendor}):
        pass
    assert "'exposure'" in str(info.value) and "Fix:" in str(info.value)
    assert contrast_trial.PROXIES["exposure"] is not vendor


@pytest.mark.parametrize("argv, words", [
    (["--modes", "equalize,gamma"], ["'gamma'", "Fix:"]),
    (["--proxy-every", "0"], ["--proxy-every 0", "Fix:"]),
])
def test_the_cli_refuses_bad_arguments_in_one_line(argv, words, capsys):
    assert main(argv) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text
    for word in words:
        assert word in text
