"""What the health worker sees: ``draw_overlay(frame, result, state) -> canvas``. Pure.

The canvas (display size, e.g. 800x480 or 1920x1080) holds the camera image letterboxed on the
left and a dark panel on the right: module title, the top-3 findings with percentages and bars,
the state banners (uncertain, out of scope, image quality, camera disconnected, module not
installed) and the permanent "Decision support only - not a diagnosis" line; over the camera image
the live X-ray outline (``OverlayState.outline``/``outline_state`` from edge.locate: locked = solid
green, hold_still = amber "Hold still", searching = the guide rectangle with "Place the X-ray inside
the frame"), and in the panel a thumbnail of exactly what was analysed. Text sizes are
fractions of the canvas height so they read at arm's length on a 7-inch and a 24-inch screen.
Hershey fonts (cv2.putText) draw ASCII only, so text is folded to ASCII first.
"""

import unicodedata
import zlib

from edge.lazy import require

DISCLAIMER = "Decision support only - not a diagnosis"
UNCERTAIN_TEXT = "Uncertain - retake the image or refer"
DISCONNECTED_TEXT = "Camera disconnected - reconnecting"
NOT_INSTALLED_TEXT = "Module not installed"
CPU_FALLBACK_TEXT = "RUNNING ON CPU - GPU unavailable"
FROZEN_TEXT = "FROZEN - SPACE for live"
KEYS_TEXT = "SPACE freeze  M module  F image  S save"
HOLD_STILL_TEXT = "Hold still"
GUIDE_TEXT = "Place the X-ray inside the frame"
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

_REPLACEMENTS = {"\u2014": "-", "\u2013": "-", "\u2026": "...", "\u00d7": "x", "\u2265": ">=",
                 "\u2264": "<=", "\u00b5": "u", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}


def ascii_text(text):
    """Fold text to what Hershey fonts can draw (em dash -> '-', accents dropped)."""
    text = "".join(_REPLACEMENTS.get(ch, ch) for ch in "{}".format(text))
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


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
        thumb = int(unit * 2.6)
        self.thumbnail = Rect(inner_x + inner_w - thumb, pad, thumb, thumb)
        self.title = Rect(inner_x, pad, inner_w - thumb - pad, int(unit * 2.6))
        self.subtitle = Rect(inner_x, self.title.y + self.title.h, inner_w, int(unit * 1.1))
        body_y = self.subtitle.y + self.subtitle.h + pad
        self.footer = Rect(inner_x, height - pad - int(unit * 2.2), inner_w, int(unit * 2.2))
        self.keys = Rect(inner_x, self.footer.y - int(unit * 0.9), inner_w, int(unit * 0.9))
        self.body = Rect(inner_x, body_y, inner_w, self.keys.y - body_y - pad)
        self.banner = Rect(inner_x, body_y, inner_w, int(unit * 2.6))
        rows_y = self.banner.y + self.banner.h + pad
        self.top3 = Rect(inner_x, rows_y, inner_w, self.keys.y - rows_y - pad)
        self.tech = Rect(self.image.x + pad, height - pad - int(unit * 0.9), self.image.w - 2 * pad,
                         int(unit * 0.9))
        self.alert = Rect(self.image.x, 0, self.image.w, int(unit * 1.6))
        self.badge = Rect(self.image.x + pad, self.alert.h + pad, self.image.w - 2 * pad, int(unit * 1.3))
        self.message = Rect(self.image.x + pad, self.tech.y - pad - int(unit * 1.4), self.image.w - 2 * pad,
                            int(unit * 1.4))


def _font_scale(cv2, pixels, font):
    base = cv2.getTextSize("Ag", font, 1.0, 1)[0][1]
    return max(0.3, pixels / float(base))


def _thickness(scale, bold=False):
    return max(1, int(round(scale * (2.2 if bold else 1.5))))


def _fit(cv2, text, font, scale, thickness, max_width):
    """Shrink ``scale`` until ``text`` fits ``max_width`` (not below 60%); then cut with '...'."""
    minimum = scale * 0.6
    while cv2.getTextSize(text, font, scale, thickness)[0][0] > max_width and scale > minimum:
        scale *= 0.9
    while len(text) > 3 and cv2.getTextSize(text, font, scale, thickness)[0][0] > max_width:
        text = text[:-4] + "..."
    return text, scale


