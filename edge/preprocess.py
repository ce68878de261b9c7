"""Image loading and the one preprocessing function, derived from the model description.

Normalisation lives inside the ONNX graph, so preprocessing is only: resize to the input size,
convert colour, the description's per-image contrast normalisation (``input.contrast``; "none" by
default), lay out as NCHW float32 with raw 0-255 values. Training (validation and test splits),
export parity checks, INT8 calibration and the kiosk all call ``preprocess`` so the model sees the
same pixels everywhere.
"""

import os

from edge import imageio
from edge.lazy import require

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".dcm",
                    ".dicom")


def is_image_file(path):
    """True for the extensions medkiosk reads (DICOM included); the content is checked when read."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def read_image(path, limits=None):
    """``path`` -> edge.imageio.LoadedImage(image, notes): BGR uint8 and notices (e.g. multi-frame DICOM).

    Only a regular file within the size and pixel limits is read (edge.imageio.DEFAULT_LIMITS); an
    image larger than the display side is decoded reduced. ImageError names the file and the problem.
    """
    return imageio.read_image(path, limits or imageio.DEFAULT_LIMITS, supported=IMAGE_EXTENSIONS)


def load_image(path, limits=None):
    """Read an image file as a BGR uint8 array; raise ImageError naming the file and the problem."""
    return read_image(path, limits).image


def resize_to_input(image_bgr, input_spec):
    """Resize a BGR (or single-channel) uint8 image to the model's input size."""
    cv2 = require("cv2")
    interpolation = cv2.INTER_AREA if input_spec.resize == "area" else cv2.INTER_LINEAR
    height, width = image_bgr.shape[:2]
    if (height, width) == (input_spec.height, input_spec.width):
        return image_bgr
    return cv2.resize(image_bgr, (input_spec.width, input_spec.height), interpolation=interpolation)


def to_model_colour(image_bgr, input_spec):
    """Convert a BGR/GRAY uint8 image to the model's colour order (HxWxC, C=3 or 1)."""
    cv2 = require("cv2")
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    elif image_bgr.shape[2] == 4:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
    if input_spec.colour == "RGB":
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)[:, :, None]


def preprocess(image_bgr, input_spec, out=None):
    """BGR uint8 image of any size -> float32 NCHW batch of one, values 0-255.

    ``out`` may be a preallocated (1, C, H, W) float32 array, reused to avoid a per-frame allocation.
    """
    np = require("numpy")
    pixels = to_model_colour(resize_to_input(image_bgr, input_spec), input_spec)
    pixels = normalise_contrast(pixels, getattr(input_spec, "contrast", "none"))
    if out is None:
        out = np.empty(input_spec.shape(1), dtype=np.float32)
    # HWC uint8 -> CHW float32 in one strided copy.
    np.copyto(out[0], pixels.transpose(2, 0, 1), casting="unsafe")
    return out


def preprocess_batch(images_bgr, input_spec):
    """Several images -> one float32 NCHW batch."""
    np = require("numpy")
    batch = np.empty(input_spec.shape(len(images_bgr)), dtype=np.float32)
    for index, image in enumerate(images_bgr):
        preprocess(image, input_spec, out=batch[index:index + 1])
    return batch


# Per-image contrast normalisation (``input.contrast`` of the model description), applied after the
# resize, to the model's HxWxC uint8 input: a unit's exposure and post-processing should no longer
# move the embedding (issue 13). The grey levels (the channels' mean) are mapped; each channel is
# shifted by the same per-pixel offset, so an X-ray (equal channels) is exactly its mapped grey and a
# colour photo keeps its channel differences (the input check's colour term). Every mode is
# contrast-limited so that a blank wall or an empty lightbox stays blank (its noise is not stretched
# into an image): the input check's contrast term still refuses it.
CONTRAST_CLAHE_CLIP = 2.0
CONTRAST_CLAHE_GRID = 8
CONTRAST_EQUALIZE_CLIP = 4.0  # global (one tile) contrast-limited equalisation: the mapping's slope <= ~4
CONTRAST_STRETCH_PERCENTILES = (1.0, 99.0)
CONTRAST_MAX_GAIN = 3.0  # the stretch's gain limit (as NORMALISE_MAX_GAIN)


