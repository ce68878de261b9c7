"""edge.dicom step by step, on real pydicom data sets built here with known answers: the window
functions at their edges, VOI LUT descriptors and data, the 8-bit and image-range fall-backs,
MONOCHROME1, rescale, signed and 10/12/16/32-bit pixels, RGB/YBR and planar colour, multi-frame,
data sets without file meta, and each refusal's message (the mutation run's survivors, issue 18)."""

import io

import numpy as np
import pytest

from edge import dicom
from edge.errors import ImageError
from edge.imageio import ImageLimits

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filewriter import write_dataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid  # noqa: E402

PYDICOM_3 = int(pydicom.__version__.split(".")[0]) >= 3
CR = "1.2.840.10008.5.1.4.1.1.1"
LIMITS = ImageLimits(max_file_mb=100, max_megapixels=40, max_side=2048)


def _ds(pixels, photometric="MONOCHROME2", bits_stored=None, syntax=ExplicitVRLittleEndian, **values):
    """A CR data set holding ``pixels`` (frames, rows, columns[, samples])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CR, generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset("x.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CR, meta.MediaStorageSOPInstanceUID, "CR"
    colour = photometric.upper() not in ("MONOCHROME1", "MONOCHROME2")
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(pixels.dtype.kind == "i")
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    if "PixelData" not in values:
        ds.PixelData = pixels.tobytes()
    return ds


def _bytes(ds):
    out = io.BytesIO()
    if PYDICOM_3:
        ds.save_as(out, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(out, write_like_original=False)
    return out.getvalue()


def _decode(ds, max_side=2048):
    return dicom.decode_dicom(_bytes(ds), LIMITS._replace(max_side=max_side), "x.dcm")


def _grey(ds, max_side=2048):
    loaded = _decode(ds, max_side)
    assert loaded.image.ndim == 3 and loaded.image.shape[2] == 3 and loaded.image.dtype == np.uint8
    assert (loaded.image[..., 0] == loaded.image[..., 2]).all()
    return loaded.image[..., 0]


def _ramp(low, high, dtype=np.uint16):
    return np.arange(low, high + 1).astype(dtype).reshape(1, -1)


def _lut(descriptor, data, vr="US"):
    item = Dataset()
    item.add_new(0x00283002, "US", descriptor)
    item.add_new(0x00283006, vr, data)
    return item


# --- windowing (PS3.3 C.11.2.1.2) ---

def test_linear_window_at_its_edges():
    values = np.array([94.5, 95.0, 100.0, 104.5, 105.0, 200.0], dtype=np.float32)
    # centre 100, width 11: 0 at c - 0.5 - (w - 1) / 2 = 94.5, 1 at 104.5
    got = dicom._window(values, 100.0, 11.0, "LINEAR")
    np.testing.assert_allclose(got, [0.0, 0.05, 0.55, 1.0, 1.0, 1.0], atol=1e-6)
    assert dicom._window(np.array([0.0], dtype=np.float32), 100.0, 11.0, "LINEAR")[0] == 0.0


def test_linear_window_narrower_than_one_is_a_threshold():
    values = np.array([9.0, 9.5, 9.75, 10.5], dtype=np.float32)
    # width < 1 counts as 1: a step at the centre - 0.5 (w - 1 = 0 -> 1e-6)
    np.testing.assert_allclose(dicom._window(values, 10.0, 0.5, "LINEAR"), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(dicom._window(values, 10.0, 1.0, "LINEAR"), [0.0, 0.5, 1.0, 1.0])
    # width 2: one grey level per unit
    np.testing.assert_allclose(dicom._window(values, 10.0, 2.0, "LINEAR"), [0.0, 0.5, 0.75, 1.0])


def test_linear_exact_window():
    values = np.array([80.0, 90.0, 95.0, 100.0, 105.0, 110.0, 130.0], dtype=np.float32)
    got = dicom._window(values, 100.0, 20.0, "LINEAR_EXACT")
    np.testing.assert_allclose(got, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-6)
    step = dicom._window(np.array([99.0, 100.0, 100.5], dtype=np.float32), 100.0, 0.0, "LINEAR_EXACT")
    np.testing.assert_allclose(step, [0.0, 0.5, 1.0])


def test_sigmoid_window():
    values = np.array([60.0, 100.0, 110.0, 140.0], dtype=np.float32)
    want = 1.0 / (1.0 + np.exp(-4.0 * (values - 100.0) / 40.0))
    np.testing.assert_allclose(dicom._window(values, 100.0, 40.0, "SIGMOID"), want, rtol=1e-6)
    np.testing.assert_allclose(dicom._window(values, 100.0, 40.0, "SIGMOID")[2], 1.0 / (1.0 + np.exp(-1.0)),
                               rtol=1e-6)
    zero = dicom._window(np.array([99.0, 100.0, 101.0], dtype=np.float32), 100.0, 0.0, "SIGMOID")
    np.testing.assert_allclose(zero, [0.0, 0.5, 1.0])


def test_min_max():
    np.testing.assert_allclose(dicom._min_max(np.array([2.0, 4.0, 6.0], dtype=np.float32)), [0.0, 0.5, 1.0])
    flat = dicom._min_max(np.array([7.0, 7.0], dtype=np.float32))
    assert flat.dtype == np.float32 and (flat == 0).all()


def test_first_of_multi_valued_or_single():
    assert dicom._first([40.0, 400.0]) == 40.0
    assert dicom._first(12) == 12.0 and isinstance(dicom._first(12), float)


def test_number_defaults():
    ds = Dataset()
    ds.Rows, ds.BitsStored = 5, None
    ds.add_new(0x00280008, "IS", "")  # NumberOfFrames empty
    assert dicom._number(ds, "Rows", 9) == 5
    assert dicom._number(ds, "Columns", 9) == 9
    assert dicom._number(ds, "BitsStored", 9) == 9
    assert dicom._number(ds, "NumberOfFrames", 3) == 3
    ds.Modality = "CR"
    assert dicom._number(ds, "Modality", 4) == 4


# --- grey_to_unit: VOI LUT, window, 8-bit, range ---

def test_window_is_taken_from_the_dataset_first_value_and_function():
    values = np.array([[90.0, 100.0, 110.0]], dtype=np.float32)
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = [100, 1000], [21, 5000]
    np.testing.assert_allclose(dicom.grey_to_unit(values, ds), [[0.025, 0.525, 1.0]], atol=1e-6)
    ds.VOILUTFunction = "LINEAR_EXACT"
    np.testing.assert_allclose(dicom.grey_to_unit(values, ds), [[0.02380952, 0.5, 0.97619045]], atol=1e-6)
    ds.VOILUTFunction = "SIGMOID"
    np.testing.assert_allclose(dicom.grey_to_unit(values, ds)[0, 1], 0.5)
    assert dicom.grey_to_unit(values, ds).dtype == np.float32


def test_lower_case_window_function_is_understood():
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = 100, 20
    ds.add_new(0x00281056, "CS", "linear_exact")
    np.testing.assert_allclose(dicom.grey_to_unit(np.array([105.0]), ds), [0.75])


def test_window_needs_both_centre_and_width():
    values = np.array([1000.0, 2000.0, 3000.0])
    ds = Dataset()
    ds.WindowCenter, ds.BitsStored = 100, 12
    np.testing.assert_allclose(dicom.grey_to_unit(values, ds), [0.0, 0.5, 1.0])  # the image's range
    ds = Dataset()
    ds.WindowWidth, ds.BitsStored = 100, 12
    np.testing.assert_allclose(dicom.grey_to_unit(values, ds), [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bits, low, high, want", [
    (8, 0, 255, "as is"), (8, 10, 200, "as is"), (8, 0, 256, "range"), (8, -1, 255, "range"),
    (9, 0, 255, "range"), (None, 10, 200, "range")])
def test_eight_bit_values_are_shown_as_they_are(bits, low, high, want):
    values = np.array([low, 100, high], dtype=np.int32)
    ds = Dataset()
    if bits:
        ds.BitsStored = bits
    got = dicom.grey_to_unit(values, ds)
    expect = values / 255.0 if want == "as is" else (values - low) / float(high - low)
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    assert got.dtype == np.float32


def test_voi_lut_maps_stored_values_through_its_table():
    # 4 entries from 10, 8 bits out: 10->0, 11->85, 12->170, 13->255; below and above clamp
    ds = Dataset()
    ds.VOILUTSequence = [_lut([4, 10, 8], [0, 85, 170, 255])]
    ds.WindowCenter, ds.WindowWidth = 0, 1  # the VOI LUT wins over the window
    got = dicom.grey_to_unit(np.array([0.0, 10.0, 11.0, 11.6, 13.0, 99.0]), ds)
    np.testing.assert_allclose(got, [0.0, 0.0, 85 / 255.0, 170 / 255.0, 1.0, 1.0], rtol=1e-6)


def test_empty_voi_lut_sequence_falls_back_to_the_window():
    ds = Dataset()
    ds.VOILUTSequence = []
    ds.WindowCenter, ds.WindowWidth = 100, 21
    np.testing.assert_allclose(dicom.grey_to_unit(np.array([100.0]), ds), [0.525])


def test_voi_lut_output_bits_from_the_descriptor():
    values = np.array([0.0, 1.0])
    item = _lut([2, 0, 12], [0, 4095])
    np.testing.assert_allclose(dicom._voi_lut_unit(values, item), [0.0, 1.0])
    item = _lut([2, 0, 16], [0, 65535])
    np.testing.assert_allclose(dicom._voi_lut_unit(values, item), [0.0, 1.0])
    item = _lut([2, 0, 1], [0, 1])
    np.testing.assert_allclose(dicom._voi_lut_unit(values, item), [0.0, 1.0])
    for odd in ([2, 0, 0], [2, 0, 17], [2, 0]):  # out of range or missing: 16 bits
        item = _lut(odd, [0, 65535])
        np.testing.assert_allclose(dicom._voi_lut_unit(values, item), [0.0, 1.0])


def test_voi_lut_of_zero_entries_means_65536():
    item = _lut([0, 0, 16], list(range(0, 65536)))
    got = dicom._voi_lut_unit(np.array([0.0, 65535.0, 70000.0]), item)
    np.testing.assert_allclose(got, [0.0, 1.0, 1.0])
    item = _lut([0, 0, 16], [7])
    np.testing.assert_allclose(dicom._voi_lut_unit(np.array([0.0, 3.0]), item), [7 / 65535.0] * 2)


def test_lut_data_as_words_bytes_and_one_value():
    words = np.array([1, 300, 65535], dtype="<u2").tobytes()
    np.testing.assert_array_equal(dicom._lut_data(_lut([3, 0, 16], words, "OW"), 3, 16), [1, 300, 65535])
    packed = bytes([5, 6, 7, 8])  # 8-bit entries packed two to a word
    np.testing.assert_array_equal(dicom._lut_data(_lut([4, 0, 8], packed, "OW"), 4, 8), [5, 6, 7, 8])
    # 8 bits out but as many words as entries: 16-bit words
    np.testing.assert_array_equal(dicom._lut_data(_lut([2, 0, 8], packed, "OW"), 2, 8), [5 + 6 * 256,
                                                                                          7 + 8 * 256])
    assert dicom._lut_data(_lut([4, 0, 12], packed, "OW"), 4, 12).tolist() == [5 + 6 * 256, 7 + 8 * 256]
    one = Dataset()
    one.LUTData = 9
    got = dicom._lut_data(one, 1, 16)
    assert got.dtype == np.float32 and got.tolist() == [9.0]
    got = dicom._lut_data(_lut([3, 0, 16], [1, 2, 3]), 3, 16)
    assert got.dtype == np.float32 and got.tolist() == [1.0, 2.0, 3.0]
    assert dicom._lut_data(_lut([4, 0, 8], packed, "OW"), 4, 8).dtype == np.float32


# --- whole files: the display pipeline ---

def test_monochrome2_window_pinned_per_pixel():
    ds = _ds(_ramp(0, 4095).reshape(64, 64), bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    grey = _grey(ds).ravel()
    want = np.rint(np.clip((np.arange(4096) - 2047.5) / 4095.0 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(grey, want)


def test_monochrome1_is_inverted():
    ds = _ds(_ramp(0, 255, np.uint8), "MONOCHROME1", bits_stored=8)
    np.testing.assert_array_equal(_grey(ds)[0], 255 - np.arange(256))


def test_rescale_slope_and_intercept_come_before_the_window():
    # stored s -> value 2 s - 1000; window centre 0 width 201 (LINEAR): value -100.5 -> 0, 99.5 -> 1
    stored = np.array([[400, 450, 500, 525, 550, 600]], dtype=np.uint16)
    ds = _ds(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=201)
    values = stored * 2.0 - 1000
    want = np.rint(np.clip((values + 0.5) / 200.0 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(_grey(ds), want)


def test_signed_pixels_with_a_window():
    stored = np.array([[-1000, -100, 0, 100, 1000]], dtype=np.int16)
    ds = _ds(stored, bits_stored=16, WindowCenter=0, WindowWidth=201)
    want = np.rint(np.clip((stored + 0.5) / 200.0 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(_grey(ds), want)


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_no_window_stretches_the_stored_range(bits):
    top = 2 ** bits - 1
    stored = np.array([[top // 4, top // 2, top]], dtype=np.uint16)
    grey = _grey(_ds(stored, bits_stored=bits))
    want = np.rint((stored - top // 4) / float(top - top // 4) * 255).astype(np.uint8)
    np.testing.assert_array_equal(grey, want)


def test_eight_bit_image_in_sixteen_bit_words_is_shown_as_is():
    ds = _ds(np.array([[10, 100, 200]], dtype=np.uint16), bits_stored=8)
    np.testing.assert_array_equal(_grey(ds), [[10, 100, 200]])


def test_thirty_two_bit_pixels_are_reduced_as_float():
    stored = np.tile(np.arange(0, 8, dtype=np.uint32) * 1000, (8, 1))
    grey = _grey(_ds(stored, bits_stored=32), max_side=4)
    assert grey.shape == (4, 4)
    want = np.rint((np.array([500, 2500, 4500, 6500]) - 500) / 6000.0 * 255).astype(np.uint8)
    np.testing.assert_array_equal(grey[0], want)


def test_large_image_is_reduced_to_max_side():
    stored = np.tile(np.repeat(np.arange(0, 256, 2, dtype=np.uint8), 2), (64, 1))
    grey = _grey(_ds(stored, bits_stored=8), max_side=128)
    assert grey.shape == (32, 128)
    np.testing.assert_array_equal(grey[0], np.arange(0, 256, 2))


def test_multi_frame_shows_the_first_frame_with_a_notice():
    frames = np.stack([_ramp(0, 255, np.uint8)[0:1], (255 - _ramp(0, 255, np.uint8))[0:1]])
    loaded = _decode(_ds(frames, bits_stored=8, NumberOfFrames=2))
    assert loaded.notes == ["multi-frame DICOM (2 frames): showing and classifying the first frame only"]
    np.testing.assert_array_equal(loaded.image[0, :, 0], np.arange(256))


def test_single_frame_has_no_notice():
    loaded = _decode(_ds(_ramp(0, 255, np.uint8), bits_stored=8, NumberOfFrames=1))
    assert loaded.notes == []
    assert _decode(_ds(_ramp(0, 255, np.uint8), bits_stored=8)).notes == []


# --- colour ---

RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 120, 40]]], dtype=np.uint8)


def test_rgb_becomes_bgr():
    loaded = _decode(_ds(RGB, "RGB", bits_stored=8))
    np.testing.assert_array_equal(loaded.image, RGB[..., ::-1])
    assert loaded.notes == []


def test_rgb_planar_configuration_one():
    planes = np.ascontiguousarray(RGB.transpose(2, 0, 1))
    ds = _ds(RGB, "RGB", bits_stored=8, PixelData=planes.tobytes())
    ds.PlanarConfiguration = 1
    np.testing.assert_array_equal(_decode(ds).image, RGB[..., ::-1])


def test_sixteen_bit_rgb_is_scaled_by_bits_stored():
    rgb12 = RGB.astype(np.uint16) * 16
    np.testing.assert_array_equal(_decode(_ds(rgb12, "RGB", bits_stored=12)).image, RGB[..., ::-1])
    ds = Dataset()  # BitsStored absent: the bits the highest value uses (12 here)
    np.testing.assert_array_equal(dicom._colour_to_bgr(rgb12.copy(), ds), RGB[..., ::-1])


def test_ybr_full_is_converted_to_bgr():
    ybr = _ybr_full(RGB).astype(np.uint8)
    got = _decode(_ds(ybr, "YBR_FULL", bits_stored=8)).image.astype(int)
    assert np.abs(got - RGB[..., ::-1].astype(int)).max() <= 2


def test_colour_photometric_missing_means_rgb():
    ds = Dataset()
    ds.BitsStored = 8
    np.testing.assert_array_equal(dicom._colour_to_bgr(RGB.copy(), ds), RGB[..., ::-1])


# --- header, transfer syntax, data sets without file meta ---

def test_header_defaults_and_frames():
    ds = _ds(_ramp(0, 9), bits_stored=12, NumberOfFrames=0)
    header = dicom.dicom_header(_bytes(ds), "x.dcm")
    assert tuple(header) == ("DICOM", 10, 1, 12, 1, 1)
    del ds.BitsStored, ds.SamplesPerPixel, ds.NumberOfFrames
    assert tuple(dicom.dicom_header(_bytes(ds), "x.dcm")) == ("DICOM", 10, 1, 8, 1, 1)
    ds.NumberOfFrames = 3
    assert dicom.dicom_header(_bytes(ds), "x.dcm").frames == 3


@pytest.mark.parametrize("missing", ["Rows", "Columns"])
def test_header_without_rows_or_columns_is_refused(missing):
    ds = _ds(_ramp(0, 9), bits_stored=12)
    delattr(ds, missing)
    with pytest.raises(ImageError) as caught:
        dicom.dicom_header(_bytes(ds), "report.dcm")
    assert str(caught.value) == ("report.dcm: DICOM file holds no image (no Rows/Columns: a report, a "
                                 "structured document, or not DICOM at all?)")


def _bare(ds, implicit):
    """The data set alone, no preamble and no file meta (older CR exports)."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


