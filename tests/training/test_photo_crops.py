"""training.photo_crops: photographed TRAIN/VAL crops cut out by the device's path, never the test split."""

import glob
import os

import numpy as np
import pytest

from edge.errors import ConfigError
from training.data import Sample, strided
from training.photo_crops import camera_crop, negative_images, render_crops

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data")


def test_strided_keeps_order_and_spreads_over_the_list():
    items = list(range(10))
    assert strided(items, 5) == [0, 2, 4, 6, 8]
    assert strided(items, None) == items and strided(items, 20) == items
    assert strided(items, 1) == [0]


def test_the_test_split_is_never_rendered_for_training():
    with pytest.raises(ConfigError, match="never trained on"):
        render_crops([], "test")


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside this checkout")
def test_crops_are_what_the_device_analyses_and_are_seeded():
    paths = sorted(glob.glob(os.path.join(SHARED, "chest-nih", "images", "*.png")))[:2]
    samples = [Sample(p, ("No Finding",), str(i)) for i, p in enumerate(paths)]
    kept, crops, methods = render_crops(samples, "train", renders=2)
    assert [s.path for s in kept] == [paths[0], paths[0], paths[1], paths[1]]
    assert set(methods) <= {"lightbox", "screen"}  # located, not the fixed guide rectangle
    for crop in crops:
        assert crop.dtype == np.uint8 and crop.ndim == 3 and min(crop.shape[:2]) > 200
        assert np.array_equal(crop[:, :, 0], crop[:, :, 2])  # normalise_crop: grey, colour cast removed
    again = render_crops(samples[:1], "train", renders=1)[1][0]
    assert np.array_equal(again, crops[0])
    val = render_crops(samples[:1], "val", renders=1)[1][0]
    assert val.shape != crops[0].shape or not np.array_equal(val, crops[0])  # another seed per part


def test_negatives_are_non_xrays_as_the_device_sees_them():
    images = negative_images(seed=1)
    kinds = {name.split(":")[0] for name, _image in images}
    assert {"skin-like", "shapes", "blank", "noise", "generated-documents", "generated-wall",
            "generated-empty-lightbox", "generated-blank-monitor", "generated-skin"} <= kinds
    assert {name.split(":")[1] for name, _image in images} == {"frame", "on-lightbox"}
    full = np.full((720, 1280, 3), 128, np.uint8)
    assert camera_crop(full)[0].ndim == 3