def _wrap(cv2, text, font, scale, thickness, max_width, max_lines):
    words = text.split()
    lines, line = [], ""
    for word in words:
        candidate = (line + " " + word).strip()
        if line and cv2.getTextSize(candidate, font, scale, thickness)[0][0] > max_width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def _text_block(cv2, canvas, text, rect, pixels, colour, bold=False, max_lines=2, centre=False):
    """Draw wrapped text inside ``rect`` with glyphs ``pixels`` tall; shrink to fit its height."""
    text = ascii_text(text)
    font = cv2.FONT_HERSHEY_DUPLEX if bold else cv2.FONT_HERSHEY_SIMPLEX
    scale = _font_scale(cv2, pixels, font)
    for _attempt in range(8):
        thickness = _thickness(scale, bold)
        lines = _wrap(cv2, text, font, scale, thickness, rect.w, max_lines)
        line_h = int(cv2.getTextSize("Ag", font, scale, thickness)[0][1] * 1.45) + 1
        if (len(lines) <= max_lines and line_h * len(lines) <= rect.h) or scale < 0.35:
            break
        scale *= 0.85
    if len(lines) > max_lines:  # still too long at the smallest size: the last line ends with "..."
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    total = line_h * len(lines)
    y = rect.y + max(0, (rect.h - total) // 2) + int(line_h * 0.75)
    for line in lines:
        line, line_scale = _fit(cv2, line, font, scale, thickness, rect.w)
        x = rect.x
        if centre:
            x += max(0, (rect.w - cv2.getTextSize(line, font, line_scale, thickness)[0][0]) // 2)
        cv2.putText(canvas, line, (x, y), font, line_scale, colour, thickness, cv2.LINE_AA)
        y += line_h


def _banner(cv2, canvas, rect, text, background, colour, pixels):
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), background, -1)
    inner = Rect(rect.x + 6, rect.y + 3, rect.w - 12, rect.h - 6)
    _text_block(cv2, canvas, text, inner, pixels, colour, bold=True, max_lines=2, centre=True)


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
    np.copyto(region[y0:y0 + new_h, x0:x0 + new_w],
              cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR))
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
        _text_block(cv2, canvas, text, band, layout.unit * 0.7, colour, bold=True, max_lines=1, centre=True)


def _draw_thumbnail(cv2, np, canvas, layout, result):
    """The analysed image (``Prediction.thumbnail``), letterboxed in the panel's corner."""
    image = getattr(result, "thumbnail", None)
    if image is not None:
        _place_image(cv2, np, canvas, image, layout.thumbnail)


def _tech_line(state, result):
    parts = []
    backend = state.backend or getattr(result, "backend", None)
    if backend:
        parts.append(" ".join(str(p) for p in (backend, state.precision, state.provider) if p))
    if state.fps is not None:
        parts.append("{:.1f} fps".format(state.fps))
    latency = state.latency_ms if state.latency_ms is not None else getattr(result, "latency_ms", None)
    if latency is not None:
        parts.append("{:.0f} ms".format(latency))
    return "  |  ".join(parts)


def row_value(result, probability):
    """(text, bar fraction or None) of one row: a percentage and its bar for a calibrated bundle's
    confident result; otherwise the likelihood word (edge.classify.LIKELIHOOD_WORDS) and no bar."""
    if getattr(result, "shows_percent", True):
        return format_percent(probability), min(1.0, max(0.0, float(probability)))
    return result.value_text(probability), None


