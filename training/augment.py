"""Training-time augmentation presets and class-balancing helpers.

Transforms apply to the TRAIN split only, on a CHW float32 tensor with raw 0-255 values (the
dataset's output), and return the same shape, dtype and range. Validation and test images go
through ``edge.preprocess`` unchanged so they match what the device sees.

Presets:
- ``skin``: flips (both axes: a lesion photo has no up or down), rotation, scale/shift, crop,
  colour jitter (lighting and camera white balance vary).
- ``chest-xray``: small rotation, scale and shift, brightness/contrast. No colour, no flips: an
  X-ray has a fixed orientation (the heart is on the patient's left, markers read one way).
- ``none``: identity.
"""

import torch
from torchvision.transforms import v2

from edge.errors import ConfigError
from training.modules import AUGMENTATION_PRESETS


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


PRESETS = {"skin": _skin, "chest-xray": _chest_xray}


def build_transform(preset, input_spec):
    """The training transform for ``preset`` (skin, chest-xray, none) at the model's input size."""
    if preset in (None, "", "none"):
        return Identity()
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
