"""What the health worker sees: ``draw_overlay(frame, result, state) -> canvas``. Pure.

The canvas (display size, e.g. 800x480 or 1920x1080) holds the camera image letterboxed on the
left and a dark panel on the right: module title, the top-3 findings with percentages and bars,
the state banners (uncertain, out of scope, image quality, camera disconnected, module not
installed) and the permanent "Decision support only - not a diagnosis" line; over the camera image
the live X-ray outline (``OverlayState.outline``/``outline_state`` from edge.locate: locked = solid
green, hold_still = amber "Hold still", searching = the guide rectangle with "Place the X-ray inside
the frame"), and in the panel a thumbnail of exactly what was analysed. Text sizes are
fractions of the canvas height so they read at arm's length on a 7-inch and a 24-inch screen.
Text is in the worker's language (edge.i18n: constants are marked ``N_`` and translated where drawn)
and drawn by edge.text: FreeType with the script's font (Devanagari, Bengali) or, for English
without a font, OpenCV's Hershey (ASCII only, text folded first), laid out by edge.overlay_text:
capitals never below ``MIN_TEXT_PX`` (13 px at 800x480); longer text wraps or ends with an ellipsis.
"""

import zlib

from edge import i18n
from edge.i18n import N_, _
from edge.lazy import require
from edge.overlay_text import (  # noqa: F401  (public here: the kiosk's views and the tests use them)
    MIN_TEXT_PX,
    PANEL_800x480,
    engine,
    fit,
    min_line_px,
    min_px,
    readable_cap_px,
    text_block,
)
from edge.text import ascii_text  # noqa: F401  (the referral sheet folds its text with it)

DISCLAIMER = N_("Decision support only - not a diagnosis")
UNCERTAIN_TEXT = N_("Uncertain - retake the image or refer")
DISCONNECTED_TEXT = N_("Camera disconnected - reconnecting")
NOT_INSTALLED_TEXT = N_("Module not installed")
CPU_FALLBACK_TEXT = N_("RUNNING ON CPU - GPU unavailable")
FROZEN_TEXT = N_("FROZEN - SPACE for live")
# The key legend under the findings: (key, what it does); each key's keypad twin is added from
# edge.outputs.KEY_CODES (key_legend). T (technician) and P (pairing) are the technician's: in docs.
KEY_LEGEND = (("SPACE", N_("freeze")), ("M", N_("module")), ("F", N_("image")), ("S", N_("save")),
              ("E", N_("export")))
# Keypad codes (cv2.waitKey) -> how the key is labelled on the keypad.
KEYPAD_LABELS = {13: "Enter", 43: "+", 45: "-", 46: ".", 42: "*", 47: "/"}
# Key names that do what another key does in the kiosk (edge.kiosk.keys binds ENTER to SPACE's handler).
SAME_AS = {"ENTER": "SPACE"}
HOLD_STILL_TEXT = N_("Hold still")
GUIDE_TEXT = N_("Place the X-ray inside the frame")
INSTALL_TEXT = N_("Install this module's model bundle, or press M for another module")
ANALYSING_TEXT = N_("Analysing...")
WAITING_TEXT = N_("Waiting for an image...")
QUALITY_TEXT = N_("Image quality too low - retake")
OUT_OF_SCOPE_TEXT = N_("Image outside this module - check the module")
NO_RESULT_TEXT = N_("No result shown for this image")
DEFAULT_SIZE = (1280, 720)
PANEL_FRACTION = 0.42

# BGR colours, chosen for contrast on the dark panel.
WHITE = (255, 255, 255)
GREY = (170, 170, 170)
DARK = (24, 24, 24)
IMAGE_BG = (40, 40, 40)
BAR_BG = (70, 70, 70)
BAR = (80, 200, 80)
BAR_DIM = (120, 120, 120)
YELLOW = (0, 220, 255)
AMBER = (0, 160, 255)
RED = (40, 40, 220)
BLACK = (0, 0, 0)
BLUE = (200, 120, 20)


