"""Training-time augmentation presets and class-balancing helpers.

Transforms apply to the TRAIN split only, on a CHW float32 tensor with raw 0-255 values (the
dataset's output), and return the same shape, dtype and range. Validation and test images go
through ``edge.preprocess`` unchanged so they match what the device sees.

Presets:
- ``skin``: flips (both axes: a lesion photo has no up or down), rotation, scale/shift, crop,
  colour jitter (lighting and camera white balance vary).
- ``chest-xray``: small rotation, scale and shift, brightness/contrast. No colour, no flips: an
  X-ray has a fixed orientation (the heart is on the patient's left, markers read one way).
- ``chest-xray-photo``: ``chest-xray`` plus, with probability ``PHOTO_PROBABILITY``, the ``photo``
  family: an X-ray as the camera path hands it to the model (edge.locate's rectified crop after
  ``edge.preprocess.normalise_crop``), following CheXphoto's synthetic transformations (Phillips et
  al. 2020): residual perspective of the outline, backlight lift (the film's grey range compressed),
  light gradient, glare spot, moire (screens), defocus, sensor noise, JPEG 60-90, then the device's
  normalisation. Tint is not drawn: normalise_crop makes every crop grey.
- ``none``: identity.
"""

import math

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from edge.errors import ConfigError
from edge.preprocess import normalise_crop
from training.modules import AUGMENTATION_PRESETS

PHOTO_PROBABILITY = 0.5


class RawPixelTransform(object):
    """Runs torchvision v2 transforms on a 0-255 float tensor (v2 colour ops expect floats in 0-1)."""

    def __init__(self, preset, transforms):
        self.preset = preset
        self.pipeline = v2.Compose(list(transforms))

    def __call__(self, image):
        if not isinstance(image, torch.Tensor) or image.dtype != torch.float32 or image.ndim != 3:
            raise ConfigError("augmentation expects a CHW float32 tensor, got {}".format(
                getattr(image, "dtype", type(image).__name__)))
        out = self.pipeline(image / 255.0)
        return (out.clamp_(0.0, 1.0) * 255.0).contiguous()

    def __repr__(self):
        return "RawPixelTransform({!r}, {!r})".format(self.preset, self.pipeline)


class Identity(object):
    """The ``none`` preset: returns the image unchanged."""

    preset = "none"

    def __call__(self, image):
        return image

    def __repr__(self):
        return "Identity()"


def _skin(input_spec):
    size = (input_spec.height, input_spec.width)
    colour = []
    if input_spec.colour == "RGB":
        colour = [v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2, hue=0.03)]
    else:
        colour = [v2.ColorJitter(brightness=0.25, contrast=0.25)]
    return [
        v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.85, 1.15), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomAffine(degrees=25, translate=(0.05, 0.05), scale=(0.9, 1.1)),
    ] + colour


def _chest_xray(input_spec):
    return [
        v2.RandomAffine(degrees=7, translate=(0.04, 0.04), scale=(0.93, 1.07)),
        # Brightness and contrast act equally on all channels, so replicated grey stays grey.
        v2.ColorJitter(brightness=0.15, contrast=0.15),
    ]


def _corner_jitter(rng, image, fraction=0.02):
    """Residual perspective: the located outline is off by up to ``fraction`` of a side per corner."""
    height, width = image.shape[:2]
    source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = (source + rng.uniform(-fraction, fraction, (4, 2)) * [width, height]).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(moved, source)
    return cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def _gradient(rng, height, width, low):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = xs / width * math.cos(theta) + ys / height * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    return low + (1.0 - low) * ramp


def photo_degrade(grey, rng):
    """One grey uint8 X-ray -> the same X-ray as the camera path delivers it (see the module doc)."""
    height, width = grey.shape
    image = _corner_jitter(rng, grey).astype(np.float32)
    screen = rng.uniform() < 0.5
    if screen:  # a monitor: black level lifted, moire
        black, white = rng.uniform(32, 50), rng.uniform(200, 240)
        image = black + (white - black) * image / 255.0
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        theta, period = rng.uniform(0, math.pi), rng.uniform(2.5, 6.0)
        image *= 1.0 + rng.uniform(0.02, 0.05) * np.sin((xs * math.cos(theta) + ys * math.sin(theta))
                                                          * 2 * math.pi / period)
    else:  # film on a lightbox: backlight times transmission
        low, high = rng.uniform(0.05, 0.15), rng.uniform(0.72, 0.85)
        image = rng.uniform(215, 250) * (low + (high - low) * image / 255.0)
    image *= _gradient(rng, height, width, rng.uniform(0.8, 0.97))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy, sigma = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.03, 0.12) * width
    image += rng.uniform(25, 110) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
    blur = rng.uniform(0.0, 1.2)
    if blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image += rng.normal(0, rng.uniform(1.5, 6.0), image.shape).astype(np.float32)
    ok, encoded = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.randint(60, 91))])
    return normalise_crop(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE))[:, :, 0]


