"""The input check: is this image like the training images at all (e.g. "is this a chest X-ray")?

Method: Mahalanobis distance of the pooled embedding to the nearest training-class mean under one
shared, shrunk covariance (Lee et al., NeurIPS 2018), fitted on training embeddings; the threshold is
a quantile of the validation images' scores (e.g. 99% of real validation X-rays accepted). Optionally
a colour cue: X-rays are grey, so the mean per-pixel chroma of the raw input is a second score.

``InputCheckHead`` computes the score inside the exported graph (``DeployModel``'s ``ood_head``,
output ``ood_score`` float32 [N]); it is normalised so that **score > 1.0 means out of scope**, and
the description's ``input_check`` says so (``input_check_entry``).

``out_of_scope_images`` gives the images the check is measured on: project-generated skin-like
photos, synthetic shapes, blank frames and noise, and real photos bundled with scikit-image.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge.errors import ConfigError

METHOD = "mahalanobis"
DEFAULT_MESSAGE = "Not a chest X-ray — check the image or the module"
# Real photographs that ship inside scikit-image (no download); grey ones are the hard cases.
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "brick",
    "grass",
    "gravel",
    "clock",
    "cell",
    "shepp_logan_phantom",
)


@dataclass
class MahalanobisFit:
    """Class means [C, F] and a low-rank + isotropic form of the shared, shrunk covariance.

    The top ``k`` eigenvectors ``basis`` [F, k] with ``scale`` = 1/sqrt(eigenvalue) [k] and one
    variance ``tail_variance`` for the remaining directions: squared distance =
    ``|(d @ basis) * scale|^2 + (|d|^2 - |d @ basis|^2) / tail_variance``. With k = F it is the exact
    Mahalanobis distance; k = 256 keeps the ONNX graph small (1.3 MB instead of 6.5 MB for F = 1280).
    """

    means: np.ndarray
    basis: np.ndarray
    scale: np.ndarray
    tail_variance: float
    shrinkage: float

    def distances(self, embeddings):
        """Distance of each embedding [N, F] to its nearest class mean -> [N]."""
        x = np.asarray(embeddings, dtype=np.float64)
        delta = x[:, None, :] - self.means.astype(np.float64)[None, :, :]
        projected = delta @ self.basis.astype(np.float64)
        inside = ((projected * self.scale) ** 2).sum(axis=2)
        outside = np.maximum((delta**2).sum(axis=2) - (projected**2).sum(axis=2), 0.0) / self.tail_variance
        return np.sqrt(np.maximum((inside + outside).min(axis=1), 0.0))


def fit_mahalanobis(embeddings, labels, num_classes, shrinkage=0.1, components=256):
    """Fit class means and a shared covariance shrunk towards a scaled identity.

    ``labels`` [N] are class indices (for multilabel data pass any single grouping, e.g. the
    first positive class). Shrinkage keeps the metric stable when samples are few compared
    with the embedding size (a 1280-d embedding from a few hundred X-rays). ``components``: how
    many leading directions keep their own variance (the rest share their mean variance).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ConfigError(
            "fit_mahalanobis: need embeddings [N, F] and labels [N], got {} and {}".format(x.shape, y.shape)
        )
    if not 0.0 < shrinkage <= 1.0:
        raise ConfigError("fit_mahalanobis: shrinkage must be in (0, 1], got {}".format(shrinkage))
    present = [c for c in range(int(num_classes)) if np.any(y == c)]
    if not present:
        raise ConfigError(
            "fit_mahalanobis: no embeddings with a class label in 0..{}".format(num_classes - 1)
        )
    means = np.stack([x[y == c].mean(axis=0) for c in present])
    centred = np.concatenate([x[y == c] - means[i] for i, c in enumerate(present)])
    cov = centred.T @ centred / max(1, len(centred) - len(present))
    scale = np.trace(cov) / cov.shape[0]
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * np.eye(cov.shape[0])
    values, vectors = np.linalg.eigh(cov)  # ascending
    k = max(1, min(int(components), cov.shape[0]))
    top = slice(cov.shape[0] - k, cov.shape[0])
    rest = values[: cov.shape[0] - k]
    tail = float(rest.mean()) if rest.size else float(values.min())
    return MahalanobisFit(
        means=means.astype(np.float32),
        basis=vectors[:, top].astype(np.float32),
        scale=(1.0 / np.sqrt(values[top])).astype(np.float32),
        tail_variance=tail,
        shrinkage=float(shrinkage),
    )


