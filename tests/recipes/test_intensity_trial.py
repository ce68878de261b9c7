"""recipes.intensity_trial: the training family and the proxy family on a real X-ray."""

import glob
import os

import numpy as np
import pytest

from edge.description import InputSpec
from edge.preprocess import load_image
from recipes.config import DEFAULT_DATA_ROOT
from recipes.intensity_trial import intensity, processing, rendered
from training.data import Sample

CHILD = os.path.join(DEFAULT_DATA_ROOT, "chest-pediatric", "train", "NORMAL", "*.jpeg")


@pytest.fixture(scope="module")
def paths():
    found = sorted(glob.glob(CHILD))[:3]
    if not found:
        pytest.skip("no pediatric X-rays under {}".format(CHILD))
    return found


def test_intensity_is_seeded_and_changes_the_image(paths):
    image = load_image(paths[0])
    first = intensity(image, np.random.RandomState(3))
    assert np.array_equal(first, intensity(image, np.random.RandomState(3)))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.abs(first.astype(int) - image.astype(int)).mean() > 1.0
    assert not np.array_equal(first, intensity(image, np.random.RandomState(4)))


def test_processing_equalises_locally_and_stays_grey(paths):
    image = load_image(paths[0])
    out = processing(image)
    assert out.shape[:2] == image.shape[:2] and out.ndim == 3
    assert np.array_equal(out[..., 0], out[..., 1])  # grey replicated, as the device feeds X-rays
    assert out.std() > image.std()  # CLAHE + unsharp mask raise the contrast


def test_rendered_batches_follow_the_input_contract(paths):
    samples = [Sample(p, ("Normal",), "p{}".format(i)) for i, p in enumerate(paths)]
    batch = rendered(samples, InputSpec(64, 64), processing)
    assert tuple(batch.shape) == (3, 3, 64, 64) and str(batch.dtype) == "torch.uint8"


@pytest.mark.parametrize("argv, option", [(["--every", "0"], "--every"),
                                          (["--proxy-every", "0"], "--proxy-every")])
def test_a_count_below_one_is_refused_in_one_line_before_any_work(argv, option, capsys, monkeypatch):
    from recipes import intensity_trial

    monkeypatch.setattr(intensity_trial, "frozen_setup", None)  # any work past the check would fail loudly
    assert intensity_trial.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "medkiosk: error: {} 0 is not a count. Fix: pass {} 1 or more\n".format(
        option, option)