class PhotoTransform(object):
    """The ``photo`` family on a CHW float32 0-255 tensor, drawn from torch's RNG (so a seeded
    training run repeats it and DataLoader workers differ); applied with ``probability``."""

    def __init__(self, probability=PHOTO_PROBABILITY):
        self.probability = float(probability)

    def __call__(self, image):
        if float(torch.rand(())) >= self.probability:
            return image
        rng = np.random.RandomState(int(torch.randint(0, 2 ** 31 - 1, ())))
        channels = image.shape[0]
        grey = image.mean(dim=0).clamp(0, 255).to(torch.uint8).numpy()
        out = torch.from_numpy(photo_degrade(grey, rng).astype(np.float32))
        return out.unsqueeze(0).expand(channels, -1, -1).contiguous()

    def __repr__(self):
        return "PhotoTransform(probability={})".format(self.probability)


class Sequence(object):
    """Transforms applied one after the other (a preset made of a v2 pipeline and the photo family)."""

    def __init__(self, preset, transforms):
        self.preset = preset
        self.transforms = list(transforms)

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self):
        return "Sequence({!r}, {!r})".format(self.preset, self.transforms)


PRESETS = {"skin": _skin, "chest-xray": _chest_xray}
# Presets that add the photo family after a v2 preset: name -> the v2 preset it builds on.
PHOTO_PRESETS = {"chest-xray-photo": "chest-xray"}


def build_transform(preset, input_spec):
    """The training transform for ``preset`` (skin, chest-xray, chest-xray-photo, none) at the model's
    input size."""
    if preset in (None, "", "none"):
        return Identity()
    if preset in PHOTO_PRESETS:
        base = PHOTO_PRESETS[preset]
        return Sequence(preset, [RawPixelTransform(base, PRESETS[base](input_spec)), PhotoTransform()])
    if preset not in PRESETS:
        raise ConfigError("unknown augmentation preset {!r}. Fix: use one of {}".format(
            preset, ", ".join(AUGMENTATION_PRESETS)))
    return RawPixelTransform(preset, PRESETS[preset](input_spec))


def _label_counts(samples, classes):
    index = {c: i for i, c in enumerate(classes)}
    counts = [0] * len(classes)
    for sample in samples:
        for label in sample.labels:
            if label not in index:
                raise ConfigError("label {!r} of {} is not one of the classes {}".format(
                    label, sample.path, list(classes)))
            counts[index[label]] += 1
    return counts


def class_weights(samples, classes):
    """Inverse-frequency weight per class (mean 1 over present classes), as a float32 tensor.

    Use as ``CrossEntropyLoss(weight=...)``; a class with no images gets weight 0.
    """
    counts = _label_counts(samples, classes)
    present = [c for c in counts if c > 0]
    if not present:
        raise ConfigError("no samples to compute class weights from")
    total = float(sum(present))
    weights = [total / (len(present) * c) if c > 0 else 0.0 for c in counts]
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sampler(samples, classes, num_samples=None, seed=0):
    """A WeightedRandomSampler drawing every class about equally often (multi-label: by the rarest
    label of each image)."""
    from torch.utils.data import WeightedRandomSampler

    counts = _label_counts(samples, classes)
    index = {c: i for i, c in enumerate(classes)}
    weights = []
    for sample in samples:
        rarest = min(counts[index[label]] for label in sample.labels) if sample.labels else max(counts)
        weights.append(1.0 / rarest)
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return WeightedRandomSampler(torch.tensor(weights, dtype=torch.double),
                                 num_samples=int(num_samples or len(samples)), replacement=True,
                                 generator=generator)
