"""DICOM on real files: written with pydicom from real X-rays (MONOCHROME1/2, windowed or not, rescaled,
12-bit, VOI LUT, multi-frame, RLE and JPEG compressed), pydicom's own test files, limits, patient
identity; the same picture as PNG and as DICOM gives the same probabilities through models/chest."""

import os
import sys
import warnings

import cv2
import numpy as np
import pytest

from edge.errors import ImageError
from edge.imageio import ImageLimits, read_image
from edge.preprocess import is_image_file
from tests.edge.image_files import classify_json

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid  # noqa: E402

PYDICOM_3 = int(pydicom.__version__.split(".")[0]) >= 3
PATIENT = "DOE^JANE"
PATIENT_ID = "PID-7734-SECRET"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _dataset(pixels, photometric="MONOCHROME2", bits_stored=12, syntax=ExplicitVRLittleEndian, **values):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("x.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT, PATIENT_ID, "CR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    return ds


def _save(ds, path):
    if PYDICOM_3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


@pytest.fixture(scope="module")
def grey(real_xray):
    return cv2.imread(real_xray, cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory, grey):
    """The real X-ray as DICOM, every way an X-ray machine writes it: {name: path}."""
    folder = tmp_path_factory.mktemp("dicom")
    twelve = grey.astype(np.uint16) * 16  # 12-bit detector values
    window = {"WindowCenter": 2048, "WindowWidth": 4096}
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 8])  # LUT Descriptor: 4096 entries from 0, 8 bits out
    lut.add_new(0x00283006, "US", [value // 16 for value in range(4096)])  # LUT Data
    made = {
        "mono2-windowed": _dataset(twelve, **window),
        "mono2-no-window": _dataset(twelve),
        "mono1-windowed": _dataset((4095 - twelve).astype(np.uint16), "MONOCHROME1", **window),
        # stored = (value + 1024) / 2, undone by slope 2 and intercept -1024
        "rescaled": _dataset(((twelve.astype(np.int32) + 1024) // 2).astype(np.uint16), RescaleSlope=2,
                             RescaleIntercept=-1024, **window),
        "voi-lut": _dataset(twelve, VOILUTSequence=[lut]),
        "two-frames": _dataset(np.stack([twelve, 4095 - twelve]).astype(np.uint16), NumberOfFrames=2,
                               **window),
        "eight-bit": _dataset(grey, bits_stored=8),
    }
    paths = {name: _save(ds, str(folder / (name + ".dcm"))) for name, ds in made.items()}
    rle = _dataset(twelve, **window)
    rle.compress(RLELossless)
    paths["rle"] = _save(rle, str(folder / "rle.dcm"))
    ok, jpeg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    baseline = _dataset(grey, bits_stored=8, syntax=JPEG_BASELINE)
    baseline.PixelData = encapsulate([jpeg.tobytes()])
    paths["jpeg"] = _save(baseline, str(folder / "jpeg.dcm"))
    return paths


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name", ["mono2-windowed", "mono1-windowed", "rescaled", "voi-lut", "rle"])
def test_display_pipeline_gives_back_the_xray(dicoms, grey, name):
    loaded = read_image(dicoms[name])
    assert loaded.image.shape == grey.shape + (3,) and loaded.image.dtype == np.uint8
    assert loaded.notes == []
    # 12-bit values windowed to 8 bits: at most one grey level away from the original PNG.
    assert np.abs(loaded.image[:, :, 0].astype(int) - grey).max() <= 1, name


def test_no_window_stretches_the_image_range(dicoms, grey):
    image = read_image(dicoms["mono2-no-window"]).image[:, :, 0].astype(float)
    low, high = grey.min(), grey.max()
    expected = (grey.astype(float) - low) / (high - low) * 255.0
    assert image.min() == 0 and image.max() == 255
    assert np.abs(image - expected).max() <= 1.0


def test_multi_frame_shows_the_first_frame_with_a_notice(dicoms, grey):
    loaded = read_image(dicoms["two-frames"])
    assert np.abs(loaded.image[:, :, 0].astype(int) - grey).max() <= 1
    assert loaded.notes == ["multi-frame DICOM (2 frames): showing and classifying the first frame only"]


def test_jpeg_baseline_through_the_decoders_here(dicoms, grey):
    if _has("PIL") or _has("pylibjpeg") or _has("gdcm"):
        image = read_image(dicoms["jpeg"]).image[:, :, 0].astype(int)
        assert np.abs(image - grey).mean() < 2.0  # lossy JPEG at quality 95
    else:  # the Nano's Python 3.6 venv: no JPEG decoder for pydicom, one line naming the syntax
        with pytest.raises(ImageError, match=r"transfer syntax 'JPEG Baseline.*' \(1.2.840.10008.1.2.4.50\) "
                                             r"cannot be decoded on this unit .* Fix: export it"):
            read_image(dicoms["jpeg"])


def test_undecodable_transfer_syntax_is_one_line_naming_it():
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if _has("pylibjpeg") or _has("gdcm") or _has("jpeg_ls"):
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "\n" not in message and "transfer syntax 'JPEG-LS Lossless Image Compression' " \
        "(1.2.840.10008.1.2.4.80) cannot be decoded on this unit" in message


@pytest.mark.parametrize("name, frames", [("CT_small.dcm", 1), ("MR_small.dcm", 1), ("MR_small_RLE.dcm", 1),
                                          ("MR_small_bigendian.dcm", 1), ("SC_rgb_rle_2frame.dcm", 2),
                                          ("rtdose.dcm", 15), ("MR_small_implicit.dcm", 1)])
def test_pydicoms_own_files(name, frames):
    loaded = read_image(get_testdata_file(name))
    assert loaded.image.dtype == np.uint8 and loaded.image.ndim == 3 and loaded.image.shape[2] == 3
    assert loaded.image.max() > loaded.image.min()  # a picture, not a flat field
    assert (loaded.notes != []) == (frames > 1)


def test_not_an_image_and_damaged(tmp_path):
    with pytest.raises(ImageError, match="DICOM file holds no image"):
        read_image(get_testdata_file("test-SR.dcm"))
    with open(get_testdata_file("CT_small.dcm"), "rb") as handle:
        data = handle.read()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:len(data) - 5000])
    with pytest.raises(ImageError, match="cut.dcm: DICOM"):
        read_image(str(cut))


def test_pixel_limit_is_checked_on_rows_columns_and_frames(tmp_path, grey):
    huge = _dataset(grey[:4, :4].astype(np.uint16))
    huge.Rows = huge.Columns = 20000  # the header alone is refused: no pixel data is decoded
    with pytest.raises(ImageError, match=r"20000x20000 = 400 megapixels, limit 40"):
        read_image(_save(huge, str(tmp_path / "huge.dcm")))
    frames = _dataset(np.zeros((3, 100, 100), np.uint16), NumberOfFrames=3)
    path = _save(frames, str(tmp_path / "frames.dcm"))
    with pytest.raises(ImageError, match=r"100x100 x 3 frames = 0 megapixels, limit 0.029"):
        read_image(path, ImageLimits(100, 0.029, 2048))
    assert read_image(path, ImageLimits(100, 0.03, 2048)).notes


def test_dcm_files_are_images():
    assert is_image_file("scan.DCM") and is_image_file("a/b.dicom")


@pytest.mark.onnxruntime
def test_same_picture_as_png_and_dicom_same_probabilities(dicoms, real_xray):
    names = ["mono2-windowed", "mono2-no-window", "mono1-windowed", "rescaled", "voi-lut", "rle",
             "two-frames", "eight-bit"]
    results, err = classify_json([real_xray] + [dicoms[name] for name in names])
    assert PATIENT.split("^")[0] not in err and PATIENT_ID not in err
    assert "medkiosk: note: {}: multi-frame DICOM (2 frames): showing and classifying the first frame " \
        "only".format(dicoms["two-frames"]) in err.splitlines()
    reference = results[real_xray]
    for name in names:
        probabilities = results[dicoms[name]]
        assert isinstance(probabilities, dict), (name, probabilities)
        for finding, probability in reference.items():
            assert abs(probabilities[finding] - probability) <= 0.02, (name, finding)


def test_patient_identity_is_never_shown(dicoms, capsys):
    from edge.sources.files import ImageFolderSource

    folder = os.path.dirname(dicoms["mono2-windowed"])
    with ImageFolderSource(folder) as source:
        ok, frame, _stamp = source.read()
        shown = [source.describe(), source.notice or ""]
        while source.next_image() not in (None, source._files[0]):
            shown += [source.describe(), source.notice or ""]
            if source.current_path == dicoms["two-frames"]:
                assert source.notice.startswith("multi-frame DICOM (2 frames)")
    captured = capsys.readouterr()
    text = " ".join(shown) + captured.out + captured.err
    assert ok and frame is not None
    assert "DOE" not in text and PATIENT_ID not in text


def test_without_pydicom_a_dicom_is_one_unreadable_file(monkeypatch, dicoms):
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as on a unit installed without it
    with pytest.raises(ImageError, match=r"eight-bit.dcm: DICOM needs pydicom, which is not installed .* "
                                         r"Fix: pip install 'pydicom==2.3.1' on Python 3.6"):
        read_image(dicoms["eight-bit"])


def test_jpeg_2000_through_the_decoders_here():
    path = get_testdata_file("JPEG2000.dcm")
    try:
        from PIL import features

        pillow_j2k = features.check("jpg_2000")
    except ImportError:
        pillow_j2k = False
    if pillow_j2k or _has("pylibjpeg") or _has("gdcm"):
        image = read_image(path).image
        assert image.dtype == np.uint8 and image.max() > image.min()
    else:
        with pytest.raises(ImageError, match=r"transfer syntax 'JPEG 2000 Image Compression' "
                                             r"\(1.2.840.10008.1.2.4.91\) cannot be decoded on this unit"):
            read_image(path)


def test_dicom_without_preamble_is_read_by_its_extension(tmp_path, grey):
    ds = _dataset(grey, bits_stored=8)
    path = str(tmp_path / "raw.dcm")
    if PYDICOM_3:
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    else:
        ds.preamble, ds.is_little_endian, ds.is_implicit_VR = None, True, True
        ds.file_meta = FileMetaDataset()
        ds.save_as(path, write_like_original=True)
    with open(path, "rb") as handle:
        assert handle.read(132)[128:132] != b"DICM"
    assert np.array_equal(read_image(path).image[:, :, 0], grey)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x08\x00\x05\x00" + b"not dicom\nmedkiosk: forged" * 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="garbage.dcm: DICOM file"):
            read_image(str(garbage))
    # pydicom's warnings quote the file's bytes: silenced, so they cannot reach the journal
    assert [str(w.message) for w in caught if "pydicom" in w.filename] == []
    other = tmp_path / "garbage.png"
    other.write_bytes(garbage.read_bytes())
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(str(other))
