"""edge.referral: the referral sheet made from a real saved case (a real X-ray in a real case log),
read back with pdftotext and rendered with pdftoppm (poppler-utils)."""

import base64
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from edge.caselog import CaseLog
from edge.referral import SHEET_MAX_SIDE, analysed_for, record_fields, referral_for_record, referral_pdf

pytest.importorskip("fpdf")
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                                   reason="pdftotext/pdftoppm not installed (apt-get install poppler-utils)")

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.8134},
                   {"name": "Cardiomegaly", "probability": 0.1},
                   {"name": "No finding", "probability": 0.05}],
          "probabilities": {"effusion": 0.8134}, "uncertain": False, "out_of_scope": False,
          "quality": {"ok": True}, "state": "ok", "module_title": "Chest X-ray (adult)", "task": "multiclass"}


class InputSpec(object):
    """The two fields resize_to_input reads of a bundle's input description."""

    def __init__(self, width, height):
        self.width, self.height, self.resize = width, height, "area"


def pdf_text(tmp_path, pdf, name="sheet"):
    path = str(tmp_path / (name + ".pdf"))
    with open(path, "wb") as handle:
        handle.write(pdf)
    text = subprocess.check_output(["pdftotext", "-layout", path, "-"]).decode("utf-8")
    subprocess.check_call(["pdftoppm", "-png", "-r", "40", "-singlefile", path, path[:-4]])
    page = cv2.imread(path[:-4] + ".png")
    return text, page


def saved_case(tmp_path, image, result=RESULT, reference=None):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        return log.save(image, result, "chest", bundle_id="chest@1.2.0+abc123", bundle_version="1.2.0",
                        created="2026-12-03T09:15:00+00:00", patient_ref=reference)


@needs_poppler
def test_sheet_of_a_saved_case_holds_everything_the_doctor_needs(tmp_path, real_xray):
    image = cv2.imread(real_xray)
    case = saved_case(tmp_path, image, reference="opd4521")
    heatmap = cv2.applyColorMap(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLORMAP_JET)
    text, page = pdf_text(tmp_path, referral_for_record(case, image, InputSpec(224, 224), heatmap))
    assert "Case number: K-0001" in re.sub(r"\s+", " ", text) and case.uid in text
    assert re.search(r"Patient reference:\s+OPD4521", text)  # stored upper case, printed as stored
    assert "2026-12-03T09:15:00+00:00" in text
    assert re.search(r"Module:\s+Chest X-ray \(adult\) \(chest\)", text)
    assert "chest@1.2.0+abc123" in text
    for rank, name, percent in ((1, "Pleural effusion", "81%"), (2, "Cardiomegaly", "10%"),
                                (3, "No finding", "5%")):
        assert re.search(r"{}\.\s+{}\s+{}".format(rank, name, percent), text), text
    assert text.count("Decision support only - not a diagnosis") == 2  # top and bottom
    assert "What the model analysed (224x224)" in text and "Heatmap: where the model looked" in text
    # Rendered: an A4 page at 40 dpi with the X-ray, the crop and the coloured heatmap on it.
    assert page.shape[:2] == (468, 331)
    colourful = np.abs(page[:, :, 2].astype(int) - page[:, :, 0].astype(int)) > 80
    assert colourful.sum() > 500  # the heatmap (a grey X-ray has no such pixels)


@needs_poppler
def test_without_a_reference_a_line_is_left_to_write_it_by_hand(tmp_path, real_xray):
    image = cv2.imread(real_xray)
    case = saved_case(tmp_path, image)
    text, _page = pdf_text(tmp_path, referral_for_record(case, image))
    assert re.search(r"Patient reference:\s+_{30}", text)
    assert "What the model analysed" not in text and "Heatmap" not in text  # nothing known: not shown


