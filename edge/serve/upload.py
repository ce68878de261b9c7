"""An uploaded image -> a BGR array, through the same loader as the kiosk's USB images.

Before anything is decoded: the format is sniffed from the bytes (PNG or JPEG: what phones, cameras
and screenshots give) and the pixel count is read from the header, so a decompression bomb is
refused without being decoded. The bytes then go through ``edge.preprocess.load_image`` (the
same truncation and readability checks as a file from the USB stick) from a private temporary
file, which is removed at once; the uploaded file name is never used or logged.
"""

import os
import struct
import tempfile

from edge.errors import ImageError
from edge.serve.errors import UploadError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8"
DICOM_MAGIC_OFFSET = 128
# JPEG start-of-frame markers (baseline, progressive, lossless...), not DHT/JPG/DAC.
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _png_size(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UploadError("the PNG has no image header. Fix: upload the original picture", status=400,
                          code="bad_image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data):
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xFF, 0x01) or 0xD0 <= marker <= 0xD9:
            index += 2 if marker != 0xFF else 1
            continue
        length = struct.unpack(">H", data[index + 2:index + 4])[0]
        if marker in SOF_MARKERS:
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        index += 2 + length
    raise UploadError("the JPEG has no frame header. Fix: upload the original picture", status=400,
                      code="bad_image")


# magic bytes -> (format name, header reader)
FORMATS = ((PNG_MAGIC, "PNG", _png_size), (JPEG_MAGIC, "JPEG", _jpeg_size))


def image_size(data):
    """(format, width, height) from the header; UploadError for other formats."""
    for magic, name, reader in FORMATS:
        if data.startswith(magic):
            width, height = reader(data)
            return name, width, height
    if data[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM":
        raise UploadError("DICOM is not accepted by the service yet. Fix: export the image as PNG or JPEG "
                          "from the X-ray workstation", status=415, code="unsupported_format")
    raise UploadError("not a PNG or JPEG image. Fix: upload a PNG or JPEG picture", status=415,
                      code="unsupported_format")


def check_upload(data, max_bytes, max_pixels):
    """Refuse empty, oversized, unknown-format and too-many-pixel uploads; return (format, w, h)."""
    if not data:
        raise UploadError("no image in the request. Fix: send the picture as the form field 'image'",
                          code="missing_image")
    if len(data) > max_bytes:
        raise UploadError("the upload is {:.1f} MB; at most {:.0f} MB is accepted. Fix: send a smaller "
                          "picture".format(len(data) / 1048576.0, max_bytes / 1048576.0), status=413,
                          code="too_large")
    kind, width, height = image_size(data)
    if width < 1 or height < 1 or width * height > max_pixels:
        raise UploadError("the {} is {}x{} pixels; at most {} pixels are accepted. Fix: send a smaller "
                          "picture".format(kind, width, height, max_pixels), status=413,
                          code="too_many_pixels")
    return kind, width, height


def decode_upload(data, scratch_dir, max_bytes, max_pixels):
    """Checked bytes -> BGR uint8 array via ``load_image`` (the kiosk's loader)."""
    from edge.preprocess import load_image

    kind, _width, _height = check_upload(data, max_bytes, max_pixels)
    os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
    handle, path = tempfile.mkstemp(suffix=".png" if kind == "PNG" else ".jpg", dir=scratch_dir)
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