def key_legend_items():
    """``["SPACE/Enter freeze", "M/+ module", ..., "E (/) export"]``: each key with its keypad twin."""
    from edge.outputs import KEY_CODES

    twins = {}
    for code, label in sorted(KEYPAD_LABELS.items()):
        if code in KEY_CODES:
            name = KEY_CODES[code]
            twins.setdefault(SAME_AS.get(name, name), []).append(label)
    # "S/." but "E (/)": a keypad twin that is itself a slash is put in brackets
    names = {key: key + "".join(" (/)" if label == "/" else "/" + label for label in twins.get(key, []))
             for key, _what in KEY_LEGEND}
    return ["{} {}".format(names[key], _(what)) for key, what in KEY_LEGEND]


def key_legend():
    """The whole legend on one line: ``SPACE/Enter freeze; M/+ module; F/- image; S/. save; E (/) export``."""
    return "; ".join(key_legend_items())


def legend_lines(width, pixels):
    """The legend's entries packed into lines no wider than ``width`` at ``pixels`` (an entry is never
    broken over two lines)."""
    drawer = engine()
    pixels = max(min_px(drawer), pixels)
    lines = []
    for item in key_legend_items():
        joined = lines[-1] + "; " + item if lines else item
        if lines and drawer.width(joined, pixels) <= width:
            lines[-1] = joined
        else:
            lines.append(item)
    return lines


def _draw_legend(canvas, rect, pixels):
    lines = legend_lines(rect.w, pixels)
    row_h = rect.h // len(lines)
    for index, line in enumerate(lines):
        text_block(canvas, line, Rect(rect.x, rect.y + index * row_h, rect.w, row_h), pixels, GREY,
                   max_lines=1)


def format_percent(probability):
    percent = 100.0 * float(probability)
    if 0.0 < percent < 1.0:
        return "<1%"
    return "{:.0f}%".format(percent)


class OverlayState(object):
    """Everything but the prediction that the screen shows (set by the kiosk loop each frame)."""

    def __init__(self, module_title="", module_installed=True, module_problem=None, frozen=False,
                 analysing=False, disconnected=False, source_notice=None, message=None, backend=None,
                 precision=None, provider=None, fallback_reason=None, on_cpu=False, fps=None, latency_ms=None,
                 show_keys=True, size=DEFAULT_SIZE, outline=None, outline_state=None, developer_notice=None,
                 heatmap=False):
        self.module_title = module_title
        self.module_installed = module_installed
        self.module_problem = module_problem
        self.frozen = frozen
        self.analysing = analysing
        self.disconnected = disconnected
        self.source_notice = source_notice
        self.message = message
        self.backend = backend
        self.precision = precision
        self.provider = provider
        self.fallback_reason = fallback_reason  # a backend/precision downgrade: shown loudly
        self.on_cpu = on_cpu
        self.fps = fps
        self.latency_ms = latency_ms
        self.show_keys = show_keys
        self.size = tuple(size)
        self.outline = outline  # 4x2 corners in frame pixels (edge.locate's quad), or None: nothing drawn
        self.outline_state = outline_state  # "searching" | "hold_still" | "locked" (edge.locate)
        self.developer_notice = developer_notice  # edge.signing.DEVELOPER_BANNER: shown while it holds
        self.heatmap = heatmap  # H: draw the result's heatmap over the analysed image (edge.heatmap)


class Rect(object):
    def __init__(self, x, y, w, h):
        self.x, self.y, self.w, self.h = int(x), int(y), int(w), int(h)

    def crop(self, canvas):
        return canvas[self.y:self.y + self.h, self.x:self.x + self.w]

    def __repr__(self):
        return "Rect({}, {}, {}, {})".format(self.x, self.y, self.w, self.h)