@pytest.mark.parametrize("implicit, syntax", [(True, ImplicitVRLittleEndian),
                                              (False, ExplicitVRLittleEndian)])
def test_data_set_without_file_meta_gets_the_syntax_it_was_read_in(implicit, syntax):
    ds = _ds(_ramp(0, 255, np.uint8), bits_stored=8)
    del ds.file_meta
    data = _bare(Dataset(ds), implicit)
    read = dicom._dataset(data, "old.dcm", stop_before_pixels=False)
    assert read.file_meta.TransferSyntaxUID == syntax
    assert dicom.transfer_syntax(read)[0] == syntax
    loaded = dicom.decode_dicom(data, LIMITS, "old.dcm")
    np.testing.assert_array_equal(loaded.image[0, :, 0], np.arange(256))


def test_file_meta_without_syntax_is_filled_in():
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.is_implicit_VR, ds.is_little_endian = False, True
    if PYDICOM_3:
        ds._read_implicit, ds._read_little = False, True
    dicom._record_syntax(ds)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_transfer_syntax_names():
    ds = Dataset()
    assert dicom.transfer_syntax(ds) == ("1.2.840.10008.1.2", "Implicit VR Little Endian")
    ds.file_meta = FileMetaDataset()
    assert dicom.transfer_syntax(ds) == ("1.2.840.10008.1.2", "Implicit VR Little Endian")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert dicom.transfer_syntax(ds) == ("1.2.840.10008.1.2.1", "Explicit VR Little Endian")


