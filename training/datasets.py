"""The PyTorch dataset: image files -> (CHW float32 tensor of raw 0-255 pixels, target).

Loading, resizing and colour conversion are ``edge.preprocess``'s functions, so an image without
augmentation is exactly the tensor the device feeds its model.
"""

import numpy as np
import torch
from torch.utils.data import Dataset

from edge.description import TASKS
from edge.errors import ConfigError
from edge.preprocess import load_image, normalise_contrast, resize_to_input, to_model_colour


class ImageDataset(Dataset):
    """Samples -> ``(image, target)``; target is a class index (multiclass) or a float multi-hot
    vector (multilabel).

    ``cache=True`` keeps each resized uint8 image in memory after its first load (a 224x224 RGB
    image is 150 KB; 5000 images about 750 MB), which speeds up CPU training a lot. With DataLoader
    workers each worker fills its own cache.
    """

    def __init__(self, samples, classes, input_spec, task, transform=None, cache=False):
        if task not in TASKS:
            raise ConfigError("task must be one of {}, got {!r}".format(sorted(TASKS), task))
        self.samples = list(samples)
        self.classes = list(classes)
        self.input_spec = input_spec
        self.task = task
        self.transform = transform
        self.cache = {} if cache else None
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._targets = [self._target(sample) for sample in self.samples]

    def _target(self, sample):
        unknown = [label for label in sample.labels if label not in self._index]
        if unknown or not sample.labels:
            raise ConfigError("{}: labels {} are not among the classes {}".format(
                sample.path, list(sample.labels), self.classes))
        if self.task == "multiclass":
            if len(sample.labels) != 1:
                raise ConfigError("{}: has {} labels {} but the task is multiclass. Fix: drop multi-finding "
                                  "images or train multilabel".format(sample.path, len(sample.labels),
                                                                      list(sample.labels)))
            return self._index[sample.labels[0]]
        hot = torch.zeros(len(self.classes), dtype=torch.float32)
        for label in sample.labels:
            hot[self._index[label]] = 1.0
        return hot

    def __len__(self):
        return len(self.samples)

    def pixels(self, index):
        """The resized image in the model's colour, contrast-normalised as the description says: HxWxC
        uint8 (cached when enabled), the pixels ``edge.preprocess.preprocess`` gives."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        image = load_image(self.samples[index].path)
        resized = resize_to_input(image, self.input_spec)
        pixels = np.ascontiguousarray(normalise_contrast(to_model_colour(resized, self.input_spec),
                                                         self.input_spec.contrast))
        if self.cache is not None:
            self.cache[index] = pixels
        return pixels

    def targets(self):
        """All targets, in sample order (ints for multiclass, multi-hot tensors for multilabel)."""
        return list(self._targets)

    def __getitem__(self, index):
        tensor = torch.from_numpy(self.pixels(index)).permute(2, 0, 1).to(torch.float32)
        if self.transform is not None:
            tensor = self.transform(tensor)
        target = self._targets[index]
        if isinstance(target, torch.Tensor):
            target = target.clone()
        return tensor, target
