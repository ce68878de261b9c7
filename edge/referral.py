"""A case's printable referral sheet (PDF, A4, fpdf2): for the doctor the patient is sent to.

One code path for the kiosk (each case exported to the USB stick gets its sheet, ``edge.usb_export``)
and the LAN service (``GET /api/v1/cases/<id>/referral.pdf``). The sheet holds the saved image, what
the model analysed (the located crop the kiosk saved, or the image at the model's input size), the
heatmap when the bundle gives one, the top-3 as the screen showed it (or the screen's banner when no
result was shown), the date and time, the module and model version, the short case number and its
unique id, the patient reference typed on the kiosk (or a line to write it by hand), and the
decision-support notice.

The sheet is written in English whatever the worker's screen language: it is read by the receiving
clinician, and fpdf2 2.4.6 (the last for Python 3.6) has no text shaping, so Devanagari or Bengali
would print with broken conjuncts. Core PDF fonts are Latin-1: text is folded to ASCII. Values that
a result stores already translated (the image-quality message, the likelihood word) are rebuilt in
English from the result's data.
"""

import base64
import io

from edge import overlay
from edge.classify import LIKELIHOOD_WORDS
from edge.lazy import require
from edge.quality import QUALITY_ADVICE

FPDF_HINT = "pip install 'medkiosk[serve]' (fpdf2)"
TITLE = "medkiosk - referral sheet"
NO_RESULT = "No result shown for this image"
IMAGE_W, SMALL_W, GAP = 80.0, 50.0, 5.0
# Pixels kept of an image on the sheet (longer side): 800 px over 80 mm is 250 dpi, more than a
# printer needs; the full image is in the export's images/ folder.
SHEET_MAX_SIDE = 800


def _ascii(text):
    return overlay.ascii_text(str(text if text is not None else ""))


def _png(image_bgr):
    cv2 = require("cv2")
    height, width = image_bgr.shape[:2]
    scale = float(SHEET_MAX_SIDE) / max(height, width)
    if scale < 1.0:
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError("image could not be encoded")
    return io.BytesIO(data.tobytes())


def analysed_for(result, image_bgr, input_spec=None):
    """What the model analysed: the located crop saved with the result (its thumbnail), else the image
    at the model's input size when ``input_spec`` is known, else None (not shown)."""
    encoded = ((result or {}).get("localisation") or {}).get("thumbnail_png_base64")
    if encoded:
        np = require("numpy")
        data = np.frombuffer(base64.b64decode(encoded), dtype=np.uint8)
        crop = require("cv2").imdecode(data, 1)
        if crop is not None:
            return crop
    if input_spec is not None:
        from edge.preprocess import resize_to_input

        return resize_to_input(image_bgr, input_spec)
    return None


def record_fields(record):
    """The sheet's header fields from an ``edge.caselog.CaseRecord``."""
    return {"id": record.uid, "number": record.number, "created_utc": record.created_utc,
            "module": record.module, "bundle_id": record.bundle_id, "bundle_version": record.bundle_version,
            "patient_ref": record.patient_ref}


def _quality_message(quality):
    """The screen's image-quality banner, in English (``edge.quality.Quality.message``)."""
    names = [problem[0] for problem in quality.get("problems") or [] if problem[0] in QUALITY_ADVICE]
    if not names:
        return quality.get("message")
    return "Image quality: {} - {}".format(", ".join(names), "; ".join(QUALITY_ADVICE[n] for n in names))


def _english_word(probability):
    """The likelihood word the screen shows for ``probability`` (``edge.classify.LIKELIHOOD_WORDS``)."""
    return next(word for low, word in LIKELIHOOD_WORDS if probability >= low or low == 0.0)


def _findings(pdf, result):
    """The top-3 rows as the screen shows them, or the banner that replaced them."""
    state = result.get("state", "ok")
    if state in ("quality", "out_of_scope"):
        banner = (result.get("out_of_scope_message") if state == "out_of_scope"
                  else _quality_message(result.get("quality") or {})) or NO_RESULT
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _ascii(banner), ln=1)
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 7, NO_RESULT, ln=1)
        return
    if state == "uncertain":
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _ascii(overlay.UNCERTAIN_TEXT), ln=1)
    pdf.set_font("Helvetica", "", 12)
    for rank, item in enumerate(result.get("top3") or [], 1):
        pdf.cell(120, 8, "{}. {}".format(rank, _ascii(item["name"])))
        words = result.get("display") == "words"  # as the screen shows it
        value = _english_word(item["probability"]) if words else overlay.format_percent(item["probability"])
        pdf.cell(0, 8, value, ln=1, align="R")


