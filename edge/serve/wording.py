"""What the kiosk's panel says about a prediction, as data for the web page and the API, and the page.

The texts and the state rules are the overlay's own (``edge.overlay``), so the page shows the same
wording, warnings and decision-support notice as the screen, in the worker's language (edge.i18n:
``[kiosk] language``). The page (static/index.html) is rendered here: its ``{{key}}`` placeholders
get ``PAGE_TEXT`` in that language, and the strings its script shows travel in the page as JSON.
"""

import html
import json
import os

from edge import i18n, overlay
from edge.i18n import N_, _

NO_RESULT_TEXT = overlay.NO_RESULT_TEXT
OUT_OF_SCOPE_DEFAULT = overlay.OUT_OF_SCOPE_TEXT
QUALITY_DEFAULT = overlay.QUALITY_TEXT
SUBTITLES = {
    "multiclass": N_("Most likely findings"),
    "multilabel": N_("Findings - each scored on its own (not a distribution)"),
}
PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
# placeholder in static/index.html (or key the script reads) -> English text
PAGE_TEXT = {
    "notice": overlay.DISCLAIMER,
    "pair_title": N_("Pair this device"),
    "pair_help": N_("Ask the technician for the 6-digit code shown by the kiosk."),
    "pair_code": N_("Pairing code"),
    "pair_device": N_("Name of this device"),
    "pair_button": N_("Pair"),
    "module_label": N_("Module"),
    "suggest_module": N_("Suggest a module"),
    "image_label": N_("Picture of the X-ray"),
    "analyse": N_("Analyse"),
    "save_case": N_("Save the case"),
    "referral": N_("Download the referral sheet (PDF)"),
    "pairing": N_("Pairing..."),
    "paired": N_("Paired"),
    "analysing": overlay.ANALYSING_TEXT,
    "suggested": N_("(suggested)"),
    "case_saved": N_("Case saved ({})"),
}


def _quality_banner(prediction):
    return _(prediction.quality.message or QUALITY_DEFAULT)


def _out_of_scope_banner(prediction):
    return _(prediction.out_of_scope_message or OUT_OF_SCOPE_DEFAULT)


def _uncertain_banner(_prediction):
    return _(overlay.UNCERTAIN_TEXT)


# panel state -> (banner text, whether the top-3 is shown)
STATES = {
    "quality": (_quality_banner, False),
    "out_of_scope": (_out_of_scope_banner, False),
    "uncertain": (_uncertain_banner, True),
    "ok": (None, True),
}


def screen_view(prediction, module_title):
    """Prediction -> {"state", "title", "subtitle", "banner", "rows", "note", "disclaimer"}."""
    state = overlay.prediction_state(prediction, overlay.OverlayState(module_title=module_title))
    banner, show_rows = STATES[state]
    rows = []
    if show_rows:
        rows = [{"rank": rank, "name": _(name), "percent": overlay.row_value(prediction, probability)[0]}
                for rank, (name, probability) in enumerate(prediction.top3, 1)]
    subtitle = SUBTITLES.get(prediction.task, SUBTITLES["multiclass"])
    return {
        "state": state,
        "title": _(module_title),
        "subtitle": _(subtitle) if show_rows else None,
        "banner": banner(prediction) if banner else None,
        "rows": rows,
        "dim": state == "uncertain",
        "note": None if show_rows else _(NO_RESULT_TEXT),
        "disclaimer": _(overlay.DISCLAIMER),
    }


def page_strings(names=()):
    """The page's texts in the active language; ``names`` (module titles) -> their translation."""
    strings = {key: _(text) for key, text in PAGE_TEXT.items()}
    strings["names"] = {name: _(name) for name in names}
    return strings


def render_page(names=(), path=PAGE_FILE):
    """static/index.html with its placeholders filled in the active language (no script runs for it)."""
    with open(path, encoding="utf-8") as handle:
        page = handle.read()
    strings = page_strings(names)
    # JSON inside <script type="application/json">: ASCII only and no "<", so it cannot end the element.
    data = json.dumps(strings, ensure_ascii=True, sort_keys=True).replace("<", "\\u003c")
    page = page.replace("{{lang}}", html.escape(i18n.language())).replace("{{strings}}", data)
    for key in PAGE_TEXT:
        page = page.replace("{{" + key + "}}", html.escape(strings[key]))
    return page