class Layout(object):
    """Where each element goes on a canvas of ``size`` (width, height); tests crop these regions."""

    def __init__(self, size):
        width, height = int(size[0]), int(size[1])
        self.width, self.height = width, height
        self.unit = height / 20.0  # 24 px on 800x480, 54 px on 1920x1080
        panel_w = int(round(width * PANEL_FRACTION))
        self.pad = max(4, int(self.unit * 0.4))
        self.image = Rect(0, 0, width - panel_w, height)
        self.panel = Rect(width - panel_w, 0, panel_w, height)
        pad, unit = self.pad, self.unit
        inner_x, inner_w = self.panel.x + pad, panel_w - 2 * pad
        # Heights in units fit two lines of the smallest text (MIN_TEXT_PX) where text may wrap; two lines
        # of the language's script (taller in Devanagari and Bengali fonts) where that is more.
        two_lines = 2 * min_line_px()
        thumb = int(unit * 2.3)
        self.thumbnail = Rect(inner_x + inner_w - thumb, pad, thumb, thumb)
        self.title = Rect(inner_x, pad, inner_w - thumb - pad, thumb)
        self.subtitle = Rect(inner_x, self.title.y + self.title.h, inner_w, max(int(unit * 1.6), two_lines))
        body_y = self.subtitle.y + self.subtitle.h + pad
        footer_h = max(int(unit * 2.0), 2 * min_line_px(bold=True))  # the notice, whole, on two lines
        self.footer = Rect(inner_x, height - pad - footer_h, inner_w, footer_h)
        self.keys = Rect(inner_x, self.footer.y - int(unit * 2.4), inner_w, int(unit * 2.4))
        self.body = Rect(inner_x, body_y, inner_w, self.keys.y - body_y - pad)
        self.banner = Rect(inner_x, body_y, inner_w, max(int(unit * 2.4), 2 * min_line_px(bold=True) + 6))
        rows_y = self.banner.y + self.banner.h + pad
        self.top3 = Rect(inner_x, rows_y, inner_w, self.keys.y - rows_y - pad)
        self.tech = Rect(self.image.x + pad, height - pad - int(unit * 1.0), self.image.w - 2 * pad,
                         int(unit * 1.0))  # the still image's file name (edge.kiosk.views)
        self.alert = Rect(self.image.x, 0, self.image.w, int(unit * 1.6))
        self.badge = Rect(self.image.x + pad, self.alert.h + pad, self.image.w - 2 * pad, int(unit * 1.3))
        self.message = Rect(self.image.x + pad, self.tech.y - pad - int(unit * 2.0), self.image.w - 2 * pad,
                            int(unit * 2.0))


def _banner(cv2, canvas, rect, text, background, colour, pixels):
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), background, -1)
    inner = Rect(rect.x + 6, rect.y + 3, rect.w - 12, rect.h - 6)
    text_block(canvas, text, inner, pixels, colour, bold=True, max_lines=2, centre=True)


def _fill(cv2, canvas, x, y, w, h, colour):
    """Fill a rectangle of the canvas. cv2.rectangle, not ``region[:] = colour``: numpy broadcasts a
    3-value colour pixel by pixel (1.3 ms for the panel at 720p, against 0.06 ms)."""
    if w > 0 and h > 0:
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), colour, -1)


def _place_image(cv2, np, canvas, frame, rect):
    """Letterbox ``frame`` into ``rect``; returns (scale, x, y) mapping frame pixels to the canvas."""
    region = rect.crop(canvas)
    if frame is None or frame.size == 0:
        _fill(cv2, canvas, rect.x, rect.y, rect.w, rect.h, IMAGE_BG)
        return None
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    height, width = frame.shape[:2]
    scale = min(rect.w / float(width), rect.h / float(height))
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    x0, y0 = (rect.w - new_w) // 2, (rect.h - new_h) // 2
    # Letterbox margins only; the image covers the rest.
    _fill(cv2, canvas, rect.x, rect.y, rect.w, y0, IMAGE_BG)
    _fill(cv2, canvas, rect.x, rect.y + y0 + new_h, rect.w, rect.h - y0 - new_h, IMAGE_BG)
    _fill(cv2, canvas, rect.x, rect.y + y0, x0, new_h, IMAGE_BG)
    _fill(cv2, canvas, rect.x + x0 + new_w, rect.y + y0, rect.w - x0 - new_w, new_h, IMAGE_BG)
    # Linear, not area: area resampling costs ~10 ms a frame at 720p and the screen needs no better.
    # Resized straight into the canvas (no intermediate image to copy); an OpenCV that cannot write
    # into the view returns a new image instead, which is copied.
    target = region[y0:y0 + new_h, x0:x0 + new_w]
    resized = cv2.resize(frame, (new_w, new_h), dst=target, interpolation=cv2.INTER_LINEAR)
    if resized is not target:
        np.copyto(target, resized)
    return new_w / float(width), rect.x + x0, rect.y + y0