# --- refusals ---

def test_no_pixel_data_message():
    ds = _ds(_ramp(0, 9), bits_stored=12)
    del ds.PixelData
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(_bytes(ds), LIMITS, "empty.dcm")
    assert str(caught.value) == "empty.dcm: DICOM file has no pixel data"


def test_damaged_uncompressed_pixels_message():
    ds = _ds(np.zeros((64, 64), dtype=np.uint16), bits_stored=12)
    ds.PixelData = b"\0" * 100  # far fewer bytes than 64 x 64 x 2
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(_bytes(ds), LIMITS, "cut.dcm")
    text = str(caught.value)
    assert text.startswith("cut.dcm: DICOM pixel data is damaged (")
    assert text.endswith("). Fix: copy the file again")
    assert "\n" not in text and "cannot be decoded" not in text


def test_undecodable_syntax_message_names_it():
    ds = _ds(np.zeros((8, 8), dtype=np.uint16), bits_stored=12, syntax="1.2.840.10008.1.2.4.100")  # MPEG2
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\0\0\1\xb3" + b"\0" * 60])
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(_bytes(ds), LIMITS, "video.dcm")
    text = str(caught.value)
    assert text.startswith("video.dcm: DICOM transfer syntax '")
    assert "(1.2.840.10008.1.2.4.100) cannot be decoded on this unit (" in text
    assert text.endswith(". " + dicom.DECODE_FIX)
    assert "\n" not in text and "  " not in text.replace(dicom.DECODE_FIX, "")
    assert text.split("' (", 1)[0].endswith("MPEG2 Main Profile / Main Level")


