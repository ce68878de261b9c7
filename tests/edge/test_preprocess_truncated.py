"""``load_image`` refuses cut-off files that OpenCV would silently decode (issue 18).

OpenCV decodes a JPEG cut off mid-scan and fills the missing rows with grey; the kiosk would
then classify half an X-ray. The files here are a real X-ray from ../shared, re-encoded and cut.
"""

import os

import cv2
import numpy as np
import pytest

from edge.errors import ImageError
from edge.preprocess import is_image_file, load_image


def _encode(tmp_path, name, image, ext):
    ok, data = cv2.imencode(ext, image)
    assert ok
    path = str(tmp_path / name)
    with open(path, "wb") as handle:
        handle.write(data.tobytes())
    return path, data.tobytes()


@pytest.fixture
def xray(real_xray):
    return cv2.imread(real_xray, cv2.IMREAD_COLOR)


def test_cut_off_jpeg_that_opencv_fills_grey_is_refused(tmp_path, xray):
    path, data = _encode(tmp_path, "full.jpg", xray, ".jpg")
    assert load_image(path).shape == xray.shape
    cut = str(tmp_path / "cut.jpg")
    with open(cut, "wb") as handle:
        handle.write(data[:len(data) * 2 // 3])
    # OpenCV 4.1 (JetPack 4.6) decodes this file, grey-filling the missing rows; newer OpenCV returns
    # None. Either way it is refused as truncated (the JetPack 4.6 run covers the first case).
    with pytest.raises(ImageError) as info:
        load_image(cut)
    assert str(info.value) == "{}: image file is truncated (incomplete copy?)".format(cut)


def test_jpeg_that_decodes_but_does_not_end_with_its_end_marker_is_refused(tmp_path, xray):
    """What OpenCV 4.1 does with a cut-off JPEG, reproduced on any OpenCV: it decodes, no EOI at the end."""
    path, data = _encode(tmp_path, "tail.jpg", xray, ".jpg")
    with open(path, "ab") as handle:
        handle.write(b"\xff\xd8partial next write")
    tail = np.frombuffer(data + b"\xff\xd8partial next write", np.uint8)
    assert cv2.imdecode(tail, cv2.IMREAD_COLOR) is not None
    with pytest.raises(ImageError, match="image file is truncated"):
        load_image(path)


def test_zero_padding_after_the_end_marker_is_still_complete(tmp_path, xray):
    path, data = _encode(tmp_path, "padded.jpg", xray, ".jpg")
    with open(path, "ab") as handle:
        handle.write(b"\x00" * 512)  # some cameras pad to a block size
    assert load_image(path).shape == xray.shape


def test_cut_off_png_is_refused_and_a_png_named_jpg_is_not(tmp_path, xray):
    path, data = _encode(tmp_path, "full.png", xray, ".png")
    assert load_image(path).shape == xray.shape
    for keep in (len(data) // 2, len(data) - 12):
        cut = str(tmp_path / "cut{}.png".format(keep))
        with open(cut, "wb") as handle:
            handle.write(data[:keep])
        with pytest.raises(ImageError, match="image file is truncated"):
            load_image(cut)
    named_jpg, _ = _encode(tmp_path, "really-a-png.jpg", xray, ".png")
    assert load_image(named_jpg).shape == xray.shape


def test_every_refusal_names_the_file(tmp_path):
    missing = str(tmp_path / "missing.png")
    with pytest.raises(ImageError) as info:
        load_image(missing)
    assert str(info.value) == missing + ": no such file"
    with pytest.raises(ImageError) as info:
        load_image(str(tmp_path))
    assert str(info.value) == str(tmp_path) + ": is a folder, not an image"
    empty = str(tmp_path / "empty.png")
    open(empty, "wb").close()
    with pytest.raises(ImageError) as info:
        load_image(empty)
    assert str(info.value) == empty + ": empty file"
    text = str(tmp_path / "notes.png")
    with open(text, "w") as handle:
        handle.write("not an image")
    with pytest.raises(ImageError) as info:
        load_image(text)
    assert str(info.value).startswith(text + ": not a readable image (supported: .png, .jpg")


def test_image_extensions():
    assert is_image_file("a/B.PNG") and is_image_file("x.jpeg") and is_image_file(os.path.join("d", "y.tif"))
    assert not is_image_file("x.txt") and not is_image_file("png")


def test_decoded_but_truncated_names_the_file_and_trailing_bytes_are_judged(tmp_path, xray):
    path, data = _encode(tmp_path, "tail.jpg", xray, ".jpg")
    with open(path, "ab") as handle:
        handle.write(b"XX")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(info.value) == "{}: image file is truncated (incomplete copy?)".format(path)


def test_png_end_chunk_may_be_followed_by_at_most_24_bytes(tmp_path, xray):
    """The "IEND" tag must sit in the last 32 bytes: tag and CRC (8 bytes) plus up to 24 bytes of padding."""
    path, data = _encode(tmp_path, "ok.png", xray, ".png")
    with open(path, "ab") as handle:
        handle.write(b"\x01" * 24)
    assert load_image(path).shape == xray.shape
    with open(path, "ab") as handle:
        handle.write(b"\x01")
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_grey_and_bgra_frames_give_the_same_model_input_as_bgr(xray):
    from edge.description import InputSpec
    from edge.preprocess import preprocess, preprocess_batch

    spec = InputSpec(32, 32)
    grey = cv2.cvtColor(xray, cv2.COLOR_BGR2GRAY)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    expected = preprocess(bgr, spec)
    np.testing.assert_array_equal(preprocess(grey, spec), expected)
    np.testing.assert_array_equal(preprocess(bgra, spec), expected)
    batch = preprocess_batch([bgr, bgra, grey], spec)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 32, 32)
    for row in batch:
        np.testing.assert_array_equal(row, expected[0])
