"""edge.imageio step by step, on bytes and files built here with known answers: every header reader
(PNG sBIT/palette, JPEG fill and restart markers, TIFF both byte orders and offsets, BMP core and
info headers, WebP's three chunks, PNM comments), the size check and reduction at their boundaries,
the regular-file and truncation checks, each refusal's message (mutation survivors, issue 18)."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from edge import imageio
from edge.errors import ImageError
from edge.imageio import ImageLimits, read_header

LIMITS = ImageLimits(max_file_mb=1, max_megapixels=1, max_side=100)


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width, height, bits, colour, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", b"")
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize("colour, channels", [(0, 1), (2, 3), (4, 2), (6, 4), (5, 3)])
def test_png_header_channels(colour, channels):
    assert tuple(read_header(_png(7, 5, 8, colour))) == ("PNG", 7, 5, 8, channels, 1)


def test_png_palette_is_eight_bits_and_ignores_sbit():
    assert read_header(_png(3, 2, 4, 3)).bits == 8
    assert read_header(_png(3, 2, 4, 3, _chunk(b"sBIT", b"\x05\x05\x05"))).bits == 8


def test_png_significant_bits():
    assert read_header(_png(3, 2, 16, 0, _chunk(b"sBIT", b"\x0c"))).bits == 12
    assert read_header(_png(3, 2, 16, 2, _chunk(b"sBIT", b"\x0a\x0c\x0b"))).bits == 12
    assert read_header(_png(3, 2, 16, 0, _chunk(b"sBIT", b""))).bits == 16
    # after a chunk of another kind; an sBIT after IDAT does not count
    other = _chunk(b"tEXt", b"a\0b")
    assert read_header(_png(3, 2, 16, 0, other + _chunk(b"sBIT", b"\x09"))).bits == 9
    late = _png(3, 2, 16, 0).replace(_chunk(b"IEND", b""), _chunk(b"sBIT", b"\x09") + _chunk(b"IEND", b""))
    assert read_header(late).bits == 16
    assert imageio._png_significant_bits(b"\x89PNG\r\n\x1a\n", 0) is None


def test_png_too_short_or_without_ihdr():
    data = _png(3, 2, 8, 0)
    assert read_header(data[:32]) is None
    assert read_header(data[:33]).width == 3
    assert read_header(data.replace(b"IHDR", b"IHDX")) is None


def _jpeg(*segments):
    return b"\xff\xd8" + b"".join(segments)


def _segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


SOF0 = _segment(0xC0, struct.pack(">BHHB", 8, 480, 640, 3) + b"\0" * 9)


def test_jpeg_header_after_other_segments_fill_and_restart_markers():
    data = _jpeg(_segment(0xE0, b"JFIF\0" + b"\0" * 9), b"\xff", b"\xff\x01", b"\xff\xd0", b"\xff\xd7",
                 _segment(0xC4, b"\0" * 20), SOF0)
    assert tuple(read_header(data)) == ("JPEG", 640, 480, 8, 3, 1)


@pytest.mark.parametrize("marker", sorted(imageio.JPEG_SOF))
def test_every_start_of_frame_marker(marker):
    sof = _segment(marker, struct.pack(">BHHB", 12, 3, 4, 1) + b"\0" * 3)
    assert tuple(read_header(_jpeg(sof))) == ("JPEG", 4, 3, 12, 1, 1)


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC, 0xBF, 0xD8 + 0x10])
def test_non_frame_markers_are_skipped(marker):
    data = _jpeg(_segment(marker, b"\0" * 6), SOF0)
    assert read_header(data).width == 640


def test_jpeg_without_frame_or_broken_marker():
    assert read_header(_jpeg(_segment(0xE0, b"\0" * 4))) is None
    assert read_header(_jpeg(b"\x00\xc0" + SOF0)) is None
    assert read_header(_jpeg(SOF0[:9])) is None  # frame header cut off
    assert read_header(_jpeg(SOF0[:10])).width == 640
    assert imageio._jpeg_header(b"\xff\xd8" + SOF0[:3], "x") is None


def _tiff(order, entries, extra=b""):
    code = "<" if order == b"II" else ">"
    head = order + struct.pack(code + "HI", 42, 8)
    ifd = struct.pack(code + "H", len(entries))
    for tag, kind, values in entries:
        fmt, size = {3: ("H", 2), 4: ("I", 4), 2: ("B", 1)}[kind]
        packed = struct.pack(code + fmt * len(values), *values)
        ifd += struct.pack(code + "HHI", tag, kind, len(values))
        ifd += packed.ljust(4, b"\0") if len(packed) <= 4 else struct.pack(code + "I", 8 + 2 + 12 * len(
            entries) + 4 + len(extra))
        extra += b"" if len(packed) <= 4 else packed
    return head + ifd + b"\0\0\0\0" + extra


@pytest.mark.parametrize("order", [b"II", b"MM"])
def test_tiff_header_both_byte_orders(order):
    data = _tiff(order, [(256, 4, [300]), (257, 3, [200]), (258, 3, [16]), (277, 3, [1])])
    assert tuple(read_header(data)) == ("TIFF", 300, 200, 16, 1, 1)


def test_tiff_bits_per_sample_held_at_an_offset():
    data = _tiff(b"II", [(256, 3, [30]), (257, 3, [20]), (258, 3, [8, 12, 8]), (277, 3, [3])])
    assert tuple(read_header(data)) == ("TIFF", 30, 20, 12, 3, 1)
    data = _tiff(b"II", [(256, 3, [30]), (257, 3, [20]), (258, 3, [10, 9])])
    assert tuple(read_header(data)) == ("TIFF", 30, 20, 10, 1, 1)


def test_tiff_defaults_and_ignored_tags():
    data = _tiff(b"II", [(256, 3, [30]), (257, 4, [20]), (259, 3, [5]), (262, 2, [1])])
    assert tuple(read_header(data)) == ("TIFF", 30, 20, 8, 1, 1)
    assert read_header(_tiff(b"II", [(256, 3, [30])])) is None
    assert read_header(_tiff(b"II", [(257, 3, [30])])) is None
    assert read_header(_tiff(b"II", [(256, 2, [30]), (257, 3, [20])])) is None
    big = b"II" + struct.pack("<HI", 43, 8) + b"\0" * 16
    assert imageio._tiff_header(big, "x") is None


def _bmp(width, height, bits, core=False):
    if core:
        info = struct.pack("<IHHHH", 12, width, height, 1, bits) + b"\0" * 4
    else:
        info = struct.pack("<IiiHH", 40, width, height, 1, bits) + b"\0" * 24
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


@pytest.mark.parametrize("bits, channels", [(1, 1), (8, 1), (9, 3), (24, 3), (32, 3)])
def test_bmp_header(bits, channels):
    assert tuple(read_header(_bmp(40, -30, bits))) == ("BMP", 40, 30, 8, channels, 1)
    assert tuple(read_header(_bmp(40, 30, bits, core=True))) == ("BMP", 40, 30, 8, channels, 1)


def test_bmp_too_short_is_not_read():
    assert read_header(_bmp(4, 3, 8)[:29]) is None
    assert read_header(_bmp(4, 3, 8)[:30]).width == 4


def _webp(chunk, body):
    size = struct.pack("<I", 4 + 8 + len(body))
    return b"RIFF" + size + b"WEBP" + chunk + struct.pack("<I", len(body)) + body


def test_webp_headers():
    vp8x = _webp(b"VP8X", b"\0" * 4 + (640 - 1).to_bytes(3, "little") + (480 - 1).to_bytes(3, "little"))
    assert tuple(read_header(vp8x)) == ("WebP", 640, 480, 8, 4, 1)
    bits = (640 - 1) | ((480 - 1) << 14)
    vp8l = _webp(b"VP8L", b"\x2f" + bits.to_bytes(4, "little"))
    assert tuple(read_header(vp8l)) == ("WebP", 640, 480, 8, 4, 1)
    vp8 = _webp(b"VP8 ", b"\0" * 6 + struct.pack("<HH", 640 | 0x4000, 480 | 0x8000))
    assert tuple(read_header(vp8)) == ("WebP", 640, 480, 8, 4, 1)
    assert read_header(_webp(b"ALPH", b"\0" * 20)) is None
    assert read_header(b"RIFF\0\0\0\0WAVEfmt ") is None


@pytest.mark.parametrize("data, want", [
    (b"P5\n4 3\n255\n", ("PNM", 4, 3, 8, 1, 1)),
    (b"P5 4 3 256\n", ("PNM", 4, 3, 16, 1, 1)),
    (b"P6\n# made here\n4 # width\n3\n255\n", ("PNM", 4, 3, 8, 3, 1)),
    (b"P3\n4 3\n65535\n", ("PNM", 4, 3, 16, 3, 1)),
    (b"P2\n4 3 255\n", ("PNM", 4, 3, 8, 1, 1)),
    (b"P1\n4 3 1\n", ("PNM", 4, 3, 8, 1, 1)),
    (b"P4\n4 3 1\n", ("PNM", 4, 3, 8, 1, 1)),
])
def test_pnm_headers(data, want):
    assert tuple(read_header(data)) == want


def test_pnm_not_pnm():
    assert read_header(b"P7\n4 3\n255\n") is None
    assert read_header(b"P5") is None
    assert read_header(b"Q5\n4 3 255\n") is None


@pytest.mark.parametrize("data, kind", [
    (b"P5\n4 x\n255\n", "PNM"), (b"P5\n4\n", "PNM"),
    (b"II*\x00" + struct.pack("<I", 8), "TIFF"),
])
def test_damaged_header_message_names_the_format(data, kind):
    with pytest.raises(ImageError) as caught:
        read_header(data, "scan.x")
    text = str(caught.value)
    assert text.startswith("scan.x: {} header is damaged (".format(kind))
    assert text.endswith("). Fix: copy the file again or export it as PNG")


def test_dicom_preamble_wins_over_a_tiff_preamble():
    pydicom = pytest.importorskip("pydicom")  # noqa: F841
    data = b"II*\x00" + b"\0" * 124 + b"DICM" + b"\x02\x00\x10\x00UI\x00\x00"
    with pytest.raises(ImageError, match="DICOM file holds no image"):
        read_header(data, "dual.dcm")


# --- size check and reduction ---

def _h(width, height, frames=1, bits=8, channels=1, fmt="PNG"):
    return imageio.ImageHeader(fmt, width, height, bits, channels, frames)


def test_check_size_boundaries_and_messages():
    imageio.check_size(_h(1000, 1000), LIMITS, "a")  # exactly 1 megapixel
    imageio.check_size(_h(500, 1000, frames=2), LIMITS, "a")
    imageio.check_size(_h(1000, 1000, frames=0), LIMITS, "a")
    with pytest.raises(ImageError) as caught:
        imageio.check_size(_h(1000, 1001), LIMITS, "big.png")
    assert str(caught.value) == ("big.png: image is too large to open safely (1000x1001 = 1 megapixels, "
                                 "limit 1). Fix: export it at most 1 megapixels (e.g. 4000x4000)")
    with pytest.raises(ImageError) as caught:
        imageio.check_size(_h(1000, 600, frames=2), LIMITS, "f.dcm")
    assert str(caught.value) == ("f.dcm: image is too large to open safely (1000x600 x 2 frames = 1 "
                                 "megapixels, limit 1). Fix: export it at most 1 megapixels (e.g. 4000x4000)")
    for width, height in ((0, 5), (5, 0), (-1, 5)):
        with pytest.raises(ImageError) as caught:
            imageio.check_size(_h(width, height), LIMITS, "z.png")
        want = "z.png: header says {}x{} pixels: not a usable image".format(width, height)
        assert str(caught.value) == want
    imageio.check_size(_h(1, 1), LIMITS, "a")


@pytest.mark.parametrize("side, factor", [(100, 1), (101, 2), (200, 2), (201, 4), (400, 4), (401, 8),
                                          (800, 8), (5000, 8)])
def test_reduction_for_boundaries(side, factor):
    assert imageio.reduction_for(_h(side, 10), 100) == factor
    assert imageio.reduction_for(_h(10, side), 100) == factor


def test_imread_flags():
    assert imageio._imread_flags(cv2, _h(1, 1, bits=16), 1) == cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    assert imageio._imread_flags(cv2, _h(1, 1, bits=9, channels=3), 4) == (cv2.IMREAD_ANYDEPTH
                                                                          | cv2.IMREAD_ANYCOLOR)
    assert imageio._imread_flags(cv2, _h(1, 1), 1) == cv2.IMREAD_GRAYSCALE
    assert imageio._imread_flags(cv2, _h(1, 1, channels=3), 1) == cv2.IMREAD_COLOR
    assert imageio._imread_flags(cv2, _h(1, 1), 2) == cv2.IMREAD_REDUCED_GRAYSCALE_2
    assert imageio._imread_flags(cv2, _h(1, 1, channels=4), 8) == cv2.IMREAD_REDUCED_COLOR_8


# --- files ---

def test_regular_file_refusals(tmp_path):
    with pytest.raises(ImageError) as caught:
        imageio.read_regular_file(str(tmp_path / "none.png"), 10)
    assert str(caught.value).endswith("none.png: no such file")
    with pytest.raises(ImageError) as caught:
        imageio.read_regular_file(str(tmp_path), 10)
    assert str(caught.value).endswith(": is a folder, not an image")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(str(fifo))
    with pytest.raises(ImageError) as caught:
        imageio.read_regular_file(str(fifo), 10)
    assert str(caught.value).endswith("pipe.png: is a named pipe (FIFO), not an image file")
    with pytest.raises(ImageError) as caught:
        imageio.read_regular_file("/dev/null", 10)
    assert str(caught.value) == "/dev/null: is a character device, not an image file"


def test_file_size_limit_boundary_and_message(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"x" * 2500000)
    assert len(imageio.read_regular_file(str(path), 2500000)) == 2500000
    with pytest.raises(ImageError) as caught:
        imageio.read_regular_file(str(path), 2499999)
    assert str(caught.value).endswith("f.png: file is too large (2 MB, limit 2 MB). Fix: export the image "
                                      "smaller (e.g. a PNG of at most 4000x4000)")


def test_reading_in_chunks_and_a_file_that_grows(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (imageio.READ_CHUNK // 128 + 3))
    fd = os.open(str(path), os.O_RDONLY)
    try:
        assert imageio._read_bounded(fd, "big.bin", 10 ** 9) == path.read_bytes()
    finally:
        os.close(fd)
    fd = os.open(str(path), os.O_RDONLY)
    try:
        with pytest.raises(ImageError) as caught:
            imageio._read_bounded(fd, "big.bin", imageio.READ_CHUNK)
    finally:
        os.close(fd)
    assert str(caught.value) == "big.bin: file is too large (over 1 MB)"


def test_looks_truncated():
    assert imageio.looks_truncated(b"\xff\xd8abc\xff\xd9") is False
    assert imageio.looks_truncated(b"\xff\xd8abc\xff\xd9\0\0") is False
    assert imageio.looks_truncated(b"\xff\xd8abc\xff") is True
    png = _png(1, 1, 8, 0)
    assert imageio.looks_truncated(png) is False
    assert imageio.looks_truncated(png + b"\0" * 24) is False  # IEND within the last 32 bytes
    assert imageio.looks_truncated(png + b"\0" * 25) is True
    assert imageio.looks_truncated(png[:-12]) is True
    assert imageio.looks_truncated(b"GIF89a") is False


def test_read_image_refusals(tmp_path):
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(empty))
    assert str(caught.value).endswith("e.png: empty file")
    text = tmp_path / "t.txt"
    text.write_bytes(b"hello")
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(text), supported=(".png", ".jpg"))
    assert str(caught.value).endswith("t.txt: not a readable image (supported: .png, .jpg)")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(b"\xff\xd8\x00\x00")
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(cut))
    assert str(caught.value).endswith("cut.bin: image file is truncated (incomplete copy?)")


def test_damaged_and_truncated_png(tmp_path):
    ok, encoded = cv2.imencode(".png", np.full((20, 30), 77, np.uint8))
    data = encoded.tobytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[:40] + b"\0" * (len(data) - 40))
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(bad))
    assert str(caught.value).endswith("bad.png: image file is truncated (incomplete copy?)")
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[:33] + b"\0" * 40 + data[-12:])
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(broken))
    assert str(caught.value).endswith("broken.png: PNG could not be decoded (damaged file?). Fix: copy it "
                                      "again or export it as PNG")


def test_sixteen_bit_png_by_its_significant_bits(tmp_path):
    values = np.array([[0, 1024, 2048, 4095]], dtype=np.uint16)
    ok, encoded = cv2.imencode(".png", values)
    data = encoded.tobytes()
    path = tmp_path / "s.png"
    path.write_bytes(data[:33] + _chunk(b"sBIT", b"\x0c") + data[33:])
    got = imageio.read_image(str(path)).image
    np.testing.assert_array_equal(got[0, :, 0], values[0] >> 4)
    path.write_bytes(data)  # no sBIT: the bits of the highest value (12 here too)
    np.testing.assert_array_equal(imageio.read_image(str(path)).image[0, :, 0], values[0] >> 4)
    # 16 bits declared: by the highest value
    path.write_bytes(data[:33] + _chunk(b"sBIT", b"\x10") + data[33:])
    np.testing.assert_array_equal(imageio.read_image(str(path)).image[0, :, 0], values[0] >> 4)
    path.write_bytes(data[:33] + _chunk(b"sBIT", b"\x0e") + data[33:])
    np.testing.assert_array_equal(imageio.read_image(str(path)).image[0, :, 0], values[0] >> 6)


def test_big_image_is_fitted_to_max_side(tmp_path):
    ok, encoded = cv2.imencode(".png", np.full((16, 960), 90, np.uint8))
    path = tmp_path / "w.png"
    path.write_bytes(encoded.tobytes())
    got = imageio.read_image(str(path), LIMITS).image  # decoded at 1/8 (120 wide), then fitted to 100
    assert got.shape[1:] == (100, 3) and got.shape[0] in (1, 2) and (got == 90).all()


# --- second round (survivors of the first mutation run) ---

def test_sizes_and_lengths_over_32767_are_unsigned():
    big_app = _segment(0xE1, b"\0" * 40000)  # a segment length >= 0x8000
    sof = _segment(0xC0, struct.pack(">BHHB", 8, 50000, 40000, 1) + b"\0" * 3)
    assert tuple(read_header(_jpeg(big_app, sof))) == ("JPEG", 40000, 50000, 8, 1, 1)
    assert tuple(read_header(_bmp(40000, 50000, 8, core=True))) == ("BMP", 40000, 50000, 8, 1, 1)


def test_png_palette_has_three_channels():
    assert read_header(_png(3, 2, 8, 3)).channels == 3


def test_webp_size_fields_end_where_the_next_bytes_begin():
    vp8x = _webp(b"VP8X", b"\0" * 4 + (640 - 1).to_bytes(3, "little") + (480 - 1).to_bytes(3, "little"))
    assert tuple(read_header(vp8x + b"ALPH\x04\0\0\0\xff\xff\xff\xff")) == ("WebP", 640, 480, 8, 4, 1)
    bits = (640 - 1) | ((480 - 1) << 14)
    vp8l = _webp(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\xff\xff")
    assert tuple(read_header(vp8l)) == ("WebP", 640, 480, 8, 4, 1)


# --- third round (survivors of the full run on main 4540947) ---

def _tiff_entry(tag, kind, number, value):
    return struct.pack("<HHII", tag, kind, number, value)


def test_tiff_counts_and_offsets_over_the_signed_range():
    head = b"II" + struct.pack("<HI", 42, 8)
    # an entry count of 0x8001 (negative as a signed short) with only two entries present: damaged
    many = head + struct.pack("<H", 0x8001) + _tiff_entry(256, 3, 1, 30) + _tiff_entry(257, 3, 1, 20)
    with pytest.raises(ImageError, match=r"^t: TIFF header is damaged \(unpack requires"):
        read_header(many, "t")
    # BitsPerSample held at an offset past 2 GiB (negative as a signed int): damaged, not the file's start
    far = (head + struct.pack("<H", 3) + _tiff_entry(256, 3, 1, 30) + _tiff_entry(257, 3, 1, 20)
           + _tiff_entry(258, 3, 3, 0xFFFFFFF0) + b"\0" * 4)
    with pytest.raises(ImageError, match=r"^t: TIFF header is damaged \(unpack requires"):
        read_header(far, "t")


def test_tiff_value_count_beyond_the_file_is_refused_without_building_it():
    """A tag claiming 2**31 values is damaged at once (no 2 GB unpack format is built)."""
    head = b"II" + struct.pack("<HI", 42, 8)
    data = (head + struct.pack("<H", 2) + _tiff_entry(256, 3, 0x80000000, 26) + _tiff_entry(257, 3, 1, 20)
            + b"\0" * 4)
    with pytest.raises(ImageError) as caught:
        read_header(data, "t")
    assert str(caught.value).startswith("t: TIFF header is damaged (tag 256 claims 2147483648 values, "
                                        "more than the file's {} bytes hold)".format(len(data)))


def test_pnm_fields_on_one_line_with_pixels_and_read_from_the_first_2048_bytes():
    assert tuple(read_header(b"P2\n3 2 255 0 1 2\n3 4 5\n")) == ("PNM", 3, 2, 8, 1, 1)
    # a comment pushes the maxval's last digit to byte 2048: only "25" is read (8 bits, not 16)
    head = b"P5\n#" + b"c" * 2037 + b"\n3 2 25"
    assert len(head) == 2048
    assert tuple(read_header(head + b"6\n")) == ("PNM", 3, 2, 8, 1, 1)


def test_webp_lossy_size_fields_with_data_after_them():
    vp8 = _webp(b"VP8 ", b"\0" * 6 + struct.pack("<HH", 640, 480) + b"\xff" * 8)
    assert tuple(read_header(vp8)) == ("WebP", 640, 480, 8, 4, 1)


def test_a_read_error_names_the_file():
    """/proc/self/mem is a regular file of size 0 whose first read fails (EIO): the read refusal."""
    for read in (imageio.read_regular_file, imageio.read_image):
        with pytest.raises(ImageError) as caught:
            read("/proc/self/mem", 100) if read is imageio.read_regular_file else read("/proc/self/mem")
        assert str(caught.value) == ("/proc/self/mem: cannot be read (Input/output error). Fix: re-insert "
                                     "the USB stick or copy the file again")


def test_png_sizes_over_the_signed_range_and_chunk_walk():
    assert read_header(_png(2 ** 31, 5, 8, 0)).width == 2 ** 31
    # a chunk claiming 2 GiB before any sBIT: the walk ends (no sBIT), it does not step backwards
    huge = struct.pack(">I", 0x80000000) + b"tEXt" + b"a\0b"
    assert tuple(read_header(_png(3, 2, 16, 0, huge))) == ("PNG", 3, 2, 16, 1, 1)
    # grey with alpha honours sBIT; nothing after IEND counts
    assert read_header(_png(3, 2, 16, 4, _chunk(b"sBIT", b"\x0c\x02"))).bits == 12
    ihdr = _png(3, 2, 16, 0)[:33]
    assert read_header(ihdr + _chunk(b"IEND", b"") + _chunk(b"sBIT", b"\x09")).bits == 16


def _spied_decoders(monkeypatch, reduces):
    """Where imdecode ignores IMREAD_REDUCED_* (JetPack 4.6's OpenCV 4.1, which is not here):
    ``imdecode_reduces`` answers ``reduces``; the calls to imread and imdecode are recorded."""
    calls = []
    real_imread, real_imdecode = cv2.imread, cv2.imdecode

    def imread(path, flags):
        calls.append(("imread", path, flags, os.path.exists(path)))
        return real_imread(path, flags)

    def imdecode(buf, flags):
        calls.append(("imdecode", flags))
        return real_imdecode(buf, flags)

    monkeypatch.setattr(imageio, "imdecode_reduces", lambda: reduces)
    monkeypatch.setattr(cv2, "imread", imread)
    monkeypatch.setattr(cv2, "imdecode", imdecode)
    return calls


def test_reduced_decoding_through_imread_of_the_open_file(tmp_path, monkeypatch):
    pixels = (np.arange(40 * 150) % 251).astype(np.uint8).reshape(40, 150)
    path = tmp_path / "wide.png"
    path.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())
    want = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)  # imread reduces in every OpenCV >= 3.2
    calls = _spied_decoders(monkeypatch, reduces=False)
    got = imageio.read_image(str(path), LIMITS).image  # 150 wide: reduced by 2
    assert len(calls) == 1 and calls[0][0] == "imread" and calls[0][2] == cv2.IMREAD_REDUCED_GRAYSCALE_2
    assert calls[0][3] and calls[0][1].startswith("/proc/self/fd/") and calls[0][1][14:].isdigit()
    assert got.shape == (20, 75, 3) and (got[:, :, 0] == want).all()
    # not reduced (factor 1): imdecode, even where imdecode cannot reduce
    del calls[:]
    small = tmp_path / "small.png"
    small.write_bytes(cv2.imencode(".png", pixels[:, :100])[1].tobytes())
    assert imageio.read_image(str(small), LIMITS).image.shape == (40, 100, 3)
    assert calls == [("imdecode", cv2.IMREAD_GRAYSCALE)]
    # bytes without a file (no descriptor) and an OpenCV whose imdecode reduces: imdecode
    del calls[:]
    header = read_header(path.read_bytes())
    imageio._decode_opencv(path.read_bytes(), header, LIMITS, "wide.png")
    monkeypatch.setattr(imageio, "imdecode_reduces", lambda: True)
    imageio.read_image(str(path), LIMITS)
    assert calls == [("imdecode", cv2.IMREAD_REDUCED_GRAYSCALE_2)] * 2


def test_check_size_one_pixel_over_and_the_megapixels_rounded_in_the_message():
    with pytest.raises(ImageError, match=r"\(101x9901 = 1 megapixels, limit 1\)"):
        imageio.check_size(_h(101, 9901), LIMITS, "a")  # 1 000 001 pixels: one over
    with pytest.raises(ImageError, match=r"\(1500001x1 = 2 megapixels, limit 1\)"):
        imageio.check_size(_h(1500001, 1), LIMITS, "a")  # 1.500001 megapixels round to 2


def test_read_image_names_the_file_in_the_size_refusal(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png(2000, 2000, 8, 0))  # the header alone is refused: nothing is decoded
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(path), LIMITS)
    want = "{}: image is too large to open safely (2000x2000 = 4 megapixels".format(path)
    assert str(caught.value).startswith(want)


def test_a_file_that_cannot_be_opened(tmp_path):
    loop = tmp_path / "loop.png"
    os.symlink(str(loop), str(loop))  # ELOOP: an OSError that is not "no such file", even as root
    with pytest.raises(ImageError) as caught:
        imageio.read_image(str(loop))
    assert str(caught.value) == ("{}: cannot be read (Too many levels of symbolic links). Fix: check the "
                                 "file's permissions or copy it again".format(loop))


def test_sizes_in_messages_are_rounded_megabytes(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"x" * 1500001)
    with pytest.raises(ImageError, match=r"f\.png: file is too large \(2 MB, limit 2 MB\)"):
        imageio.read_regular_file(str(path), 1500000)  # 1.500001 and 1.5 MB (rounded half to even)
    fd = os.open(str(path), os.O_RDONLY)
    try:
        with pytest.raises(ImageError) as caught:
            imageio._read_bounded(fd, "f.png", 1500000)
    finally:
        os.close(fd)
    assert str(caught.value) == "f.png: file is too large (over 2 MB)"
    with pytest.raises(ImageError, match=r"^image: PNM header is damaged"):
        read_header(b"P5\n4 x\n255\n")  # the default name


def test_tiff_value_count_at_the_file_size():
    head = b"II" + struct.pack("<HI", 42, 8)

    def tiff(count):
        entries = _tiff_entry(256, 3, count, 0) + _tiff_entry(257, 3, 1, 20)
        return head + struct.pack("<H", 2) + entries + b"\0" * 4

    size = len(tiff(0))
    assert read_header(tiff(size // 2)).width == 0x4949  # exactly the file's bytes (from offset 0): read
    with pytest.raises(ImageError) as caught:
        read_header(tiff(size // 2 + 1), "t")
    want = "(tag 256 claims {} values, more than the file's {} bytes hold)".format(size // 2 + 1, size)
    assert want in str(caught.value)
