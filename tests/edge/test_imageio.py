"""Safe image reading on real files: the decompression bomb (memory measured in real subprocesses), size
and pixel limits at their boundary, headers of every format, reduced decoding, 16-bit scaling."""

import os

import cv2
import numpy as np
import pytest

from edge.errors import ImageError
from edge.imageio import DEFAULT_LIMITS, ImageLimits, read_header, read_image, reduction_for, to_8bit
from tests.edge.image_files import ROOT, add_sbit, classify_json, run_measured, write_png_bomb

BOMB_BUDGET_MB = 300  # issue 15: peak memory for the bomb at most this much above the idle process


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return write_png_bomb(str(tmp_path_factory.mktemp("bomb") / "bomb.png"))


@pytest.fixture(scope="module")
def xray_rgb(real_xray):
    return cv2.imread(real_xray)


def test_bomb_is_small_and_refused_from_its_header(bomb):
    assert os.path.getsize(bomb) < 1000 * 1000
    with open(bomb, "rb") as handle:
        header = read_header(handle.read(64 * 1024))
    assert (header.width, header.height, header.format) == (20000, 20000, "PNG")
    with pytest.raises(ImageError, match=r"too large to open safely \(20000x20000 = 400 megapixels, "
                                         r"limit 40\)"):
        read_image(bomb)


def test_pixel_limit_boundary(tmp_path, xray_rgb):
    path = str(tmp_path / "100x100.png")
    cv2.imwrite(path, cv2.resize(xray_rgb, (100, 100)))
    wider = str(tmp_path / "101x100.png")
    cv2.imwrite(wider, cv2.resize(xray_rgb, (101, 100)))
    limits = ImageLimits(max_file_mb=100, max_megapixels=0.01, max_side=2048)
    assert read_image(path, limits).image.shape == (100, 100, 3)
    with pytest.raises(ImageError, match="too large to open safely"):
        read_image(wider, limits)


def test_file_size_boundary_and_oversized_sparse_file(tmp_path, real_xray):
    size = os.path.getsize(real_xray)
    assert read_image(real_xray, ImageLimits(size / 1e6, 40, 2048)).image.ndim == 3
    with pytest.raises(ImageError, match="file is too large"):
        read_image(real_xray, ImageLimits((size - 1) / 1e6, 40, 2048))
    huge = tmp_path / "huge.png"
    with open(str(huge), "wb") as handle:  # sparse: 101 MB that take no disk
        handle.truncate(DEFAULT_LIMITS.max_file_mb * 1000 * 1000 + 1)
    with pytest.raises(ImageError, match=r"file is too large \(100 MB, limit 100 MB\)"):
        read_image(str(huge))


def test_only_regular_files_are_read(tmp_path):
    fifo = str(tmp_path / "pipe.png")
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="named pipe"):
        read_image(fifo)  # opened non-blocking: returns at once (the CLI test also bounds it with a timeout)
    zero = str(tmp_path / "zero.png")
    os.symlink("/dev/zero", zero)
    with pytest.raises(ImageError, match="character device"):
        read_image(zero)
    with pytest.raises(ImageError, match="is a folder"):
        read_image(str(tmp_path))


@pytest.mark.parametrize("extension", [".png", ".jpg", ".tif", ".bmp", ".webp", ".pgm", ".ppm"])
def test_headers_give_the_decoded_size(tmp_path, xray_rgb, extension):
    image = cv2.resize(xray_rgb, (301, 203))
    if extension == ".pgm":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    path = str(tmp_path / ("image" + extension))
    assert cv2.imwrite(path, image)
    with open(path, "rb") as handle:
        header = read_header(handle.read())
    assert (header.width, header.height) == (301, 203)
    assert read_image(path).image.shape == (203, 301, 3)


def test_unknown_and_damaged_headers(tmp_path):
    assert read_header(b"GIF89a" + b"\0" * 40) is None
    with pytest.raises(ImageError, match="x.tif: TIFF header is damaged"):
        read_header(b"II*\x00\xff\xff\x00\x00" + b"\0" * 8, "x.tif")
    with pytest.raises(ImageError, match="header says 0x5 pixels"):
        bad = tmp_path / "zero-width.pgm"
        bad.write_bytes(b"P5\n0 5\n255\n")
        read_image(str(bad))


@pytest.mark.parametrize("imdecode_reduces", [True, False])
def test_big_images_are_decoded_reduced(tmp_path, xray_rgb, monkeypatch, imdecode_reduces):
    """Both paths: imdecode with IMREAD_REDUCED_* (OpenCV >= 4.5) and, where imdecode ignores it
    (JetPack 4.6's OpenCV 4.1), imread of the same checked, open file through /proc/self/fd."""
    import edge.imageio

    if imdecode_reduces and not edge.imageio.imdecode_reduces():
        pytest.skip("this OpenCV's imdecode decodes full-size")
    monkeypatch.setattr(edge.imageio, "imdecode_reduces", lambda: imdecode_reduces)
    big = cv2.resize(xray_rgb, (5000, 4000), interpolation=cv2.INTER_LINEAR)
    monkeypatch.setattr(edge.imageio, "fit_side", lambda image, _side: image)  # only the decoder reduces
    for extension, expected in ((".jpg", (1000, 1250, 3)), (".png", (1000, 1250, 3))):
        path = str(tmp_path / ("big" + extension))
        assert cv2.imwrite(path, big)
        loaded = read_image(path)
        # 1/4 (5000 / 4 = 1250 <= 2048): JPEG decoded so by libjpeg, PNG decoded then reduced by OpenCV.
        assert loaded.image.shape == expected, extension
    assert [reduction_for(_header(side), 2048) for side in (2048, 2049, 4096, 8192, 8193, 30000)] == \
        [1, 2, 2, 4, 8, 8]


