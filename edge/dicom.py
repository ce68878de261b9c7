"""DICOM (``.dcm``) from CR/DR X-ray machines -> the 8-bit BGR image the models take.

pydicom reads the file (2.3.1 on the Nano's Python 3.6, 3.0.x on Python 3.10+; see pyproject's
``edge`` extra). The display pipeline of DICOM PS3.14, reduced to what a chest X-ray needs:

1. Modality LUT: Rescale Slope/Intercept (or a Modality LUT Sequence).
2. VOI: the first VOI LUT of the VOI LUT Sequence, else the first Window Center/Width (LINEAR,
   LINEAR_EXACT or SIGMOID), else 8-bit values as they are, else the image's own range (minimum to
   maximum), to 0-255.
3. MONOCHROME1 (white = low values) is inverted so bone is white, as in MONOCHROME2.
4. Multi-frame: the first frame is shown, with a notice; all frames are counted against the pixel
   limit before anything is decoded.

Compressed transfer syntaxes are decoded by what pydicom finds installed: RLE always (numpy),
JPEG baseline / JPEG 2000 through Pillow, JPEG lossless / JPEG-LS through pylibjpeg or GDCM. A
syntax no installed decoder handles is refused with one line naming it.

Patient identity (PatientName, PatientID, birth date...) is never read into anything medkiosk shows,
prints or stores: an image is named by its file name only.
"""

import io
import warnings

from edge.errors import ImageError
from edge.lazy import require
from edge.pixels import ImageHeader, LoadedImage, fit_side, to_8bit, to_bgr

INSTALL_HINT = ("pip install 'pydicom==2.3.1' on Python 3.6 (JetPack 4.6), 'pydicom==3.0.2' on Python "
                "3.10+ (or pip install 'medkiosk[edge]')")
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
DECODE_FIX = ("Fix: export it from the X-ray machine uncompressed (Explicit VR Little Endian) or as PNG, "
              "or install a decoder for it (pylibjpeg with pylibjpeg-libjpeg/-openjpeg, or GDCM)")


def _pydicom(name="image"):
    """pydicom, or ImageError for this file (the kiosk skips it; other images still work)."""
    try:
        import pydicom
    except ImportError as exc:
        raise ImageError("{}: DICOM needs pydicom, which is not installed ({}). Fix: {}".format(
            name, exc, INSTALL_HINT)) from exc
    # pydicom warns with text taken from the file (e.g. its character set): a crafted file could write
    # lines into the journal. medkiosk reports each problem itself, on one line.
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    return pydicom


def _dataset(data, name, stop_before_pixels):
    pydicom = _pydicom(name)
    try:
        # force: a data set without the 128-byte preamble and "DICM" (older CR exports) is read too.
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels, force=True)
    except Exception as exc:  # pydicom raises many kinds on a damaged file; all mean "cannot read"
        raise ImageError("{}: DICOM file cannot be read ({}: {}). Fix: copy it again or export it from "
                         "the X-ray machine again".format(name, type(exc).__name__, str(exc)[:120])) from exc
    _record_syntax(dataset)
    return dataset


