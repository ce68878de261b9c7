"""Pixel helpers shared by the image readers (edge.imageio, edge.dicom): no file I/O here.

Python 3.6 compatible; numpy and OpenCV are imported when a function needs them.
"""

import collections

from edge.lazy import require

# What a header says before decoding: format name, size, bits per sample, samples per pixel, frames.
ImageHeader = collections.namedtuple("ImageHeader", "format width height bits channels frames")
# A decoded image (BGR uint8, at most max_side on its longer side) and notices about it.
LoadedImage = collections.namedtuple("LoadedImage", "image notes")


def fit_side(image, max_side):
    """Shrink (INTER_AREA) so the longer side is at most ``max_side``; smaller images are unchanged."""
    cv2 = require("cv2")
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image
    scale = float(max_side) / longest
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_8bit(image, bits=None):
    """A 16-bit image to 8 bits by the bits actually used (``bits``, else the highest value's)."""
    np = require("numpy")
    if image.dtype == np.uint8:
        return image
    if not bits or bits > 16 or bits <= 8:
        bits = int(image.max()).bit_length() if image.size else 8
    shift = max(0, bits - 8)
    return np.right_shift(image, shift).clip(0, 255).astype(np.uint8)


def to_bgr(image):
    """Grey, BGR or BGRA uint8 -> BGR uint8."""
    cv2 = require("cv2")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
