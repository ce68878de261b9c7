"""training.datasets.ImageDataset with a contrast normalisation: the device's pixels, per mode."""

import numpy as np
import pytest

from edge.description import InputSpec
from edge.preprocess import load_image, preprocess
from training.data import samples_from_folder
from training.datasets import ImageDataset
from training.synth import generate_dataset


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    generate_dataset(str(root), num_classes=2, per_class=2, size=80, seed=3)
    return list(samples_from_folder(str(root)))


@pytest.mark.parametrize("mode", ["equalize", "clahe", "stretch"])
def test_items_are_the_devices_normalised_pixels(mode, samples):
    classes = sorted({s.labels[0] for s in samples})
    spec = InputSpec(48, 40, "RGB", contrast=mode)
    dataset = ImageDataset(samples, classes, spec, "multiclass")
    for index, sample in enumerate(samples):
        expected = preprocess(load_image(sample.path), spec)[0]
        np.testing.assert_array_equal(dataset[index][0].numpy(), expected)
        plain = preprocess(load_image(sample.path), InputSpec(48, 40, "RGB"))[0]
        assert not np.array_equal(expected, plain)