@dataclass
class GroupScore:
    """A linear out-of-scope score on the embedding (``logit = x . weight + bias``), fitted by logistic
    regression of in-scope X-rays (files and photographed crops) against the other patient group's
    X-rays and generated non-X-rays; ``threshold``: the logit below which a fraction ``accept`` of
    the in-scope validation images fall; ``scale``: the spread of the in-scope logits."""

    weight: np.ndarray
    bias: float
    threshold: float
    scale: float

    def logits(self, embeddings):
        return np.asarray(embeddings, dtype=np.float64) @ self.weight.astype(np.float64) + self.bias

    def scores(self, embeddings):
        """The head's normalised term: > 1 means out of scope."""
        return 1.0 + (self.logits(embeddings) - self.threshold) / self.scale

    def state(self):
        return {"weight": torch.as_tensor(self.weight), "bias": self.bias, "threshold": self.threshold,
                "scale": self.scale}

    @classmethod
    def from_state(cls, state):
        return cls(np.asarray(state["weight"], dtype=np.float32), float(state["bias"]),
                   float(state["threshold"]), float(state["scale"]))


def fit_group_score(in_scope, out_of_scope, in_scope_val, accept=0.99, strength=0.1,
                    seed=0):
    """``GroupScore`` separating ``in_scope`` [N, F] from ``out_of_scope`` [M, F] embeddings (balanced
    logistic regression on standardised features, L2 ``strength`` = 1/C); threshold on ``in_scope_val``."""
    from sklearn.linear_model import LogisticRegression

    x_in, x_out = np.asarray(in_scope, dtype=np.float64), np.asarray(out_of_scope, dtype=np.float64)
    if len(x_in) == 0 or len(x_out) == 0:
        raise ConfigError("fit_group_score: need in-scope and out-of-scope embeddings, got {} and {}. Fix: "
                          "give the recipe an other_group or negatives".format(len(x_in), len(x_out)))
    x = np.concatenate([x_in, x_out])
    y = np.concatenate([np.zeros(len(x_in)), np.ones(len(x_out))])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(C=1.0 / strength, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit((x - mean) / std, y)
    weight = model.coef_[0] / std
    bias = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
    partial = GroupScore(weight.astype(np.float32), bias, 0.0, 1.0)
    val_logits = partial.logits(in_scope_val)
    scale = float(max(1e-3, np.std(partial.logits(x_in))))
    threshold = choose_threshold(val_logits, accept)
    return GroupScore(weight.astype(np.float32), bias, threshold, scale)


def grey_contrast(images_nchw):
    """Standard deviation (0..255) of each image's grey level -> [N]; ~0 for a blank frame."""
    x = torch.as_tensor(images_nchw, dtype=torch.float32)
    grey = x.mean(dim=1)
    centred = grey - grey.mean(dim=(1, 2), keepdim=True)
    return torch.sqrt((centred * centred).mean(dim=(1, 2)))


def colour_scores(images_nchw):
    """Mean chroma (max - min over RGB channels, 0..1) per image of a raw 0..255 NCHW batch -> [N]."""
    x = torch.as_tensor(images_nchw, dtype=torch.float32)
    if x.shape[1] == 1:
        return torch.zeros(x.shape[0])
    chroma = x.max(dim=1).values - x.min(dim=1).values
    return chroma.mean(dim=(1, 2)) / 255.0


def choose_threshold(scores, accept=0.99):
    """The score below which a fraction ``accept`` of in-scope (validation) scores fall."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ConfigError("choose_threshold: no validation scores")
    if not 0.5 <= accept < 1.0:
        raise ConfigError("choose_threshold: accept must be in [0.5, 1), got {}".format(accept))
    return float(np.quantile(scores, accept, method="higher"))


class InputCheckHead(nn.Module):
    """ood_head(embedding, logits, image) -> the largest of three normalised scores, [N]:

    - Mahalanobis distance / ``distance_threshold`` (unlike the training images);
    - mean chroma / ``colour_threshold`` (X-rays are grey; a colour photo is not one);
    - 2 - grey-level standard deviation / ``contrast_threshold`` (a blank or nearly uniform frame).

    A score above 1.0 means "out of scope". ``DeployModel`` passes the raw input as ``image``
    because ``forward`` names that parameter; without an image only the distance counts. A
    threshold of None switches its term off.
    """

    def __init__(self, fit, distance_threshold, colour_threshold=None, contrast_threshold=None, group=None):
        super().__init__()
        if not distance_threshold > 0:
            raise ConfigError(
                "InputCheckHead: distance_threshold must be > 0, got {}".format(distance_threshold)
            )
        self.register_buffer("means", torch.as_tensor(fit.means, dtype=torch.float32))
        self.register_buffer("basis", torch.as_tensor(fit.basis, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(fit.scale, dtype=torch.float32))
        self.tail_variance = float(fit.tail_variance)
        self.distance_threshold = float(distance_threshold)
        self.colour_threshold = None if colour_threshold is None else float(colour_threshold)
        self.contrast_threshold = None if contrast_threshold is None else float(contrast_threshold)
        self.group = group
        if group is not None:
            self.register_buffer("group_weight", torch.as_tensor(group.weight, dtype=torch.float32))
            self.group_offset = float(group.bias - group.threshold)
            self.group_scale = float(group.scale)

    def distance(self, embedding):
        delta = embedding.unsqueeze(1) - self.means.unsqueeze(0)  # [N, C, F]
        projected = torch.matmul(delta, self.basis)  # [N, C, k]
        inside = ((projected * self.scale) ** 2).sum(dim=2)
        outside = torch.clamp((delta * delta).sum(dim=2) - (projected * projected).sum(dim=2), min=0.0)
        squared = inside + outside / self.tail_variance
        return torch.sqrt(torch.clamp(squared.min(dim=1).values, min=0.0))

    def forward(self, embedding, logits=None, image=None):
        score = self.distance(embedding) / self.distance_threshold
        if image is not None and self.colour_threshold is not None and image.shape[1] == 3:
            chroma = (image.max(dim=1).values - image.min(dim=1).values).mean(dim=(1, 2)) / 255.0
            score = torch.maximum(score, chroma / self.colour_threshold)
        if image is not None and self.contrast_threshold is not None:
            grey = image.mean(dim=1)
            centred = grey - grey.mean(dim=(1, 2), keepdim=True)
            contrast = torch.sqrt((centred * centred).mean(dim=(1, 2)))
            # 2 - contrast / threshold: above 1 exactly when contrast < threshold; 2 for a blank frame.
            # (No division by a tensor: TensorRT 8 cannot parse the Reciprocal it exports to.)
            score = torch.maximum(score, 2.0 - contrast / self.contrast_threshold)
        if self.group is not None:
            # 1 + (logit - threshold) / scale: above 1 exactly when the logit passes its threshold.
            logit = torch.matmul(embedding, self.group_weight) + self.group_offset
            score = torch.maximum(score, 1.0 + logit / self.group_scale)
        return score

    def state(self):
        """Plain tensors/floats for a checkpoint (``from_state`` rebuilds the head)."""
        return {
            "method": METHOD,
            "means": self.means.detach().cpu().clone(),
            "basis": self.basis.detach().cpu().clone(),
            "scale": self.scale.detach().cpu().clone(),
            "tail_variance": self.tail_variance,
            "distance_threshold": self.distance_threshold,
            "colour_threshold": self.colour_threshold,
            "contrast_threshold": self.contrast_threshold,
            "group": None if self.group is None else self.group.state(),
        }

    @classmethod
    def from_state(cls, state):
        if not isinstance(state, dict) or state.get("method") != METHOD:
            raise ConfigError(
                "input-check state: expected method {!r}, got {!r}".format(
                    METHOD, state.get("method") if isinstance(state, dict) else state
                )
            )
        fit = MahalanobisFit(
            means=np.asarray(state["means"]),
            basis=np.asarray(state["basis"]),
            scale=np.asarray(state["scale"]),
            tail_variance=float(state["tail_variance"]),
            shrinkage=float("nan"),
        )
        return cls(
            fit,
            state["distance_threshold"],
            state.get("colour_threshold"),
            state.get("contrast_threshold"),
            GroupScore.from_state(state["group"]) if state.get("group") else None,
        )


def input_check_entry(head, accept, message=DEFAULT_MESSAGE, extra=None):
    """The ``description.input_check`` dictionary for a head (threshold 1.0 on the normalised score)."""
    method = METHOD
    if head.colour_threshold is not None:
        method += "+colour"
    if head.contrast_threshold is not None:
        method += "+contrast"
    if head.group is not None:
        method += "+scope"
    entry = {
        "output": "ood_score",
        "threshold": 1.0,
        "method": method,
        "message": message,
        "distance_threshold": head.distance_threshold,
        "colour_threshold": head.colour_threshold,
        "contrast_threshold": head.contrast_threshold,
        "validation_acceptance": float(accept),
    }
    entry.update(extra or {})
    return entry


def rates(scores, threshold=1.0):
    """Fraction of scores strictly above ``threshold`` (flagged out of scope)."""
    scores = np.asarray(scores, dtype=np.float64)
    return float((scores > threshold).mean()) if scores.size else float("nan")


# --- images the check must reject ------------------------------------------------------------------


def _to_bgr(image):
    import cv2

    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        image = ((image - lo) / (hi - lo + 1e-12) * 255.0).round().astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def skimage_photos(names=SKIMAGE_PHOTOS):
    """{name: BGR uint8} real photos bundled with scikit-image (ImportError if it is missing)."""
    import skimage.data

    return {"skimage:" + name: _to_bgr(getattr(skimage.data, name)()) for name in names}


def generated_images(count=8, size=224, seed=0):
    """{name: BGR uint8}: skin-like photos, synthetic shapes, blank frames and noise (all generated)."""
    from training.synth import draw_shape_image, draw_skin_image

    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        images["skin-like:{}".format(i)] = draw_skin_image(rng, size)
        images["shapes:{}".format(i)] = draw_shape_image(rng, i % 4, size)
    for value in (0, 40, 128, 200, 255):
        images["blank:{}".format(value)] = np.full((size, size, 3), value, dtype=np.uint8)
    images["blank:blue"] = np.full((size, size, 3), (200, 80, 30), dtype=np.uint8)
    images["noise:uniform"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    images["noise:grey"] = np.repeat(rng.integers(0, 256, (size, size, 1), dtype=np.uint8), 3, axis=2)
    images["noise:gauss"] = np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return images


def out_of_scope_images(count=8, size=224, seed=0, with_skimage=True):
    """Generated images plus, when scikit-image is installed and ``with_skimage``, its real photos."""
    images = generated_images(count=count, size=size, seed=seed)
    if with_skimage:
        images.update(skimage_photos())
    return images


def category(name):
    """'skin-like', 'shapes', 'blank', 'noise' or 'skimage' for an ``out_of_scope_images`` key."""
    return name.split(":", 1)[0]


def summarise(names, scores, threshold=1.0):
    """Flag rate per image category and overall: {category: {"n", "flagged", "rate"}}."""
    table = {}
    for name, score in zip(names, np.asarray(scores, dtype=np.float64)):
        row = table.setdefault(category(name), {"n": 0, "flagged": 0})
        row["n"] += 1
        row["flagged"] += int(score > threshold)
    total = {"n": sum(r["n"] for r in table.values()), "flagged": sum(r["flagged"] for r in table.values())}
    table["all"] = total
    for row in table.values():
        row["rate"] = row["flagged"] / row["n"] if row["n"] else math.nan
    return table
