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
    """Class means [C, F] and the Cholesky factor L [F, F] of the shared precision (P = L L^T)."""

    means: np.ndarray
    precision_factor: np.ndarray
    shrinkage: float

    def distances(self, embeddings):
        """Mahalanobis distance of each embedding [N, F] to its nearest class mean -> [N]."""
        z = np.asarray(embeddings, dtype=np.float64) @ self.precision_factor
        m = self.means.astype(np.float64) @ self.precision_factor
        squared = ((z[:, None, :] - m[None, :, :]) ** 2).sum(axis=2)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def fit_mahalanobis(embeddings, labels, num_classes, shrinkage=0.1):
    """Fit class means and a shared covariance shrunk towards a scaled identity.

    ``labels`` [N] are class indices (for multilabel data pass any single grouping, e.g. the
    first positive class). Shrinkage keeps the precision stable when samples are few compared
    with the embedding size (a 1280-d embedding from a few hundred X-rays).
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
    precision = np.linalg.inv(cov)
    precision = (precision + precision.T) / 2.0
    factor = np.linalg.cholesky(precision)
    return MahalanobisFit(
        means=means.astype(np.float32), precision_factor=factor.astype(np.float32), shrinkage=float(shrinkage)
    )


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
    """ood_head(embedding, logits[, image]) -> max(distance / t_dist, chroma / t_colour) [N].

    A score above 1.0 means "out of scope". The colour term needs the raw image; when the deploy
    graph only passes embedding and logits it is left out (``colour_threshold=None``).
    """

    def __init__(self, fit, distance_threshold, colour_threshold=None):
        super().__init__()
        if not distance_threshold > 0:
            raise ConfigError(
                "InputCheckHead: distance_threshold must be > 0, got {}".format(distance_threshold)
            )
        factor = torch.as_tensor(fit.precision_factor, dtype=torch.float32)
        self.register_buffer("factor", factor)
        self.register_buffer("projected_means", torch.as_tensor(fit.means, dtype=torch.float32) @ factor)
        self.distance_threshold = float(distance_threshold)
        self.colour_threshold = None if colour_threshold is None else float(colour_threshold)

    def distance(self, embedding):
        z = embedding @ self.factor
        squared = ((z.unsqueeze(1) - self.projected_means.unsqueeze(0)) ** 2).sum(dim=2)
        return torch.sqrt(torch.clamp(squared.min(dim=1).values, min=0.0))

    def forward(self, embedding, logits=None, image=None):
        score = self.distance(embedding) / self.distance_threshold
        if self.colour_threshold is not None and image is not None and image.shape[1] == 3:
            chroma = (image.max(dim=1).values - image.min(dim=1).values).mean(dim=(1, 2)) / 255.0
            score = torch.maximum(score, chroma / self.colour_threshold)
        return score

    def state(self):
        """Plain tensors/floats for a checkpoint (``from_state`` rebuilds the head)."""
        return {
            "method": METHOD,
            "factor": self.factor.detach().cpu().clone(),
            "projected_means": self.projected_means.detach().cpu().clone(),
            "distance_threshold": self.distance_threshold,
            "colour_threshold": self.colour_threshold,
        }

    @classmethod
    def from_state(cls, state):
        if not isinstance(state, dict) or state.get("method") != METHOD:
            raise ConfigError(
                "input-check state: expected method {!r}, got {!r}".format(
                    METHOD, state.get("method") if isinstance(state, dict) else state
                )
            )
        head = cls.__new__(cls)
        nn.Module.__init__(head)
        head.register_buffer("factor", torch.as_tensor(state["factor"], dtype=torch.float32))
        head.register_buffer(
            "projected_means", torch.as_tensor(state["projected_means"], dtype=torch.float32)
        )
        head.distance_threshold = float(state["distance_threshold"])
        ct = state.get("colour_threshold")
        head.colour_threshold = None if ct is None else float(ct)
        return head


def input_check_entry(head, accept, message=DEFAULT_MESSAGE, extra=None):
    """The ``description.input_check`` dictionary for a head (threshold 1.0 on the normalised score)."""
    entry = {
        "output": "ood_score",
        "threshold": 1.0,
        "method": METHOD if head.colour_threshold is None else METHOD + "+colour",
        "message": message,
        "distance_threshold": head.distance_threshold,
        "colour_threshold": head.colour_threshold,
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
