"""An uploaded image -> a BGR array, through the same loader as the kiosk's USB images.

Before anything is decoded: the format and the pixel count are read from the header by
``edge.imageio.read_header`` (PNG and JPEG from phones and screenshots, DICOM from the X-ray machine, and
the other formats the kiosk reads), so a decompression bomb is refused without being decoded.
The bytes then go through ``edge.preprocess.load_image`` (the
same truncation and readability checks as a file from the USB stick) from a private temporary
file, which is removed at once; the uploaded file name is never used or logged.
"""

import os
import tempfile

from edge.errors import ImageError
from edge.imageio import read_header
from edge.serve.errors import UploadError

# header format -> suffix of the private temporary file the kiosk's loader reads
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp", "PNM": ".pnm",
            "DICOM": ".dcm"}


def image_size(data):
    """(format, width, height, frames) from the header (``edge.imageio``, the kiosk's one reader)."""
    try:
        header = read_header(data, "the uploaded image")
    except ImageError as exc:
        message = str(exc) if "Fix:" in str(exc) else str(exc) + ". Fix: send the original picture again"
        raise UploadError(message, status=400, code="bad_image") from exc
    if header is None or header.format not in SUFFIXES:
        raise UploadError("not an image medkiosk reads. Fix: upload a PNG or JPEG picture, or the X-ray's "
                          "DICOM file", status=415, code="unsupported_format")
    return header.format, header.width, header.height, max(1, header.frames)


def check_upload(data, max_bytes, max_pixels):
    """Refuse empty, oversized, unknown-format and too-many-pixel uploads; return (format, w, h)."""
    if not data:
        raise UploadError("no image in the request. Fix: send the picture as the form field 'image'",
                          code="missing_image")
    if len(data) > max_bytes:
        raise UploadError("the upload is {:.1f} MB; at most {:.0f} MB is accepted. Fix: send a smaller "
                          "picture".format(len(data) / 1048576.0, max_bytes / 1048576.0), status=413,
                          code="too_large")
    kind, width, height, frames = image_size(data)
    if width < 1 or height < 1 or width * height * frames > max_pixels:
        raise UploadError("the {} is {}x{} pixels; at most {} pixels are accepted. Fix: send a smaller "
                          "picture".format(kind, width, height, max_pixels), status=413,
                          code="too_many_pixels")
    return kind, width, height


def decode_upload(data, scratch_dir, max_bytes, max_pixels):
    """Checked bytes -> BGR uint8 array via ``load_image`` (the kiosk's loader)."""
    from edge.preprocess import load_image

    kind = check_upload(data, max_bytes, max_pixels)[0]
    os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
    handle, path = tempfile.mkstemp(suffix=SUFFIXES[kind], dir=scratch_dir)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        image = load_image(path)
    except ImageError as exc:
        message = str(exc).replace(path, "the uploaded image")
        raise UploadError(message + ". Fix: send the original picture again", status=400,
                          code="bad_image") from exc
    finally:
        os.unlink(path)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise UploadError("the image decodes to more than {} pixels. Fix: send a smaller picture".format(
            max_pixels), status=413, code="too_many_pixels")
    return image
