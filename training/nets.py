"""The trained network and the deployed graph.

``ClassifierNet``: raw pixels (float32 NCHW, 0..255, the description's colour) -> logits. The
normalisation ``(x/255 - mean)/std`` lives inside as buffers, so the exported graph takes the
same raw pixels ``edge.preprocess`` produces. A GRAY input is normalised with its one mean/std and
repeated to 3 channels inside the graph, so ImageNet-pretrained backbones still apply.

``DeployModel``: what gets exported: probabilities = softmax|sigmoid(logits / T), plus an optional
second output ``ood_score`` [N] from an attached ``ood_head``.
"""

import inspect

import torch
from torch import nn

from edge.description import COLOURS, IMAGENET_MEAN, IMAGENET_STD


def default_normalisation(colour):
    """ImageNet mean/std for RGB; their channel averages for GRAY."""
    if colour == "GRAY":
        return (sum(IMAGENET_MEAN) / 3.0,), (sum(IMAGENET_STD) / 3.0,)
    return tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)


class ClassifierNet(nn.Module):
    """Backbone with in-graph normalisation; ``features`` -> pooled embedding, ``head`` -> logits."""

    def __init__(self, backbone, description):
        super().__init__()
        self.backbone = backbone
        self.in_channels = COLOURS[description.input.colour]
        shape = (1, self.in_channels, 1, 1)
        self.register_buffer("mean", torch.tensor(description.mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(description.std, dtype=torch.float32).reshape(shape))

    @property
    def num_features(self):
        return self.backbone.num_features

    def normalise(self, x):
        x = (x / 255.0 - self.mean) / self.std
        if self.in_channels == 1:
            x = torch.cat([x, x, x], dim=1)
        return x

    def features(self, x):
        """Raw pixels -> pooled embedding [N, F]."""
        return self.backbone.body(self.normalise(x))

    def head(self, embedding):
        """Embedding -> logits [N, num_classes]."""
        return self.backbone.head(embedding)

    def forward(self, x):
        return self.head(self.features(x))


class DeployModel(nn.Module):
    """Raw pixels -> calibrated probabilities (and optionally ``ood_score``).

    ``ood_head``, if given, is an ``nn.Module`` called as ``ood_head(embedding, logits)`` returning
    a float tensor [N] (higher = further from the training images); if its ``forward`` has an
    ``image`` parameter it also gets the raw input batch as ``image=``. Its threshold, method and
    message belong in ``description.input_check``.
    """

    def __init__(self, net, description, ood_head=None):
        super().__init__()
        self.net = net
        self.task = description.task
        self.temperature = float(description.temperature)
        self.ood_head = ood_head
        parameters = inspect.signature(ood_head.forward).parameters if ood_head is not None else {}
        self.ood_wants_image = "image" in parameters

    @property
    def output_names(self):
        return ["probabilities", "ood_score"] if self.ood_head is not None else ["probabilities"]

    def forward(self, x):
        embedding = self.net.features(x)
        logits = self.net.head(embedding)
        scaled = logits / self.temperature
        if self.task == "multilabel":
            probabilities = torch.sigmoid(scaled)
        else:
            probabilities = torch.softmax(scaled, dim=1)
        if self.ood_head is None:
            return probabilities
        if self.ood_wants_image:
            return probabilities, self.ood_head(embedding, logits, image=x).reshape(-1)
        return probabilities, self.ood_head(embedding, logits).reshape(-1)
