"""What the kiosk's panel says about a prediction, as data for the web page and the API.

The texts and the state rules are the overlay's own (``edge.overlay``), so the page shows the same
wording, warnings and decision-support notice as the screen.
"""

from edge import overlay

NO_RESULT_TEXT = "No result shown for this image"
OUT_OF_SCOPE_DEFAULT = "Image outside this module - check the module"
QUALITY_DEFAULT = "Image quality too low - retake"
SUBTITLES = {
    "multiclass": "Most likely findings",
    "multilabel": "Findings - each scored on its own (not a distribution)",
}


def _quality_banner(prediction):
    return prediction.quality.message or QUALITY_DEFAULT


def _out_of_scope_banner(prediction):
    return prediction.out_of_scope_message or OUT_OF_SCOPE_DEFAULT


def _uncertain_banner(_prediction):
    return overlay.UNCERTAIN_TEXT


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
        rows = [{"rank": rank, "name": name, "percent": overlay.row_value(prediction, probability)[0]}
                for rank, (name, probability) in enumerate(prediction.top3, 1)]
    return {
        "state": state,
        "title": module_title,
        "subtitle": SUBTITLES.get(prediction.task, SUBTITLES["multiclass"]) if show_rows else None,
        "banner": banner(prediction) if banner else None,
        "rows": rows,
        "dim": state == "uncertain",
        "note": None if show_rows else NO_RESULT_TEXT,
        "disclaimer": overlay.DISCLAIMER,
    }