def _rows(cv2, canvas, layout, result, dim):
    """The top-3 rows: name and percentage (or likelihood word) on one line, a bar under a percentage."""
    rect = layout.top3
    top = list(getattr(result, "top3", None) or [])[:3]
    if not top:
        return
    row_h = min(rect.h // 3, int(layout.unit * 3.0))
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = _font_scale(cv2, layout.unit * 0.95, font)
    thickness = _thickness(scale)
    colour = GREY if dim else WHITE
    for index, (name, probability) in enumerate(top):
        y = rect.y + index * row_h
        percent, fraction = row_value(result, probability)
        p_size = cv2.getTextSize(percent, cv2.FONT_HERSHEY_DUPLEX, scale, thickness + 1)[0]
        text_y = y + int(layout.unit * 1.1)
        label, label_scale = _fit(cv2, "{}. {}".format(index + 1, ascii_text(name)), font, scale, thickness,
                                  rect.w - p_size[0] - layout.pad)
        cv2.putText(canvas, label, (rect.x, text_y), font, label_scale, colour, thickness, cv2.LINE_AA)
        cv2.putText(canvas, percent, (rect.x + rect.w - p_size[0], text_y), cv2.FONT_HERSHEY_DUPLEX, scale,
                    colour, thickness + 1, cv2.LINE_AA)
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
        return "Findings - each scored on its own (not a distribution)"
    return "Most likely findings"


def _draw_refusal(cv2, canvas, layout, result):
    """Under an out-of-scope banner: the module to switch to (M), else that nothing is shown."""
    suggestion = result.suggestion_line("M") if getattr(result, "suggested_module", None) else None
    if suggestion:
        _text_block(cv2, canvas, suggestion, layout.top3, layout.unit * 0.8, WHITE, bold=True, max_lines=3)
    else:
        _text_block(cv2, canvas, "No result shown for this image", layout.top3, layout.unit * 0.7, GREY)


def _draw_panel(cv2, canvas, layout, result, state, kind):
    """The right-hand panel: title, findings or state banner, keys, disclaimer."""
    unit = layout.unit
    panel = layout.panel
    _fill(cv2, canvas, panel.x, panel.y, panel.w, panel.h, DARK)
    _text_block(cv2, canvas, state.module_title or "medkiosk", layout.title, unit * 1.25, WHITE, bold=True)
    if result is not None:
        _draw_thumbnail(cv2, require("numpy"), canvas, layout, result)
    if kind in ("ok", "uncertain"):
        _text_block(cv2, canvas, _subtitle(result), layout.subtitle, unit * 0.6, GREY, max_lines=1)

    banner_px = unit * 0.95
    if kind == "not_installed":
        _banner(cv2, canvas, layout.banner, NOT_INSTALLED_TEXT, AMBER, BLACK, banner_px)
        _text_block(cv2, canvas, state.module_problem or "Install this module's model bundle, or press M "
                    "for another module", layout.top3, unit * 0.7, WHITE, max_lines=4)
    elif kind == "disconnected":
        _banner(cv2, canvas, layout.banner, DISCONNECTED_TEXT, RED, WHITE, banner_px)
    elif kind in ("waiting", "analysing"):
        text = "Analysing..." if kind == "analysing" else (state.source_notice or "Waiting for an image...")
        _text_block(cv2, canvas, text, layout.banner, unit * 0.85, GREY, max_lines=3)
    elif kind == "quality":
        _banner(cv2, canvas, layout.banner, result.quality.message or "Image quality too low - retake", AMBER,
                BLACK, banner_px)
        _text_block(cv2, canvas, "No result shown for this image", layout.top3, unit * 0.7, GREY)
    elif kind == "out_of_scope":
        message = (getattr(result, "out_of_scope_message", None)
                   or "Image outside this module - check the module")
        _banner(cv2, canvas, layout.banner, message, AMBER, BLACK, banner_px)
        _draw_refusal(cv2, canvas, layout, result)
    else:
        if kind == "uncertain":
            _banner(cv2, canvas, layout.banner, UNCERTAIN_TEXT, YELLOW, BLACK, banner_px)
        _rows(cv2, canvas, layout, result, dim=(kind == "uncertain"))

    if state.show_keys:
        _text_block(cv2, canvas, KEYS_TEXT, layout.keys, unit * 0.45, GREY, max_lines=1)
    _text_block(cv2, canvas, DISCLAIMER, layout.footer, unit * 0.75, YELLOW, bold=True, max_lines=2)


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
    """The camera image and what goes over it: alerts, FROZEN, messages, the technician corner."""
    unit = layout.unit
    shown = heatmap_frame(result, state, kind, frame)
    mapping = _place_image(cv2, np, canvas, frame if shown is None else shown, layout.image)
    if shown is None:  # the outline is in camera-frame pixels: not over the analysed crop
        _draw_outline(cv2, np, canvas, layout, state, mapping)
    if state.fallback_reason:
        alert = CPU_FALLBACK_TEXT if state.on_cpu else state.fallback_reason
        _banner(cv2, canvas, layout.alert, alert, RED, WHITE, unit * 0.9 if state.on_cpu else unit * 0.6)
    if state.developer_notice:  # below a fallback alert when there is one, else in its place
        band = layout.alert if not state.fallback_reason else Rect(
            layout.alert.x, layout.alert.h, layout.alert.w, int(unit * 1.1))
        _banner(cv2, canvas, band, state.developer_notice, AMBER, BLACK, unit * 0.6)
    if state.frozen:
        _banner(cv2, canvas, Rect(layout.badge.x, layout.badge.y, min(layout.badge.w, int(unit * 11)),
                                  layout.badge.h), FROZEN_TEXT, BLUE, WHITE, unit * 0.7)
    if kind == "disconnected" and frame is None:
        _text_block(cv2, canvas, DISCONNECTED_TEXT, Rect(layout.image.x, layout.image.h // 3, layout.image.w,
                                                         layout.image.h // 3), unit, WHITE, centre=True)
    elif frame is None and state.source_notice:
        middle = Rect(layout.image.x + layout.pad, layout.image.h // 3, layout.image.w - 2 * layout.pad,
                      layout.image.h // 3)
        _text_block(cv2, canvas, state.source_notice, middle, unit * 0.7, WHITE, max_lines=3, centre=True)
    if state.message:
        _banner(cv2, canvas, layout.message, state.message, BLACK, WHITE, unit * 0.7)
    tech = _tech_line(state, result)
    if tech:
        band = layout.tech
        cv2.rectangle(canvas, (band.x - layout.pad // 2, band.y), (band.x + band.w, band.y + band.h), DARK,
                      -1)
        _text_block(cv2, canvas, tech, layout.tech, max(12.0, unit * 0.5), GREY, max_lines=1)


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
    return (_shown(result, layout), kind, state.module_title, state.module_installed, state.module_problem,
            state.source_notice if kind == "waiting" else None, state.show_keys, tuple(state.size))


class OverlayRenderer(object):
    """``draw_overlay`` with a reused canvas that redraws the panel only when what it shows changed.

    Text is most of the drawing time; the panel's text changes a few times a second at most while
    the image under the overlays changes every frame. The result is pixel-identical to
    ``draw_overlay``: the panel is keyed by the text and bar lengths it shows.
    """

    def __init__(self):
        self.canvas = None
        self._key = None
        self.panel_draws = 0

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
            _draw_panel(cv2, canvas, layout, result, state, kind)
            self.panel_draws += 1
            self._key = key
        self.canvas = canvas
        return canvas
