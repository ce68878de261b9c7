"""A case's printable referral sheet (PDF, A4, fpdf2): for the doctor the patient is sent to.

It holds the saved image and what the model analysed (the image at the model's input size), the
top-3 as the screen showed it (or the screen's banner when no result was shown), the date and time,
the module and model version, the case number, a line for the patient reference to be written by
hand, and the decision-support notice. Built from the case log alone, so the kiosk screen can
print the same sheet. Core PDF fonts are Latin-1: text is folded to ASCII as on the screen.
"""

import io

from edge import overlay
from edge.lazy import require

FPDF_HINT = "pip install 'medkiosk[serve]' (fpdf2)"
TITLE = "medkiosk - referral sheet"


def _ascii(text):
    return overlay.ascii_text(str(text if text is not None else ""))


def _png(image_bgr):
    ok, data = require("cv2").imencode(".png", image_bgr)
    if not ok:
        raise ValueError("image could not be encoded")
    return io.BytesIO(data.tobytes())


def _findings(pdf, result):
    """The top-3 rows as the screen shows them, or the banner that replaced them."""
    state = result.get("state", "ok")
    if state in ("quality", "out_of_scope"):
        banner = (result.get("out_of_scope_message") if state == "out_of_scope"
                  else (result.get("quality") or {}).get("message")) or "No result shown for this image"
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _ascii(banner), ln=1)
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 7, "No result shown for this image", ln=1)
        return
    if state == "uncertain":
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _ascii(overlay.UNCERTAIN_TEXT), ln=1)
    pdf.set_font("Helvetica", "", 12)
    for rank, item in enumerate(result.get("top3") or [], 1):
        pdf.cell(120, 8, "{}. {}".format(rank, _ascii(item["name"])))
        words = result.get("display") == "words" and item.get("word")  # as the screen shows it
        pdf.cell(0, 8, words or overlay.format_percent(item["probability"]), ln=1, align="R")


def referral_pdf(case, result, image_bgr, analysed_bgr=None):
    """PDF bytes for one case (``case``: the API's case summary; ``result``: its saved result dict)."""
    fpdf = require("fpdf", FPDF_HINT)
    pdf = fpdf.FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, TITLE, ln=1)
    pdf.set_font("Helvetica", "B", 12)
    pdf.set_text_color(160, 110, 0)
    pdf.cell(0, 8, _ascii(overlay.DISCLAIMER), ln=1)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 11)
    rows = (("Case number", case["id"]), ("Date and time (UTC)", case["created_utc"]),
            ("Module", "{} ({})".format(result.get("module_title") or case["module"], case["module"])),
            ("Model version", case.get("bundle_id")), ("Patient reference", "_" * 30))
    for label, value in rows:
        pdf.cell(50, 7, label + ":")
        pdf.cell(0, 7, _ascii(value), ln=1)
    pdf.ln(3)
    top = pdf.get_y()
    pdf.image(_png(image_bgr), x=pdf.l_margin, y=top, w=85)
    if analysed_bgr is not None:
        pdf.image(_png(analysed_bgr), x=pdf.l_margin + 95, y=top, w=60)
        pdf.set_xy(pdf.l_margin + 95, top + 62)
        pdf.set_font("Helvetica", "", 9)
        height, width = analysed_bgr.shape[:2]
        pdf.cell(60, 5, "What the model analysed ({}x{})".format(width, height))
    image_height = 85.0 * image_bgr.shape[0] / image_bgr.shape[1]
    pdf.set_xy(pdf.l_margin, top + max(image_height, 70) + 5)
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