def _record_syntax(dataset):
    """A data set read without file meta: its transfer syntax is the encoding pydicom found."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(dataset, "original_encoding", None)  # pydicom 3: (implicit VR, little endian)
    if not encoding or encoding[0] is None:
        encoding = (dataset.is_implicit_VR, dataset.is_little_endian)
    implicit, little = encoding
    if meta is None:
        dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (
        ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _number(dataset, keyword, default):
    value = dataset.get(keyword, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def dicom_header(data, name="image"):
    """edge.imageio.ImageHeader from the DICOM header only (pixel data is not read)."""

    dataset = _dataset(data, name, stop_before_pixels=True)
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageError("{}: DICOM file holds no image (no Rows/Columns: a report, a structured "
                         "document, or not DICOM at all?)".format(name))
    return ImageHeader("DICOM", _number(dataset, "Columns", 0), _number(dataset, "Rows", 0),
                       _number(dataset, "BitsStored", 8), _number(dataset, "SamplesPerPixel", 1),
                       max(1, _number(dataset, "NumberOfFrames", 1)))


def transfer_syntax(dataset):
    """(uid, readable name) of the dataset's transfer syntax."""
    meta = getattr(dataset, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return "1.2.840.10008.1.2", "Implicit VR Little Endian"
    return str(uid), getattr(uid, "name", str(uid))


def _pixels(dataset, name):
    uid, syntax = transfer_syntax(dataset)
    if "PixelData" not in dataset:
        raise ImageError("{}: DICOM file has no pixel data".format(name))
    try:
        return dataset.pixel_array
    except Exception as exc:  # each pydicom decoder fails its own way; all mean "no decoder here"
        if uid in UNCOMPRESSED:
            raise ImageError("{}: DICOM pixel data is damaged ({}). Fix: copy the file again".format(
                name, str(exc).splitlines()[0][:160])) from exc
        raise ImageError("{}: DICOM transfer syntax '{}' ({}) cannot be decoded on this unit ({}). {}".format(
            name, syntax, uid, " ".join(str(exc).split())[:200], DECODE_FIX)) from exc


def _modality_lut():
    """pydicom's apply_modality_lut (moved to pydicom.pixels in 3.0)."""
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return apply_modality_lut


def _first(value):
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window(values, centre, width, function):
    """DICOM PS3.3 C.11.2.1.2 windowing to 0..1 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    np = require("numpy")
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        return np.clip((values - centre) / max(width, 1e-6) + 0.5, 0.0, 1.0)
    width = max(width, 1.0)
    return np.clip((values - (centre - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)


def _min_max(values):
    np = require("numpy")
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _lut_data(item, entries, bits):
    np = require("numpy")
    data = item.LUTData
    if isinstance(data, bytes):  # OW: 16-bit words, or 8-bit entries packed two to a word
        dtype = np.uint8 if bits == 8 and len(data) == entries else np.dtype("<u2")
        return np.frombuffer(data, dtype=dtype).astype(np.float32)
    return np.asarray(list(data) if not isinstance(data, int) else [data], dtype=np.float32)


def _voi_lut_unit(values, item):
    """The first VOI LUT (PS3.3 C.11.2.1.1): stored values -> LUT entries, as 0..1 by its output bits."""
    np = require("numpy")
    descriptor = [int(x) for x in item.LUTDescriptor]
    entries, first = descriptor[0] or 65536, descriptor[1]
    bits = descriptor[2] if len(descriptor) > 2 and 1 <= descriptor[2] <= 16 else 16
    table = _lut_data(item, entries, bits)
    index = np.clip(np.rint(values) - first, 0, len(table) - 1).astype(np.intp)
    return table[index] / float(2 ** bits - 1)


def grey_to_unit(values, dataset):
    """Modality-transformed grey values -> 0..1 by the VOI LUT, the window, or the image's range."""
    np = require("numpy")
    if "VOILUTSequence" in dataset and len(dataset.VOILUTSequence):
        return np.clip(_voi_lut_unit(values, dataset.VOILUTSequence[0]), 0.0, 1.0)
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return _window(values.astype(np.float32), _first(dataset.WindowCenter),
                       _first(dataset.WindowWidth), function)
    if _number(dataset, "BitsStored", 16) <= 8 and values.min() >= 0 and values.max() <= 255:
        return values.astype(np.float32) / 255.0  # display-ready 8-bit data (a secondary capture)
    return _min_max(values.astype(np.float32))


def _ybr_to_rgb(frame, photometric):
    """pydicom 2.x leaves YBR unconverted. YBR_FULL(_422) 8-bit through OpenCV: pydicom 2.3's own
    conversion multiplies in place (``np.matmul(arr, m, out=arr)``), which numpy < 1.16 (JetPack 4.6's
    1.13) turns into an all-black image. The same full-range BT.601 matrix; OpenCV's order is Y, Cr, Cb."""
    np = require("numpy")
    cv2 = require("cv2")
    if photometric in ("YBR_FULL", "YBR_FULL_422") and frame.dtype == np.uint8:
        return cv2.cvtColor(np.ascontiguousarray(frame[..., [0, 2, 1]]), cv2.COLOR_YCrCb2RGB)
    from pydicom.pixel_data_handlers.util import convert_color_space

    return convert_color_space(frame, photometric, "RGB")


def _colour_to_bgr(frame, dataset):
    """Colour pixels (RGB, or YBR left unconverted by pydicom 2.x) -> BGR uint8."""

    np = require("numpy")
    cv2 = require("cv2")
    photometric = str(dataset.get("PhotometricInterpretation", "RGB"))
    if photometric.startswith("YBR") and int(_pydicom().__version__.split(".")[0]) < 3:
        frame = _ybr_to_rgb(frame, photometric)
    frame = to_8bit(frame.astype(np.uint16), _number(dataset, "BitsStored", 8)) \
        if frame.dtype != np.uint8 else frame
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def decode_dicom(data, limits, name):
    """DICOM bytes -> edge.imageio.LoadedImage (8-bit BGR, at most limits.max_side)."""

    np = require("numpy")
    dataset = _dataset(data, name, stop_before_pixels=False)
    pixels = _pixels(dataset, name)
    frames = max(1, _number(dataset, "NumberOfFrames", 1))
    samples = _number(dataset, "SamplesPerPixel", 1)
    notes = []
    if frames > 1:
        pixels = pixels[0]
        notes.append("multi-frame DICOM ({} frames): showing and classifying the first frame only".format(
            frames))
    del data
    if samples == 3:
        return LoadedImage(fit_side(_colour_to_bgr(pixels, dataset), limits.max_side), notes)
    modality = _modality_lut()
    # Reduced first (area average of the stored values), so the float work below stays display-sized.
    if pixels.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        pixels = pixels.astype(np.float32)
    values = modality(fit_side(pixels, limits.max_side), dataset)
    unit = grey_to_unit(values, dataset)
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        unit = 1.0 - unit
    grey = np.rint(unit * 255.0).astype(np.uint8)
    return LoadedImage(to_bgr(fit_side(grey, limits.max_side)), notes)