OUTLINE_COLOURS = {"locked": BAR, "hold_still": AMBER, "searching": WHITE}
OUTLINE_TEXT = {"hold_still": HOLD_STILL_TEXT, "searching": GUIDE_TEXT}


def _draw_outline(cv2, np, canvas, layout, state, mapping):
    """The live outline over the camera image, in the colour of its state, with its instruction."""
    if state.outline is None or mapping is None or state.outline_state not in OUTLINE_COLOURS:
        return
    scale, x, y = mapping
    points = np.round(np.asarray(state.outline, np.float32) * scale + [x, y]).astype(np.int32)
    colour = OUTLINE_COLOURS[state.outline_state]
    thickness = max(2, int(layout.unit * 0.18))
    cv2.polylines(canvas, [points.reshape(-1, 1, 2)], True, colour, thickness, cv2.LINE_AA)
    text = OUTLINE_TEXT.get(state.outline_state)
    if text:
        top = max(layout.image.y, int(points[:, 1].min()) - int(layout.unit * 1.3))
        band = Rect(layout.image.x + layout.pad, top, layout.image.w - 2 * layout.pad, int(layout.unit * 1.2))
        text_block(canvas, _(text), band, layout.unit * 0.7, colour, bold=True, max_lines=1,
                    centre=True)


def _draw_thumbnail(cv2, np, canvas, layout, result):
    """The analysed image (``Prediction.thumbnail``), letterboxed in the panel's corner."""
    image = getattr(result, "thumbnail", None)
    if image is not None:
        _place_image(cv2, np, canvas, image, layout.thumbnail)


def row_value(result, probability):
    """(text, bar fraction or None) of one row: a percentage and its bar for a calibrated bundle's
    confident result; otherwise the likelihood word (edge.classify.LIKELIHOOD_WORDS) and no bar."""
    if getattr(result, "shows_percent", True):
        return format_percent(probability), min(1.0, max(0.0, float(probability)))
    return result.value_text(probability), None