def _header(pdf, case, result):
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, TITLE, ln=1)
    pdf.set_font("Helvetica", "B", 12)
    pdf.set_text_color(160, 110, 0)
    pdf.cell(0, 8, _ascii(overlay.DISCLAIMER), ln=1)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 11)
    version = case.get("bundle_id")
    if case.get("bundle_version") and case["bundle_version"] not in str(version):
        version = "{} (version {})".format(version, case["bundle_version"])
    rows = (("Case number", case.get("number") or case["id"]), ("Case id", case["id"]),
            ("Patient reference", case.get("patient_ref") or "_" * 30),
            ("Date and time (UTC)", case["created_utc"]),
            ("Module", "{} ({})".format(result.get("module_title") or case["module"], case["module"])),
            ("Model version", version))
    for label, value in rows:
        pdf.cell(50, 7, _ascii(label) + ":")
        pdf.cell(0, 7, _ascii(value), ln=1)
    pdf.ln(3)


def _small_image(pdf, image, x, top, caption):
    pdf.image(_png(image), x=x, y=top, w=SMALL_W)
    pdf.set_xy(x, top + SMALL_W * image.shape[0] / image.shape[1] + 1)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(SMALL_W, 4, caption, align="L")


def _images(pdf, image_bgr, analysed_bgr, heatmap_bgr):
    """The saved image, what the model analysed and the heatmap side by side; returns the bottom."""
    top = pdf.get_y()
    pdf.image(_png(image_bgr), x=pdf.l_margin, y=top, w=IMAGE_W)
    bottom = top + IMAGE_W * image_bgr.shape[0] / image_bgr.shape[1]
    x = pdf.l_margin + IMAGE_W + GAP
    if analysed_bgr is not None:
        height, width = analysed_bgr.shape[:2]
        _small_image(pdf, analysed_bgr, x, top, "What the model analysed ({}x{})".format(width, height))
        bottom = max(bottom, pdf.get_y())
        x += SMALL_W + GAP
    if heatmap_bgr is not None:
        _small_image(pdf, heatmap_bgr, x, top, "Heatmap: where the model looked")
        bottom = max(bottom, pdf.get_y())
    return bottom


def referral_pdf(case, result, image_bgr, analysed_bgr=None, heatmap_bgr=None):
    """PDF bytes for one case. ``case``: id (unique id), created_utc, module, bundle_id and optionally
    number (K-0042), bundle_version, patient_ref (``record_fields`` makes it from a case record);
    ``result``: its saved result dict; images BGR (``analysed_bgr``/``heatmap_bgr`` optional)."""
    fpdf = require("fpdf", FPDF_HINT)
    pdf = fpdf.FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    _header(pdf, case, result)
    bottom = _images(pdf, image_bgr, analysed_bgr, heatmap_bgr)
    pdf.set_xy(pdf.l_margin, bottom + 5)
    pdf.set_font("Helvetica", "B", 13)
    subtitle = "Most likely findings"
    if result.get("task") == "multilabel":
        subtitle = "Findings - each scored on its own"
    pdf.cell(0, 9, subtitle, ln=1)
    _findings(pdf, result)
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 12)
    pdf.multi_cell(0, 7, _ascii(overlay.DISCLAIMER) + ". A clinician decides; this sheet supports the "
                   "referral.", ln=1)
    return bytes(pdf.output())


def referral_for_record(record, image_bgr, input_spec=None, heatmap_bgr=None):
    """PDF bytes of a saved case's sheet (``record``: CaseRecord; ``image_bgr``: its verified image)."""
    analysed = analysed_for(record.result, image_bgr, input_spec)
    return referral_pdf(record_fields(record), record.result, image_bgr, analysed, heatmap_bgr)
