"""training.augment: presets change train images (shape/dtype/range kept), never val/test; balancing."""

import collections

import pytest
import torch

from edge.description import InputSpec
from edge.errors import ConfigError
from edge.preprocess import load_image, preprocess
from training.augment import balanced_sampler, build_transform, class_weights
from training.data import Sample, samples_from_folder
from training.datasets import ImageDataset
from training.splits import make_split
from training.synth import generate_dataset, generate_skin_like

SPEC = InputSpec(64, 64, "RGB")


@pytest.fixture(scope="module")
def skin_image(tmp_path_factory):
    path = generate_skin_like(str(tmp_path_factory.mktemp("skin")), 1, size=64)[0]
    return torch.from_numpy(preprocess(load_image(path), SPEC)[0].copy())


@pytest.mark.parametrize("preset", ["skin", "chest-xray"])
def test_presets_change_images_keep_format(skin_image, preset):
    transform = build_transform(preset, SPEC)
    before = skin_image.clone()
    torch.manual_seed(0)
    outputs = [transform(skin_image) for _ in range(4)]
    assert torch.equal(skin_image, before)  # input not modified in place
    for out in outputs:
        assert out.shape == skin_image.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    assert any(float((out - skin_image).abs().mean()) > 1.0 for out in outputs)
    assert not torch.equal(outputs[0], outputs[1])


def test_chest_preset_keeps_grey_grey():
    torch.manual_seed(1)
    grey = torch.rand(1, 64, 64) * 255.0
    rgb = grey.repeat(3, 1, 1)
    out = build_transform("chest-xray", SPEC)(rgb)
    assert torch.allclose(out[0], out[1], atol=1e-3) and torch.allclose(out[1], out[2], atol=1e-3)
    gray_spec = InputSpec(64, 64, "GRAY")
    assert build_transform("chest-xray", gray_spec)(grey).shape == (1, 64, 64)
    assert build_transform("skin", gray_spec)(grey).shape == (1, 64, 64)


def test_none_and_unknown(skin_image):
    assert torch.equal(build_transform("none", SPEC)(skin_image), skin_image)
    with pytest.raises(ConfigError):
        build_transform("sepia", SPEC)
    with pytest.raises(ConfigError):
        build_transform("skin", SPEC)(skin_image.to(torch.uint8))


def test_augmentation_only_on_train_split(tmp_path):
    generate_dataset(str(tmp_path), num_classes=2, per_class=10, size=64)
    samples = samples_from_folder(str(tmp_path))
    split = make_split(samples, seed=0)
    classes = ["circle", "square"]
    train = ImageDataset(split.train, classes, SPEC, "multiclass", transform=build_transform("skin", SPEC))
    val = ImageDataset(split.val, classes, SPEC, "multiclass")
    test = ImageDataset(split.test, classes, SPEC, "multiclass")
    torch.manual_seed(0)
    image, _ = train[0]
    device_view = torch.from_numpy(preprocess(load_image(split.train[0].path), SPEC)[0])
    assert not torch.equal(image, device_view)
    for dataset, part in ((val, split.val), (test, split.test)):
        for index, sample in enumerate(part):
            expected = torch.from_numpy(preprocess(load_image(sample.path), SPEC)[0])
            assert torch.equal(dataset[index][0], expected)


def _samples(counts):
    return [Sample("{}{}.png".format(label, i), (label,), "{}{}".format(label, i))
            for label, n in counts.items() for i in range(n)]


def test_class_weights():
    samples = _samples({"a": 30, "b": 10})
    weights = class_weights(samples, ["a", "b", "c"])
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])
    with pytest.raises(ConfigError):
        class_weights(samples, ["a"])


def test_balanced_sampler_draws_classes_evenly():
    samples = _samples({"a": 90, "b": 10})
    sampler = balanced_sampler(samples, ["a", "b"], num_samples=2000, seed=0)
    drawn = collections.Counter(samples[i].labels[0] for i in sampler)
    assert 0.4 < drawn["b"] / 2000 < 0.6
    first, second = (list(balanced_sampler(samples, ["a", "b"], seed=3)) for _ in range(2))
    assert first == second


def test_offline_chest_preset_never_flips(tmp_path):
    from training.offline import augment_split

    generate_dataset(str(tmp_path / "data"), num_classes=2, per_class=6, size=48)
    split = make_split(samples_from_folder(str(tmp_path / "data")), seed=0)
    report = augment_split(split, str(tmp_path / "out"), per_class=15, preset="chest-xray", seed=1)
    augmented = [f for f in report["files"] if f["techniques"]]
    assert len(augmented) == 30 - len(split.train)
    assert all("flip" not in t and "sat" not in t for f in augmented for t in f["techniques"])
    assert all(f["source"] in {s.path for s in split.train} for f in report["files"])
    with pytest.raises(ConfigError):
        augment_split(split, str(tmp_path / "bad"), per_class=5, preset="none")


def _xray_tensor(real_xray, spec=SPEC):
    return torch.from_numpy(preprocess(load_image(real_xray), spec)[0].copy())


def test_photo_preset_degrades_a_real_xray_like_the_camera_path(real_xray):
    import numpy as np

    from training.augment import PHOTO_PROBABILITY, PhotoTransform, photo_degrade

    spec = InputSpec(224, 224, "RGB")
    image = _xray_tensor(real_xray, spec)
    transform = build_transform("chest-xray-photo", spec)
    torch.manual_seed(3)
    outputs = [transform(image) for _ in range(12)]
    torch.manual_seed(3)
    again = [transform(image) for _ in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(outputs, again))  # seeded training repeats it
    for out in outputs:
        assert out.shape == image.shape and out.dtype == torch.float32
        assert torch.equal(out[0], out[1]) or torch.allclose(out[0], out[1], atol=1e-3)  # grey stays grey
    grey = image[0].numpy().astype(np.uint8)
    degraded = photo_degrade(grey, np.random.RandomState(0))
    assert degraded.shape == grey.shape and degraded.dtype == np.uint8
    assert np.abs(degraded.astype(float) - grey).mean() > 5  # visibly changed ...
    assert np.corrcoef(degraded.ravel(), grey.ravel())[0, 1] > 0.6  # ... yet the same X-ray
    # Applied with its probability: some draws untouched, some degraded.
    photo = PhotoTransform()
    torch.manual_seed(0)
    changed = [not torch.equal(photo(image), image) for _ in range(40)]
    assert 0 < sum(changed) < 40 and abs(sum(changed) / 40.0 - PHOTO_PROBABILITY) < 0.25
    assert not any(torch.equal(PhotoTransform(probability=1.0)(image), image) for _ in range(3))