def _rows(cv2, canvas, layout, result, dim):
    """The top-3 rows: name (in the worker's language) and percentage (or likelihood word) on one
    line, a bar under a percentage."""
    rect = layout.top3
    top = list(getattr(result, "top3", None) or [])[:3]
    if not top:
        return
    drawer = engine()
    row_h = min(rect.h // 3, int(layout.unit * 3.0))
    pixels = max(min_px(drawer), layout.unit * 0.95)
    colour = GREY if dim else WHITE
    for index, (name, probability) in enumerate(top):
        y = rect.y + index * row_h
        percent, fraction = row_value(result, probability)
        p_width = drawer.width(percent, pixels, True)
        text_y = y + int(layout.unit * 1.1)
        label, label_px = fit(drawer, "{}. {}".format(index + 1, _(name)), pixels, False,
                              rect.w - p_width - layout.pad)
        drawer.draw(canvas, label, rect.x, text_y, label_px, colour)
        drawer.draw(canvas, percent, rect.x + rect.w - p_width, text_y, pixels, colour, True)
        if fraction is None:
            continue
        bar_y = text_y + int(layout.unit * 0.4)
        bar_h = max(4, int(layout.unit * 0.55))
        cv2.rectangle(canvas, (rect.x, bar_y), (rect.x + rect.w - 1, bar_y + bar_h), BAR_BG, -1)
        filled = int(round((rect.w - 1) * fraction))
        if filled > 0:
            cv2.rectangle(canvas, (rect.x, bar_y), (rect.x + filled, bar_y + bar_h), BAR_DIM if dim else BAR,
                          -1)


def prediction_state(result, state):
    """Which panel state applies: not_installed, disconnected, waiting, analysing, quality,
    out_of_scope, uncertain or ok. Pure; the kiosk also uses it for its stdout lines."""
    if not state.module_installed:
        return "not_installed"
    if state.disconnected and not state.frozen:
        return "disconnected"
    if result is None:
        return "analysing" if state.analysing else "waiting"
    quality = getattr(result, "quality", None)
    if quality is not None and not quality.ok:
        return "quality"
    if getattr(result, "out_of_scope", False):
        return "out_of_scope"
    if getattr(result, "uncertain", False):
        return "uncertain"
    return "ok"


def _subtitle(result):
    if getattr(result, "task", "multiclass") == "multilabel":
        return N_("Findings - each scored on its own (not a distribution)")
    return N_("Most likely findings")


def _draw_refusal(canvas, layout, result):
    """Under an out-of-scope banner: the module to switch to (M), else that nothing is shown."""
    suggestion = result.suggestion_line("M") if getattr(result, "suggested_module", None) else None
    if suggestion:
        text_block(canvas, suggestion, layout.top3, layout.unit * 0.8, WHITE, bold=True, max_lines=3)
    else:
        text_block(canvas, _(NO_RESULT_TEXT), layout.top3, layout.unit * 0.7, GREY)


def _draw_panel(cv2, canvas, layout, result, state, kind):
    """The right-hand panel: title, findings or state banner, keys, disclaimer."""
    _panel_header(cv2, canvas, layout, state)
    _panel_result(cv2, canvas, layout, result, state, kind)
    _panel_footer(canvas, layout, state)


def _panel_header(cv2, canvas, layout, state):
    """The panel's background and the module's title (the same for every result)."""
    panel = layout.panel
    _fill(cv2, canvas, panel.x, panel.y, panel.w, panel.h, DARK)
    title = _(state.module_title) if state.module_title else "medkiosk"
    text_block(canvas, title, layout.title, layout.unit * 1.25, WHITE, bold=True)


def _panel_footer(canvas, layout, state):
    """The key legend and the disclaimer (the same for every result)."""
    if state.show_keys:
        _draw_legend(canvas, layout.keys, layout.unit * 0.6)
    text_block(canvas, _(DISCLAIMER), layout.footer, layout.unit * 0.75, YELLOW, bold=True, max_lines=2)


def _panel_result(cv2, canvas, layout, result, state, kind):
    """What the panel shows of this result or state: thumbnail, subtitle, findings or banner."""
    unit = layout.unit
    if result is not None:
        _draw_thumbnail(cv2, require("numpy"), canvas, layout, result)
    if kind in ("ok", "uncertain"):
        text_block(canvas, _(_subtitle(result)), layout.subtitle, unit * 0.6, GREY, max_lines=2)

    banner_px = unit * 0.95
    if kind == "not_installed":
        _banner(cv2, canvas, layout.banner, _(NOT_INSTALLED_TEXT), AMBER, BLACK, banner_px)
        text_block(canvas, _(state.module_problem or INSTALL_TEXT), layout.top3, unit * 0.7, WHITE,
                    max_lines=4)
    elif kind == "disconnected":
        _banner(cv2, canvas, layout.banner, _(DISCONNECTED_TEXT), RED, WHITE, banner_px)
    elif kind in ("waiting", "analysing"):
        text = ANALYSING_TEXT if kind == "analysing" else (state.source_notice or WAITING_TEXT)
        text_block(canvas, _(text), layout.banner, unit * 0.85, GREY, max_lines=3)
    elif kind == "quality":
        _banner(cv2, canvas, layout.banner, _(result.quality.message or QUALITY_TEXT), AMBER, BLACK,
                banner_px)
        text_block(canvas, _(NO_RESULT_TEXT), layout.top3, unit * 0.7, GREY)
    elif kind == "out_of_scope":
        message = getattr(result, "out_of_scope_message", None) or OUT_OF_SCOPE_TEXT
        _banner(cv2, canvas, layout.banner, _(message), AMBER, BLACK, banner_px)
        _draw_refusal(canvas, layout, result)
    else:
        if kind == "uncertain":
            _banner(cv2, canvas, layout.banner, _(UNCERTAIN_TEXT), YELLOW, BLACK, banner_px)
        _rows(cv2, canvas, layout, result, dim=(kind == "uncertain"))


def alerts_bottom(layout, state):
    """The y below the loud alerts at the top of the image area (CPU fallback, developer mode); 0 if none."""
    bottom = layout.alert.h if state.fallback_reason else 0
    if state.developer_notice:
        bottom += int(layout.unit * 1.1) if state.fallback_reason else layout.alert.h
    return bottom


def banners_bottom(layout, state):
    """The y below every banner at the top of the image area (alerts, then FROZEN); 0 when none."""
    bottom = alerts_bottom(layout, state)
    if state.frozen:
        bottom = _badge(layout, bottom).y + layout.badge.h
    return bottom


def _badge(layout, top):
    """FROZEN: in its place under the alert band, or lower when two alerts are stacked there; as wide
    as its text in the worker's language (up to the image's width)."""
    y = max(top, layout.alert.h) + layout.pad
    text_w = engine().width(_(FROZEN_TEXT), layout.unit * 0.7, True) + 16
    return Rect(layout.badge.x, y, min(layout.badge.w, max(int(layout.unit * 11), text_w)), layout.badge.h)


def heatmap_frame(result, state, kind, frame=None):
    """With H on and a confident result from a heatmap bundle: the analysed image (the located crop,
    else ``frame``) with the top finding's map over it; None otherwise (the frame is drawn as it is)."""
    if not state.heatmap or kind != "ok" or getattr(result, "heatmap", None) is None:
        return None
    localisation = getattr(result, "localisation", None)
    base = localisation.crop if localisation is not None else frame
    if base is None:
        return None
    from edge.heatmap import prediction_overlay

    return prediction_overlay(result, base)


def _draw_image_area(cv2, np, canvas, layout, frame, result, state, kind):
    """The camera image and what goes over it: alerts, FROZEN, messages (stacked, never overlapping).

    Backend, provider, precision and fps are not drawn here: they are the technician's (T, in
    edge.technician_view); a downgrade is (the red alert).
    """
    unit = layout.unit
    shown = heatmap_frame(result, state, kind, frame)
    mapping = _place_image(cv2, np, canvas, frame if shown is None else shown, layout.image)
    if shown is None:  # the outline is in camera-frame pixels: not over the analysed crop
        _draw_outline(cv2, np, canvas, layout, state, mapping)
    if state.fallback_reason:
        alert = _(CPU_FALLBACK_TEXT) if state.on_cpu else state.fallback_reason
        _banner(cv2, canvas, layout.alert, alert, RED, WHITE, unit * 0.9 if state.on_cpu else unit * 0.6)
    if state.developer_notice:  # below a fallback alert when there is one, else in its place
        band = layout.alert if not state.fallback_reason else Rect(
            layout.alert.x, layout.alert.h, layout.alert.w, int(unit * 1.1))
        _banner(cv2, canvas, band, _(state.developer_notice), AMBER, BLACK, unit * 0.6)
    if state.frozen:
        badge = _badge(layout, alerts_bottom(layout, state))
        _banner(cv2, canvas, badge, _(FROZEN_TEXT), BLUE, WHITE, unit * 0.7)
    if kind == "disconnected" and frame is None:
        middle = Rect(layout.image.x, layout.image.h // 3, layout.image.w, layout.image.h // 3)
        text_block(canvas, _(DISCONNECTED_TEXT), middle, unit, WHITE, centre=True)
    elif frame is None and state.source_notice:
        middle = Rect(layout.image.x + layout.pad, layout.image.h // 3, layout.image.w - 2 * layout.pad,
                      layout.image.h // 3)
        text_block(canvas, _(state.source_notice), middle, unit * 0.7, WHITE, max_lines=3, centre=True)
    if state.message:
        _banner(cv2, canvas, layout.message, _(state.message), BLACK, WHITE, unit * 0.7)


def _canvas_for(np, canvas, size):
    width, height = size
    if canvas is None or canvas.shape != (height, width, 3) or canvas.dtype != np.uint8:
        canvas = np.empty((height, width, 3), dtype=np.uint8)
    return canvas


def draw_overlay(frame, result, state, canvas=None):
    """Compose the screen for one frame; returns ``canvas`` (allocated when None or of the wrong size).

    ``frame``: BGR (or gray) uint8 image or None; ``result``: an ``edge.classify.Prediction`` or None;
    ``state``: OverlayState. Never modifies ``frame``.
    """
    cv2, np = require("cv2"), require("numpy")
    canvas = _canvas_for(np, canvas, state.size)
    layout = Layout(state.size)
    kind = prediction_state(result, state)
    _draw_image_area(cv2, np, canvas, layout, frame, result, state, kind)
    _draw_panel(cv2, canvas, layout, result, state, kind)
    return canvas


def _shown(result, layout):
    """Everything of a result that the panel draws: rows as text and bar pixels, messages, task."""
    if result is None:
        return None
    bar_w = layout.top3.w - 1
    values = [(name, row_value(result, p)) for name, p in list(getattr(result, "top3", None) or [])[:3]]
    rows = tuple((name, text, None if bar is None else int(round(bar_w * bar)))
                 for name, (text, bar) in values)
    quality = getattr(result, "quality", None)
    thumb = getattr(result, "thumbnail", None)
    if thumb is not None:
        thumb = require("numpy").ascontiguousarray(thumb)
    thumb_key = None if thumb is None else (thumb.shape, zlib.crc32(thumb.data))
    return (rows, _subtitle(result), quality.message if quality is not None else None,
            getattr(result, "out_of_scope_message", None), thumb_key,
            getattr(result, "suggested_module", None))


def _panel_key(result, state, kind, layout):
    # Keyed by what is drawn, not by the result object: with live smoothing every result is a new
    # object, yet the rounded percentages and bars seldom change.
    return (_shown(result, layout), kind, i18n.language(), state.module_title, state.module_installed,
            state.module_problem, state.source_notice if kind == "waiting" else None, state.show_keys,
            tuple(state.size))


def _static_key(state):
    """What the panel's unchanging part (background, title, legend, disclaimer) depends on."""
    return (engine(), i18n.language(), state.module_title, state.show_keys, tuple(state.size))


class OverlayRenderer(object):
    """``draw_overlay`` with a reused canvas that redraws the panel only when what it shows changed.

    Text is most of the drawing time; the panel's text changes a few times a second at most while
    the image under the overlays changes every frame. The result is pixel-identical to
    ``draw_overlay``: the panel is keyed by the text and bar lengths it shows. A new result redraws
    only its own part of the panel (thumbnail, subtitle, findings or banner) over a copy of the
    unchanging part (background, title, key legend, disclaimer), rendered once per language, title
    and size: the two parts never overlap, so the order they are drawn in does not show.
    """

    def __init__(self):
        self.canvas = None
        self._key = None
        self.panel_draws = 0
        self.static_draws = 0
        self._static = None  # the panel's pixels with only its unchanging part drawn
        self._static_key = None

    def _draw_panel(self, cv2, np, canvas, layout, result, state, kind):
        panel = layout.panel.crop(canvas)
        key = _static_key(state)
        if key != self._static_key or self._static is None or self._static.shape != panel.shape:
            _panel_header(cv2, canvas, layout, state)
            _panel_footer(canvas, layout, state)
            self._static, self._static_key = panel.copy(), key
            self.static_draws += 1
        else:
            np.copyto(panel, self._static)
        _panel_result(cv2, canvas, layout, result, state, kind)

    def draw(self, frame, result, state):
        cv2, np = require("cv2"), require("numpy")
        canvas = _canvas_for(np, self.canvas, state.size)
        if canvas is not self.canvas:
            self._key = None
        layout = Layout(state.size)
        kind = prediction_state(result, state)
        _draw_image_area(cv2, np, canvas, layout, frame, result, state, kind)
        key = _panel_key(result, state, kind, layout)
        if key != self._key:
            self._draw_panel(cv2, np, canvas, layout, result, state, kind)
            self.panel_draws += 1
            self._key = key
        self.canvas = canvas
        return canvas