@needs_poppler
def test_the_saved_crop_is_what_the_model_analysed(tmp_path, real_xray):
    image = cv2.imread(real_xray)
    crop = cv2.resize(image[40:200, 30:220], (120, 100))
    ok, png = cv2.imencode(".png", crop)
    result = dict(RESULT, localisation={"method": "lightbox",
                                        "thumbnail_png_base64": base64.b64encode(png.tobytes()).decode()})
    case = saved_case(tmp_path, image, result)
    analysed = analysed_for(case.result, image, InputSpec(224, 224))
    assert analysed.shape == (100, 120, 3) and np.array_equal(analysed, crop)  # the crop, not a resize
    text, _page = pdf_text(tmp_path, referral_for_record(case, image, InputSpec(224, 224)))
    assert "What the model analysed (120x100)" in text
    assert analysed_for(RESULT, image, InputSpec(64, 32)).shape == (32, 64, 3)
    assert analysed_for(RESULT, image) is None


@needs_poppler
def test_a_banner_replaces_the_findings_when_no_result_was_shown(tmp_path, real_xray):
    image = cv2.imread(real_xray)
    result = dict(RESULT, state="quality", quality={"ok": False, "message": "Too dark - retake the image"})
    fields = record_fields(saved_case(tmp_path, image, result))
    text, _page = pdf_text(tmp_path, referral_pdf(fields, result, image))
    assert "Too dark - retake the image" in text and "No result shown for this image" in text
    assert "Pleural effusion" not in text
    uncertain = dict(RESULT, state="uncertain", task="multilabel")
    text, _page = pdf_text(tmp_path, referral_pdf(fields, uncertain, image), "uncertain")
    assert "Uncertain - retake the image or refer" in text and "Findings - each scored on its own" in text
    assert os.path.getsize(str(tmp_path / "uncertain.png")) > 1000


@needs_poppler
def test_a_camera_frame_is_embedded_at_print_size(tmp_path, real_xray):
    """A 1280x720 frame is embedded at SHEET_MAX_SIDE px across (250 dpi at 80 mm), not full size."""
    if shutil.which("pdfimages") is None:
        pytest.skip("pdfimages not installed (apt-get install poppler-utils)")
    frame = cv2.resize(cv2.imread(real_xray), (1280, 720))
    case = saved_case(tmp_path, frame)
    path = str(tmp_path / "sheet.pdf")
    with open(path, "wb") as handle:
        handle.write(referral_for_record(case, frame, InputSpec(224, 224)))
    listing = subprocess.check_output(["pdfimages", "-list", path]).decode("ascii").splitlines()[2:]
    sizes = sorted((int(row.split()[3]), int(row.split()[4])) for row in listing if row.split()[2] == "image")
    assert sizes == [(224, 224), (SHEET_MAX_SIDE, 450)]


@needs_poppler
def test_the_sheet_is_in_english_when_the_screen_speaks_hindi(tmp_path, real_xray):
    """The sheet is for the receiving clinician (and fpdf2 2.4.6 cannot shape Devanagari): with the
    kiosk in Hindi its labels, the quality banner and the likelihood words are still English, never
    an ASCII-folded blank."""
    from edge import i18n
    from edge.quality import Quality

    image = cv2.imread(real_xray)
    try:
        i18n.set_language("hi")
        quality = Quality([("too dark", 0.9)], 100.0, 20.0, 0.9, 0.0).to_dict()
        assert "add light" not in quality["message"]  # stored translated, as the kiosk saves it
        result = dict(RESULT, state="quality", quality=quality)
        fields = record_fields(saved_case(tmp_path, image, result, reference="ab12"))
        text, _page = pdf_text(tmp_path, referral_pdf(fields, result, image), "quality")
        top3 = [dict(item, word=i18n._("likely")) for item in RESULT["top3"]]
        words = dict(RESULT, display="words", top3=top3)
        words_text, _page = pdf_text(tmp_path, referral_pdf(fields, words, image), "words")
    finally:
        i18n.set_language("en")
    assert "Image quality: too dark - add light" in text and "No result shown for this image" in text
    assert re.search(r"Patient reference:\s+AB12", text) and "Case number:" in text
    assert re.search(r"1\.\s+Pleural effusion\s+likely", words_text)  # 0.81 >= 0.70
    assert re.search(r"2\.\s+Cardiomegaly\s+unlikely", words_text)  # 0.10 < 0.30
    assert "81%" not in words_text
