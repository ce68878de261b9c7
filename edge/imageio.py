"""Reading one image file safely: a regular file, a bounded size, dimensions checked before decoding.

A USB stick or a folder can hold anything: a named pipe (reading it hangs), a link to ``/dev/zero``
(reading it never ends), a 400 KB PNG that decodes to 20000x20000 pixels (1.2 GB as BGR: a crash
loop on a 4 GB Jetson Nano). So an image is read only when it is a regular file no larger than
``ImageLimits.max_file_mb``; its width and height come from the file's own header (PNG IHDR, JPEG
SOF, TIFF IFD, BMP, WebP, PNM, DICOM Rows/Columns) BEFORE anything is decoded, and an image above
``ImageLimits.max_megapixels`` is refused with one line. An image wider or taller than
``ImageLimits.max_side`` is decoded reduced (``cv2.IMREAD_REDUCED_*``: JPEG is then decoded at 1/2,
1/4 or 1/8 scale by libjpeg itself; where imdecode ignores the flag, as in JetPack 4.6's OpenCV 4.1,
through imread of the same checked, open file) and never kept full-size.

16-bit PNG/TIFF/PNM are scaled to 8 bits by the bits actually used (PNG ``sBIT`` when present, else
the highest value), so 12-bit detector data in a 16-bit PNG is not "too dark". DICOM is read by
``edge.dicom``.

The limits are documented in docs/technician.md; they are fixed for the kiosk and ``classify``.
"""

import collections
import functools
import os
import stat
import struct

from edge.console import printable
from edge.errors import ImageError
from edge.lazy import require
from edge.pixels import ImageHeader, LoadedImage, fit_side, to_8bit, to_bgr  # noqa: F401 (re-exported)

ImageLimits = collections.namedtuple("ImageLimits", "max_file_mb max_megapixels max_side")
# 100 MB holds an uncompressed 16-bit 7000x7000 DICOM; 40 megapixels is twice a 43x43 cm CR plate at
# 100 um; 2048 pixels is more than any kiosk screen shows and 9x the model's input.
DEFAULT_LIMITS = ImageLimits(max_file_mb=100, max_megapixels=40, max_side=2048)


NOT_REGULAR = ((stat.S_ISDIR, "is a folder, not an image"),
               (stat.S_ISFIFO, "is a named pipe (FIFO), not an image file"),
               (stat.S_ISCHR, "is a character device, not an image file"),
               (stat.S_ISBLK, "is a block device, not an image file"),
               (stat.S_ISSOCK, "is a socket, not an image file"))
READ_CHUNK = 1 << 20
# A DICOM data set written without the Part 10 preamble has no signature: known by its extension.
DICOM_EXTENSIONS = (".dcm", ".dicom")


def open_regular_file(path, max_bytes):
    """A read-only descriptor of ``path`` if it is a regular file of at most ``max_bytes``; else ImageError.

    Opened non-blocking (a FIFO without a writer cannot hang the open) and checked on the open
    descriptor, so a file swapped for a pipe or a device between check and read is still refused.
    The caller closes it.
    """
    name = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageError("{}: no such file".format(name)) from None
    except OSError as exc:
        raise ImageError("{}: cannot be read ({}). Fix: check the file's permissions or copy it "
                         "again".format(name, exc.strerror)) from exc
    try:
        info = os.fstat(fd)
        for is_kind, problem in NOT_REGULAR:
            if is_kind(info.st_mode):
                raise ImageError("{}: {}".format(name, problem))
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("{}: is not a regular file, not an image file".format(name))
        if info.st_size > max_bytes:
            raise ImageError("{}: file is too large ({:.0f} MB, limit {:.0f} MB). Fix: export the image "
                             "smaller (e.g. a PNG of at most 4000x4000)".format(
                                 name, info.st_size / 1e6, max_bytes / 1e6))
    except ImageError:
        os.close(fd)
        raise
    return fd


def read_regular_file(path, max_bytes):
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; ImageError otherwise."""
    fd = open_regular_file(path, max_bytes)
    try:
        return _read_bounded(fd, printable(path), max_bytes)
    finally:
        os.close(fd)


def _read_bounded(fd, name, max_bytes):
    chunks, total = [], 0
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError as exc:
            raise ImageError("{}: cannot be read ({}). Fix: re-insert the USB stick or copy the file "
                             "again".format(name, exc.strerror)) from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:  # the file grew while being read
            raise ImageError("{}: file is too large (over {:.0f} MB)".format(name, max_bytes / 1e6))
        chunks.append(chunk)


# --- headers: width and height without decoding -------------------------------------------------

def _png_header(data, _name):
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, bits, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 3)
    bits = _png_significant_bits(data, colour) or bits
    return ImageHeader("PNG", width, height, 8 if colour == 3 else bits, channels, 1)


def _png_significant_bits(data, colour):
    """The sBIT chunk's largest value (the bits the detector used), or None."""
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT" and colour != 3:
            values = bytearray(data[offset + 8:offset + 8 + length])
            return max(values) if values else None
        offset += 12 + length
    return None


JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(data, _name):
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
        if marker in JPEG_SOF and offset + 10 <= len(data):
            bits, height, width, channels = struct.unpack(">BHHB", data[offset + 4:offset + 10])
            return ImageHeader("JPEG", width, height, bits, channels, 1)
        offset += 2 + length
    return None


TIFF_TYPES = {3: ("H", 2), 4: ("I", 4)}


def _tiff_header(data, _name):
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:
        return None  # BigTIFF (43) is not read
    ifd = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    tags = {}
    for index in range(count):
        entry = data[ifd + 2 + 12 * index:ifd + 14 + 12 * index]
        tag, kind, number = struct.unpack(order + "HHI", entry[:8])
        if kind in TIFF_TYPES and tag in (256, 257, 258, 277):
            code, size = TIFF_TYPES[kind]
            if number * size > len(data):  # else a crafted count would build a gigabyte unpack format
                raise ValueError("tag {} claims {} values, more than the file's {} bytes hold".format(
                    tag, number, len(data)))
            where = entry[8:12] if number * size <= 4 else data[
                struct.unpack(order + "I", entry[8:12])[0]:][:number * size]
            tags[tag] = struct.unpack(order + code * number, where[:number * size])
    if 256 not in tags or 257 not in tags:
        return None
    return ImageHeader("TIFF", tags[256][0], tags[257][0], max(tags.get(258, (8,))),
                       tags.get(277, (1,))[0], 1)


def _bmp_header(data, _name):
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:
        width, height, _planes, bits = struct.unpack("<HHHH", data[18:26])
    else:
        width, height, _planes, bits = struct.unpack("<iiHH", data[18:30])
    return ImageHeader("BMP", abs(width), abs(height), 8, 1 if bits <= 8 else 3, 1)


def _webp_header(data, _name):
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 ":
        width, height = (value & 0x3FFF for value in struct.unpack("<HH", data[26:30]))
    else:
        return None
    return ImageHeader("WebP", width, height, 8, 4, 1)


def _pnm_header(data, _name):
    fields, text = [], data[2:2048].split(b"\n")
    for line in text:
        fields.extend(line.split(b"#")[0].split())
        if len(fields) >= 3:
            break
    width, height, maxval = (int(field) for field in fields[:3])
    channels = 3 if data[1:2] in (b"3", b"6") else 1
    return ImageHeader("PNM", width, height, 16 if maxval > 255 else 8, channels, 1)


def _dicom_header(data, name):
    from edge.dicom import dicom_header

    return dicom_header(data, name)


def _is_dicom(data):
    return data[128:132] == b"DICM"


# (test on the first bytes, header reader): first match wins. DICOM first: its 128-byte preamble may
# itself be a TIFF header (dual-format files).
HEADER_READERS = (
    (_is_dicom, _dicom_header),
    (lambda d: d[:8] == b"\x89PNG\r\n\x1a\n", _png_header),
    (lambda d: d[:3] == b"\xff\xd8\xff", _jpeg_header),
    (lambda d: d[:4] in (b"II*\x00", b"MM\x00*"), _tiff_header),
    (lambda d: d[:2] == b"BM" and len(d) >= 30, _bmp_header),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp_header),
    (lambda d: d[:1] == b"P" and d[1:2] in b"123456" and len(d) > 2, _pnm_header),
)


def read_header(data, name="image"):
    """ImageHeader from the first bytes of a file, or None when the format is not one medkiosk reads."""
    for matches, reader in HEADER_READERS:
        if matches(data):
            try:
                return reader(data, name)
            except (struct.error, ValueError, IndexError) as exc:
                raise ImageError("{}: {} header is damaged ({}). Fix: copy the file again or export it "
                                 "as PNG".format(name, reader.__name__.strip("_").split("_")[0].upper(),
                                                 exc)) from exc
    return None


def check_size(header, limits, name):
    """Refuse an image whose header promises more pixels than the limit (before any decoding)."""
    if header.width <= 0 or header.height <= 0:
        raise ImageError("{}: header says {}x{} pixels: not a usable image".format(
            name, header.width, header.height))
    pixels = header.width * header.height * max(1, header.frames)
    if pixels > limits.max_megapixels * 1e6:
        frames = " x {} frames".format(header.frames) if header.frames > 1 else ""
        raise ImageError("{}: image is too large to open safely ({}x{}{} = {:.0f} megapixels, limit {}). "
                         "Fix: export it at most {} megapixels (e.g. 4000x4000)".format(
                             name, header.width, header.height, frames, pixels / 1e6,
                             limits.max_megapixels, limits.max_megapixels))