def test_without_pydicom_the_message_names_the_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name == "pydicom":
            raise ImportError("No module named 'pydicom'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    with pytest.raises(ImageError) as caught:
        dicom._pydicom("a.dcm")
    assert str(caught.value) == ("a.dcm: DICOM needs pydicom, which is not installed (No module named "
                                 "'pydicom'). Fix: " + dicom.INSTALL_HINT)
    with pytest.raises(ImageError) as caught:
        dicom._pydicom()
    assert str(caught.value).startswith("image: DICOM needs pydicom")


def _ybr_full(rgb):
    r, g, b = [rgb[..., i].astype(float) for i in range(3)]  # PS3.3 C.7.6.3.1.2, written out here
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.rint(np.stack([y, (b - y) / 1.772 + 128, (r - y) / 1.402 + 128], -1)).clip(0, 255)


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_ybr_to_rgb_step(photometric):
    """The conversion pydicom 2.x needs (called directly: pydicom 3 converts before it is reached)."""
    got = dicom._ybr_to_rgb(_ybr_full(RGB).astype(np.uint8), photometric)
    assert got.dtype == np.uint8 and got.shape == RGB.shape
    assert np.abs(got.astype(int) - RGB.astype(int)).max() <= 2
    grey = np.array([[[100, 128, 128], [0, 128, 128], [255, 128, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(dicom._ybr_to_rgb(grey, photometric), [[[100] * 3, [0] * 3, [255] * 3]])


def test_ybr_to_rgb_other_depths_go_to_pydicom():
    try:
        from pydicom.pixels import convert_color_space
    except ImportError:
        from pydicom.pixel_data_handlers.util import convert_color_space
    ybr16 = _ybr_full(RGB).astype(np.uint16)
    try:
        want = convert_color_space(ybr16.copy(), "YBR_FULL", "RGB")
    except ValueError:  # pydicom 3 converts 8-bit only (and converts before edge.dicom sees the pixels)
        with pytest.raises(ValueError, match="uint16"):
            dicom._ybr_to_rgb(ybr16.copy(), "YBR_FULL")
        return
    got = dicom._ybr_to_rgb(ybr16.copy(), "YBR_FULL")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


# --- second round (survivors of the run with the tests above) ---

def test_pydicom_silences_only_its_own_warnings():
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dicom._pydicom()
        warnings.warn("not from pydicom", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["not from pydicom"]


@pytest.mark.parametrize("implicit, little, syntax", [(True, True, ImplicitVRLittleEndian),
                                                      (False, True, ExplicitVRLittleEndian),
                                                      (False, False, "1.2.840.10008.1.2.2")])
def test_record_syntax_without_file_meta(implicit, little, syntax):
    ds = Dataset()
    ds.is_implicit_VR, ds.is_little_endian = implicit, little
    dicom._record_syntax(ds)
    assert ds.file_meta.TransferSyntaxUID == syntax


def test_unreadable_file_message_quotes_pydicoms_error():
    data = b"\x08\x00\x05\x00XX\x10\x00abc"
    try:
        pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # the same error edge.dicom wraps
        want = ("bad.dcm: DICOM file cannot be read ({}: {}). Fix: copy it again or export it from the "
                "X-ray machine again".format(type(exc).__name__, str(exc)[:120]))
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(data, LIMITS, "bad.dcm")
    assert str(caught.value) == want


def test_damaged_pixels_message_quotes_the_decoder():
    ds = _ds(np.zeros((64, 64), dtype=np.uint16), bits_stored=12)
    ds.PixelData = b"\0" * 100
    data = _bytes(ds)
    try:
        detail = pydicom.dcmread(io.BytesIO(data), force=True).pixel_array
    except Exception as exc:
        detail = str(exc).splitlines()[0][:160]
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(data, LIMITS, "cut.dcm")
    assert str(caught.value) == "cut.dcm: DICOM pixel data is damaged ({}). Fix: copy the file again".format(
        detail)


def test_header_of_empty_rows_and_columns_and_of_colour():
    ds = _ds(_ramp(0, 9), bits_stored=12)
    ds.add_new(0x00280010, "US", None)
    ds.add_new(0x00280011, "US", None)
    header = dicom.dicom_header(_bytes(ds))
    assert (header.width, header.height) == (0, 0)
    assert dicom.dicom_header(_bytes(_ds(RGB, "RGB", bits_stored=8))).channels == 3
    del ds.Rows
    with pytest.raises(ImageError, match="^image: DICOM file holds no image"):
        dicom.dicom_header(_bytes(ds))


def test_voi_lut_of_65536_eight_bit_entries_packed_in_words():
    data = bytes(bytearray(range(256)) * 256)  # 65536 one-byte entries: entry i = i % 256
    item = _lut([0, 5, 8], data, "OW")
    got = dicom._voi_lut_unit(np.array([5.0, 6.0, 5.0 + 255]), item)
    np.testing.assert_allclose(got, [0.0, 1 / 255.0, 1.0])


def test_voi_lut_values_above_its_bits_are_clipped():
    ds = Dataset()
    ds.VOILUTSequence = [_lut([2, 0, 12], [0, 8190])]
    np.testing.assert_allclose(dicom.grey_to_unit(np.array([0.0, 1.0]), ds), [0.0, 1.0])


@pytest.mark.parametrize("bits, low, high, want", [(9, 10, 200, "range"), (8, 10, 255, "as is")])
def test_eight_bit_rule_at_its_edges(bits, low, high, want):
    test_eight_bit_values_are_shown_as_they_are(bits, low, high, want)


def test_colour_scaled_by_bits_stored_not_by_the_highest_value():
    rgb = np.array([[[1000, 0, 500]]], dtype=np.uint16)  # 10 bits used, 12 declared
    ds = Dataset()
    ds.BitsStored = 12
    np.testing.assert_array_equal(dicom._colour_to_bgr(rgb, ds), [[[500 >> 4, 0, 1000 >> 4]]])


def test_undecodable_syntax_message_quotes_the_decoder():
    ds = _ds(np.zeros((8, 8), dtype=np.uint16), bits_stored=12, syntax="1.2.840.10008.1.2.4.100")
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\0\0\1\xb3" + b"\0" * 60])
    data = _bytes(ds)
    try:
        detail = pydicom.dcmread(io.BytesIO(data), force=True).pixel_array
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
    with pytest.raises(ImageError) as caught:
        dicom.decode_dicom(data, LIMITS, "video.dcm")
    assert "cannot be decoded on this unit ({}). Fix:".format(detail) in str(caught.value)