def _header(side):
    from edge.imageio import ImageHeader

    return ImageHeader("JPEG", side, 10, 8, 1, 1)


def test_to_8bit_uses_the_bits_actually_used():
    twelve = np.array([[0, 16, 4095]], np.uint16)
    assert to_8bit(twelve).tolist() == [[0, 1, 255]]
    assert to_8bit(twelve, 12).tolist() == [[0, 1, 255]]
    assert to_8bit(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 255]]
    assert to_8bit(np.array([[3, 200]], np.uint16)).tolist() == [[3, 200]]


@pytest.mark.onnxruntime
def test_16bit_png_with_12bit_data_classifies_like_the_8bit_png(tmp_path, real_xray):
    grey = cv2.imread(real_xray, cv2.IMREAD_GRAYSCALE)
    twelve = grey.astype(np.uint16) * 16 + 8  # 12-bit detector values in a 16-bit PNG
    plain = str(tmp_path / "twelve-bit.png")
    assert cv2.imwrite(plain, twelve)
    with open(plain, "rb") as handle:
        data = handle.read()
    marked = tmp_path / "twelve-bit-sbit.png"
    marked.write_bytes(add_sbit(data, 12))
    tiff = str(tmp_path / "twelve-bit.tif")
    assert cv2.imwrite(tiff, twelve)
    for path in (plain, str(marked), tiff):
        assert np.array_equal(read_image(path).image[:, :, 0], grey), path
    results, _err = classify_json([real_xray, plain, str(marked), tiff])
    reference = results[real_xray]
    for path in (plain, str(marked), tiff):
        for name, probability in reference.items():
            assert abs(results[path][name] - probability) <= 0.02, (path, name)


@pytest.mark.onnxruntime
def test_bomb_and_big_images_peak_memory_in_classify(tmp_path, bomb, real_xray):
    """Peak RSS of real `medkiosk classify` processes: the bomb, and a big-but-allowed 16-bit image
    (6000x6000, 36 of the 40 megapixels allowed), each at most 300 MB above the same command on a
    256x256 X-ray."""
    chest = os.path.join(ROOT, "models", "chest")
    rc, out, _err, idle_mb = run_measured(["classify", real_xray, "--bundle", chest])
    assert rc == 0 and "Decision support only" in out
    rc, out, err, bomb_mb = run_measured(["classify", bomb, real_xray, "--bundle", chest])
    assert rc == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if "bomb.png" in line] == [
        "medkiosk: error: {}: image is too large to open safely (20000x20000 = 400 megapixels, limit 40). "
        "Fix: export it at most 40 megapixels (e.g. 4000x4000)".format(bomb)]
    big = str(tmp_path / "big-16bit.png")
    grey = cv2.imread(real_xray, cv2.IMREAD_GRAYSCALE)
    assert cv2.imwrite(big, cv2.resize(grey, (6000, 6000)).astype(np.uint16) * 16)
    rc, out, err, big_mb = run_measured(["classify", big, "--bundle", chest])
    assert rc == 0 and big in out, err
    print("classify peak RSS: idle {:.0f} MB, bomb {:.0f} MB, 6000x6000 16-bit PNG {:.0f} MB".format(
        idle_mb, bomb_mb, big_mb))
    assert bomb_mb - idle_mb <= BOMB_BUDGET_MB
    assert big_mb - idle_mb <= BOMB_BUDGET_MB


def _kiosk_config(tmp_path):
    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\nmodels_dir = {}\nmodules = chest\nbackend = onnxruntime\nprecision = fp32\n"
                    "state_dir = {}\noutput = null://\n[display]\nwidth = 800\nheight = 480\n".format(
                        os.path.join(ROOT, "models"), tmp_path / "state"))
    return str(path)


def test_bomb_peak_memory_in_the_kiosk(tmp_path, bomb, real_xray):
    import shutil

    config = _kiosk_config(tmp_path)
    plain, stick = tmp_path / "plain", tmp_path / "stick"
    for folder in (plain, stick):
        folder.mkdir()
        shutil.copy(real_xray, str(folder / "xray.png"))
    shutil.copy(bomb, str(stick / "a-bomb.png"))  # first in name order: the first image the kiosk opens
    peaks = []
    for folder in (plain, stick):
        rc, _out, err, peak = run_measured(["run", "--config", config, "--source", str(folder) + "/",
                                            "--max-frames", "3", "--keys", "F,F,F"])
        assert rc == 0 and "Traceback" not in err, err
        peaks.append(peak)
    print("kiosk peak RSS: idle {:.0f} MB, with the bomb {:.0f} MB".format(*peaks))
    assert "skipped unreadable image: {}: image is too large to open safely".format(
        stick / "a-bomb.png") in err
    assert peaks[1] - peaks[0] <= BOMB_BUDGET_MB