# --- decoding ------------------------------------------------------------------------------------

REDUCTIONS = (1, 2, 4, 8)


def reduction_for(header, max_side):
    """The smallest of 1, 2, 4, 8 that brings the longer side to at most ``max_side`` (else 8)."""
    longest = max(header.width, header.height)
    for factor in REDUCTIONS:
        if longest <= max_side * factor:
            return factor
    return REDUCTIONS[-1]


def _imread_flags(cv2, header, factor):
    if header.bits > 8:
        return cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR  # scaled to 8 bits below, at reduced size
    grey = header.channels == 1
    if factor == 1:
        return cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    names = "IMREAD_REDUCED_{}_{}".format("GRAYSCALE" if grey else "COLOR", factor)
    return getattr(cv2, names)


@functools.lru_cache(maxsize=None)
def imdecode_reduces():
    """Whether this OpenCV's imdecode honours IMREAD_REDUCED_* (imread does since 3.2; imdecode
    only in newer releases: JetPack 4.6's OpenCV 4.1 decodes full-size)."""
    cv2 = require("cv2")
    np = require("numpy")
    ok, encoded = cv2.imencode(".jpg", np.zeros((16, 16), np.uint8))
    decoded = cv2.imdecode(encoded, cv2.IMREAD_REDUCED_GRAYSCALE_2) if ok else None
    return decoded is not None and decoded.shape[:2] == (8, 8)


def _decode_reduced(cv2, np, data, fd, flags, factor):
    """imdecode, or (where imdecode cannot reduce) imread of the same open, checked file."""
    proc_path = "/proc/self/fd/{}".format(fd)
    if factor > 1 and fd is not None and not imdecode_reduces() and os.path.exists(proc_path):
        return cv2.imread(proc_path, flags)
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)


def _decode_opencv(data, header, limits, name, fd=None):
    cv2 = require("cv2")
    np = require("numpy")
    factor = reduction_for(header, limits.max_side)
    image = _decode_reduced(cv2, np, data, fd, _imread_flags(cv2, header, factor), factor)
    if image is None:
        if looks_truncated(data):
            raise ImageError("{}: image file is truncated (incomplete copy?)".format(name))
        raise ImageError("{}: {} could not be decoded (damaged file?). Fix: copy it again or export it "
                         "as PNG".format(name, header.format))
    if looks_truncated(data):
        raise ImageError("{}: image file is truncated (incomplete copy?)".format(name))
    image = fit_side(image, limits.max_side)
    if image.dtype != np.uint8:
        image = to_8bit(image, header.bits if header.format == "PNG" and header.bits < 16 else None)
    return LoadedImage(to_bgr(image), [])


def _decode_dicom(data, header, limits, name, fd=None):
    from edge.dicom import decode_dicom

    return decode_dicom(data, limits, name)


DECODERS = {"DICOM": _decode_dicom}


def looks_truncated(data):
    """A JPEG without its end marker or a PNG without IEND (judged by content, not extension)."""
    if data[:2] == b"\xff\xd8":
        # A complete JPEG ends with the EOI marker; OpenCV silently greys out a cut-off tail.
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def read_image(path, limits=DEFAULT_LIMITS, supported=()):
    """Read ``path`` as a LoadedImage (BGR uint8, longer side <= limits.max_side); ImageError otherwise.

    ``supported`` (extensions) is only quoted in the message for a file that is not an image.
    """
    path = str(path)
    max_bytes = int(round(limits.max_file_mb * 1e6))
    fd = open_regular_file(path, max_bytes)
    try:
        return _read_open(path, fd, max_bytes, limits, supported)
    finally:
        os.close(fd)


def _read_open(path, fd, max_bytes, limits, supported):
    name = printable(path)
    data = _read_bounded(fd, name, max_bytes)
    if not data:
        raise ImageError("{}: empty file".format(name))
    header = read_header(data, name)
    if header is None and os.path.splitext(path)[1].lower() in DICOM_EXTENSIONS:
        header = _dicom_header(data, name)
    if header is None:
        if looks_truncated(data):
            raise ImageError("{}: image file is truncated (incomplete copy?)".format(name))
        raise ImageError("{}: not a readable image (supported: {})".format(name, ", ".join(supported)))
    check_size(header, limits, name)
    decode = DECODERS.get(header.format, _decode_opencv)
    return decode(data, header, limits, name, fd)
