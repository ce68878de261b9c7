"""training.datasets.ImageDataset: dtype/shape/targets, device-equal pixels, cache, label errors."""

import numpy as np
import pytest
import torch

from edge.description import InputSpec
from edge.errors import ConfigError, ImageError
from edge.preprocess import load_image, preprocess
from training.data import Sample, samples_from_folder
from training.datasets import ImageDataset
from training.synth import generate_dataset


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    generate_dataset(str(root), num_classes=3, per_class=3, size=80, seed=2)
    return list(samples_from_folder(str(root)))


def test_multiclass_items(samples):
    classes = ["circle", "square", "triangle"]
    spec = InputSpec(48, 40, "RGB")
    dataset = ImageDataset(samples, classes, spec, "multiclass")
    assert len(dataset) == 9
    for index, sample in enumerate(samples):
        image, target = dataset[index]
        assert image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 40)
        assert target == classes.index(sample.labels[0])
        np.testing.assert_array_equal(image.numpy(), preprocess(load_image(sample.path), spec)[0])
    assert dataset.targets() == [classes.index(s.labels[0]) for s in samples]


def test_multilabel_and_gray(samples):
    classes = ["circle", "square", "triangle", "star"]
    both = samples[0]._replace(labels=("circle", "star"))
    dataset = ImageDataset([both] + samples[1:], classes, InputSpec(32, 32, "GRAY"), "multilabel")
    image, target = dataset[0]
    assert tuple(image.shape) == (1, 32, 32)
    assert target.dtype == torch.float32 and target.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert float(image.max()) <= 255.0


def test_cache_keeps_resized_pixels(samples, tmp_path):
    spec = InputSpec(32, 32, "RGB")
    dataset = ImageDataset(samples, ["circle", "square", "triangle"], spec, "multiclass", cache=True)
    first, _ = dataset[0]
    assert dataset.cache[0].shape == (32, 32, 3) and dataset.cache[0].dtype == np.uint8
    again, _ = dataset[0]
    assert torch.equal(first, again)


def test_label_errors(samples, tmp_path):
    spec = InputSpec(32, 32, "RGB")
    with pytest.raises(ConfigError, match="not among the classes"):
        ImageDataset(samples, ["circle"], spec, "multiclass")
    two = samples[0]._replace(labels=("circle", "square"))
    with pytest.raises(ConfigError, match="multiclass"):
        ImageDataset([two], ["circle", "square"], spec, "multiclass")
    with pytest.raises(ConfigError):
        ImageDataset(samples, ["circle"], spec, "regression")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    dataset = ImageDataset([Sample(str(broken), ("circle",), "x")], ["circle", "square"], spec, "multiclass")
    with pytest.raises(ImageError):
        dataset[0]
