"""The one preprocessing function and image loading, on real X-rays and generated images."""

import cv2
import numpy as np
import pytest

from edge.description import InputSpec
from edge.errors import ImageError
from edge.preprocess import is_image_file, load_image, preprocess, preprocess_batch


def test_gray_xray_to_rgb_model_input(real_xray):
    image = load_image(real_xray)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    spec = InputSpec(64, 96, colour="RGB")
    batch = preprocess(image, spec)
    assert batch.shape == (1, 3, 64, 96) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    assert batch.min() >= 0.0 and batch.max() <= 255.0
    expected = cv2.cvtColor(cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(batch[0], expected.transpose(2, 0, 1).astype(np.float32))


def test_channel_order_and_gray_conversion():
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[:, :, 0] = 200  # blue
    bgr[:, :, 2] = 10   # red
    rgb = preprocess(bgr, InputSpec(16, 16, colour="RGB"))
    assert rgb[0, 0, 0, 0] == 10 and rgb[0, 2, 0, 0] == 200  # R first, B last
    gray = preprocess(bgr, InputSpec(16, 16, colour="GRAY"))
    assert gray.shape == (1, 1, 16, 16)
    assert gray[0, 0, 0, 0] == cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[0, 0]


def test_gray_and_bgra_inputs_are_accepted():
    spec = InputSpec(8, 8)
    gray = np.full((20, 30), 77, np.uint8)
    assert preprocess(gray, spec).shape == (1, 3, 8, 8) and preprocess(gray, spec).max() == 77
    bgra = np.full((20, 30, 4), 50, np.uint8)
    assert preprocess(bgra, spec).shape == (1, 3, 8, 8)


def test_out_buffer_is_reused():
    spec = InputSpec(32, 32)
    buffer = np.empty(spec.shape(1), np.float32)
    image = np.random.RandomState(0).randint(0, 255, (50, 40, 3)).astype(np.uint8)
    assert preprocess(image, spec, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, preprocess(image, spec))


def test_linear_resize_differs_from_area():
    image = np.random.RandomState(1).randint(0, 255, (100, 100, 3)).astype(np.uint8)
    area = preprocess(image, InputSpec(25, 25, resize="area"))
    linear = preprocess(image, InputSpec(25, 25, resize="linear"))
    assert area.shape == linear.shape and not np.array_equal(area, linear)


def test_batch_matches_single_images(real_xray):
    images = [load_image(real_xray), np.zeros((10, 10, 3), np.uint8)]
    spec = InputSpec(16, 16)
    batch = preprocess_batch(images, spec)
    assert batch.shape == (2, 3, 16, 16)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(batch[index], preprocess(image, spec)[0])


def test_load_image_errors(tmp_path, real_xray):
    with pytest.raises(ImageError, match="no such file"):
        load_image(str(tmp_path / "missing.png"))
    with pytest.raises(ImageError, match="is a folder"):
        load_image(str(tmp_path))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(str(empty))
    text = tmp_path / "text.jpg"
    text.write_bytes(b"hello, not a jpeg")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(str(text))
    with open(real_xray, "rb") as handle:
        png = handle.read()
    for name, data in (("cut.png", png[:-12]), ("half.png", png[:len(png) // 2])):
        cut = tmp_path / name
        cut.write_bytes(data)
        with pytest.raises(ImageError, match="truncated"):
            load_image(str(cut))


def test_truncated_jpeg_and_misnamed_png(tmp_path, real_xray):
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(real_xray))
    assert ok
    jpeg = jpeg.tobytes()
    for name, data in (("no-eoi.jpg", jpeg[:-2]), ("half.jpg", jpeg[:len(jpeg) // 2])):
        cut = tmp_path / name
        cut.write_bytes(data)
        # Some OpenCV builds decode a cut JPEG with a grey tail, others refuse it: both say "truncated".
        with pytest.raises(ImageError, match="truncated"):
            load_image(str(cut))
    with open(real_xray, "rb") as handle:
        png = handle.read()
    misnamed = tmp_path / "really-a-png.jpg"
    misnamed.write_bytes(png)
    assert load_image(str(misnamed)).shape[:2] == cv2.imread(real_xray).shape[:2]


def test_is_image_file():
    assert is_image_file("a/B.PNG") and is_image_file("x.jpeg") and is_image_file("scan.tiff")
    assert is_image_file("IM0001.DCM") and is_image_file("chest.dicom")
    assert not is_image_file("notes.txt") and not is_image_file("model.onnx")