def _equalize(grey):
    """OpenCV's CLAHE with one tile (clip CONTRAST_EQUALIZE_CLIP), as one look-up table built from the
    clipped histogram: the same output bit for bit (OpenCV's clip, redistribution and rounding), a quarter
    of the cost."""
    np, cv2 = require("numpy"), require("cv2")
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    limit = max(int(CONTRAST_EQUALIZE_CLIP * grey.size / 256), 1)
    clipped = int(np.maximum(hist - limit, 0).sum())
    hist = np.minimum(hist, limit) + clipped // 256
    residual = clipped % 256
    if residual:  # OpenCV adds the remainder one count at a time, every 256 // residual levels
        hist[np.arange(0, 256, max(256 // residual, 1))[:residual]] += 1
    levels = np.cumsum(hist).astype(np.float32) * np.float32(255.0 / grey.size)
    return cv2.LUT(grey, np.clip(np.rint(levels), 0, 255).astype(np.uint8))


def _clahe(grey):
    cv2 = require("cv2")
    grid = (CONTRAST_CLAHE_GRID, CONTRAST_CLAHE_GRID)
    return cv2.createCLAHE(clipLimit=CONTRAST_CLAHE_CLIP, tileGridSize=grid).apply(grey)


def _stretch(grey):
    """Percentiles of the grey levels to 0-255 (from the histogram: no sort), the gain at most
    CONTRAST_MAX_GAIN about the percentiles' middle."""
    np, cv2 = require("numpy"), require("cv2")
    cumulative = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().cumsum()
    low_high = [cumulative[-1] * p / 100.0 for p in CONTRAST_STRETCH_PERCENTILES]
    low, high = (int(np.searchsorted(cumulative, q, side="left")) for q in low_high)
    gain = min(CONTRAST_MAX_GAIN, 255.0 / max(1.0, float(high - low)))
    levels = (np.arange(256, dtype=np.float32) - np.float32((low + high) / 2.0)) * np.float32(gain) + 127.5
    return cv2.LUT(grey, np.clip(np.round(levels), 0, 255).astype(np.uint8))


def _equalize_clahe(grey):
    """Global equalisation, then CLAHE: the first removes a monotone grey mapping (a unit's exposure or
    look-up table), the second then sets the local contrast the same way whatever the unit did to it."""
    return _clahe(_equalize(grey))


# Mode -> grey uint8 (HxW) -> mapped grey uint8. "none" is the identity (today's behaviour).
CONTRAST_MODES = {
    "equalize": _equalize,
    "clahe": _clahe,
    "stretch": _stretch,
    "equalize-clahe": _equalize_clahe,
}


def normalise_contrast(pixels, mode):
    """HxWxC uint8 model-colour pixels -> the same with ``mode``'s grey mapping (``CONTRAST_MODES``);
    "none" returns ``pixels`` itself. An unknown mode raises DescriptionError naming the choices."""
    if mode == "none":
        return pixels
    if mode not in CONTRAST_MODES:
        from edge.description import DescriptionError

        raise DescriptionError("input.contrast", "must be one of {}, got {!r}".format(
            ["none"] + sorted(CONTRAST_MODES), mode))
    np, cv2 = require("numpy"), require("cv2")
    if pixels.shape[2] == 1:
        return CONTRAST_MODES[mode](np.ascontiguousarray(pixels[:, :, 0]))[:, :, None]
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    mapped = CONTRAST_MODES[mode](grey)
    first, second, third = cv2.split(pixels)
    if not cv2.countNonZero(cv2.absdiff(first, second)) and not cv2.countNonZero(cv2.absdiff(second, third)):
        return cv2.cvtColor(mapped, cv2.COLOR_GRAY2RGB)  # equal channels (an X-ray): the same result, faster
    offset = mapped.astype(np.int16) - grey.astype(np.int16)
    return np.clip(pixels.astype(np.int16) + offset[:, :, None], 0, 255).astype(np.uint8)


# A photographed X-ray (film on a lightbox, a screen) comes back from edge.locate as a colour crop
# with a colour cast, moire, sensor noise and a compressed grey range. ``normalise_crop`` maps it
# back towards what a digital file looks like: grey, smoothed (the moire and noise, aliased by the
# perspective warp, were what made the input check refuse photographed X-rays most), the range
# stretched. Illumination flattening by a plane fitted to the crop was measured and left out: the
# X-ray's own large-scale structure dominates such a fit, and it lowered the crop's correlation with
# the file (docs/models/photographed.md).
NORMALISE_PERCENTILES = (0.5, 99.5)
NORMALISE_BLUR_SIGMA = 1.0
# At most this contrast gain: a photographed film or screen needs about 1.5-2; a blank screen or an
# empty lightbox must stay blank (stretched without a limit its noise looks like an image).
NORMALISE_MAX_GAIN = 3.0


def normalise_crop(crop_bgr):
    """A photographed X-ray crop (BGR or grey uint8) -> grey-as-BGR uint8: colour cast removed,
    moire and noise smoothed, grey range stretched to 0-255 (by at most NORMALISE_MAX_GAIN, about
    mid-grey). Pure; never applied to digital files."""
    np, cv2 = require("numpy"), require("cv2")
    grey = crop_bgr if crop_bgr.ndim == 2 else cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    grey = cv2.GaussianBlur(grey, (0, 0), NORMALISE_BLUR_SIGMA)
    low, high = np.percentile(grey[::2, ::2], NORMALISE_PERCENTILES)
    scale = min(NORMALISE_MAX_GAIN, 255.0 / max(1.0, float(high - low)))
    centre = (float(low) + float(high)) / 2.0
    shifted = (grey.astype(np.float32) - np.float32(centre)) * np.float32(scale) + np.float32(127.5)
    stretched = np.clip(shifted, 0, 255)
    return cv2.cvtColor(stretched.astype(np.uint8), cv2.COLOR_GRAY2BGR)
