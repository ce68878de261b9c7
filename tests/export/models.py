"""Small real PyTorch models for export tests (until/besides training's checkpoints).

``TinyDeploy`` follows the graph contract exactly like ``training.nets.DeployModel``: raw 0..255
NCHW in, normalisation, logits / T and softmax (or sigmoid) inside, probabilities out, and an
optional second output ``ood_score``.
"""

import torch
from torch import nn

from edge.description import InputSpec, ModelDescription


class TinyNet(nn.Module):
    def __init__(self, channels=3, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, classes)
        # Non-trivial BatchNorm statistics, so folding them is actually exercised.
        with torch.no_grad():
            self.features[1].running_mean.uniform_(-0.5, 0.5)
            self.features[1].running_var.uniform_(0.5, 2.0)
            self.head.weight.mul_(8.0)
        self.eval()

    def forward(self, x):
        return self.head(self.features(x))


class TinyDeploy(nn.Module):
    def __init__(self, net, description):
        super().__init__()
        self.net = net
        self.description = description
        shape = (1, description.input.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(description.mean).view(shape) * 255.0)
        self.register_buffer("std", torch.tensor(description.std).view(shape) * 255.0)
        self.temperature = float(description.temperature)
        self.eval()

    def forward(self, image):
        logits = self.net((image - self.mean) / self.std) / self.temperature
        if self.description.task == "multilabel":
            probs = torch.sigmoid(logits)
        else:
            probs = torch.softmax(logits, dim=1)
        if self.description.input_check:
            return probs, logits.abs().mean(dim=1)
        return probs


def tiny_description(classes=("circle", "square", "triangle", "stripes"), size=32, colour="RGB",
                     temperature=1.5, task="multiclass", input_check=None):
    channels = 3 if colour == "RGB" else 1
    return ModelDescription("tinynet", task, list(classes), InputSpec(size, size, colour=colour),
                            mean=(0.5,) * channels, std=(0.25,) * channels, temperature=temperature,
                            input_check=input_check)


def tiny_source(description=None, seed=0, data=None):
    from export.onnx_export import ExportSource

    description = description or tiny_description()
    net = TinyNet(description.input.channels, description.num_classes, seed)
    return ExportSource(TinyDeploy(net, description), description, data or {})
