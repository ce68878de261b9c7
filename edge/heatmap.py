"""Where the model looked: the bundle's class-activation map, upsampled and drawn over an image.

A bundle exported with ``--heatmap`` has an output ``heatmap`` [N, K, h, w] (see ``edge.bundle``);
``Prediction.heatmap`` holds one image's [K, h, w]. The map covers the whole model input, which
``edge.preprocess`` makes by stretching the analysed image, so it is stretched back the same way:
map cell (i, j) sits over the same fraction of the analysed image.

Used by the kiosk's H key, the referral sheet (``overlay_heatmap(analysed image, record_map(case
record))`` for a saved case, ``prediction_overlay`` for a live one) and the pointing-game evaluation
(``heatmap_peak``).
"""

from edge.errors import BackendError
from edge.lazy import require

DEFAULT_ALPHA = 0.45  # weight of the colour map over the image


def class_map(prediction, class_index=None):
    """The [h, w] map of ``class_index`` (default: the most probable class) as float32."""
    heatmap = getattr(prediction, "heatmap", None)
    if heatmap is None:
        raise BackendError("{}: this result has no heatmap. Fix: use a bundle exported with "
                           "`medkiosk export onnx ... --heatmap`".format(prediction.bundle_id))
    index = prediction.ranking[0] if class_index is None else int(class_index)
    return require("numpy").asarray(heatmap[index], dtype="float32")


def upsample(map2d, height, width):
    """The [h, w] map stretched to ``height`` x ``width`` (bilinear), float32."""
    cv2 = require("cv2")
    np = require("numpy")
    return cv2.resize(np.ascontiguousarray(map2d, dtype=np.float32), (int(width), int(height)),
                      interpolation=cv2.INTER_LINEAR)


def normalise(values):
    """Scale to 0..1 (min-max); a flat map becomes all zeros (nothing stands out)."""
    np = require("numpy")
    values = np.asarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def colourise(map2d, height, width):
    """A BGR uint8 colour picture (JET: blue low, red high) of the map at ``height`` x ``width``."""
    cv2 = require("cv2")
    np = require("numpy")
    scaled = (normalise(upsample(map2d, height, width)) * 255.0 + 0.5).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_JET)


def overlay_heatmap(image, map2d, alpha=DEFAULT_ALPHA):
    """``image`` (BGR or grey uint8) with the map blended over it at ``alpha``; a new BGR image."""
    cv2 = require("cv2")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError("alpha must be within [0, 1], got {}".format(alpha))
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    colours = colourise(map2d, image.shape[0], image.shape[1])
    return cv2.addWeighted(colours, float(alpha), image[:, :, :3], 1.0 - float(alpha), 0.0)


def heatmap_peak(map2d, height, width):
    """(x, y) pixel of the largest value of the map stretched to ``height`` x ``width`` (first on ties)."""
    np = require("numpy")
    full = upsample(map2d, height, width)
    row, col = np.unravel_index(int(np.argmax(full)), full.shape)
    return int(col), int(row)


def record_map(record):
    """The top finding's [h, w] map from a saved result (``Prediction.to_dict()``, e.g. a case record's),
    or None when the result has none: what the referral sheet draws for a saved case."""
    heatmap = record.get("heatmap") if isinstance(record, dict) else None
    values = heatmap.get("values") if isinstance(heatmap, dict) else None
    if not values:
        return None
    return require("numpy").asarray(values, dtype="float32")


def prediction_overlay(prediction, image, class_index=None, alpha=DEFAULT_ALPHA):
    """The referral sheet's and the H key's picture: ``image`` (the analysed crop) with the map of
    ``class_index`` (default: the top class) over it."""
    return overlay_heatmap(image, class_map(prediction, class_index), alpha)
