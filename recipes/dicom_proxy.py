"""The DICOM-stretch proxy of the adult trials (``recipes.contrast_chest``, ``recipes.tail_data``): what
``edge.dicom`` shows for a DICOM written without a window (its grey range stretched to 0-255), the case
``tests/edge/test_dicom.py`` checks on one X-ray ("mono2-no-window")."""

import numpy as np
import torch

from edge.preprocess import load_image, preprocess

DICOM_TOLERANCE = 0.02  # tests/edge/test_dicom.py: the same picture as PNG and as DICOM, per finding


def dicom_stretch(image, _index=0):
    """``image`` (uint8) with its grey range stretched to 0-255 (a DICOM without a window)."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return image
    out = (image.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def stretched_inputs(samples, spec):
    """uint8 inputs [N, C, H, W] of ``samples`` stretched, then preprocessed as the device does."""
    batch = np.empty(spec.shape(len(samples)), dtype=np.uint8)
    for index, sample in enumerate(samples):
        batch[index] = preprocess(dicom_stretch(load_image(sample.path)), spec)[0].astype(np.uint8)
    return torch.from_numpy(batch)


def probability_change(classes, clean, stretched, tolerance=DICOM_TOLERANCE):
    """Per class mean and max |stretched - clean|; the share of images whose largest change > tolerance."""
    change = np.abs(stretched - clean)
    per_class = {name: {"mean": round(float(change[:, c].mean()), 4),
                        "max": round(float(change[:, c].max()), 4)} for c, name in enumerate(classes)}
    largest = change.max(axis=1)
    return {"per_class": per_class, "mean": round(float(change.mean()), 4),
            "over_tolerance": round(float((largest > tolerance).mean()), 4), "tolerance": tolerance,
            "p95_largest": round(float(np.percentile(largest, 95)), 4), "images": int(len(largest))}
