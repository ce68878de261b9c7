"""Text in a rectangle of the kiosk screen: wrapped, fitted, centred, never smaller than readable.

Drawn by edge.text's engine for the active language (FreeType with the script's font, or OpenCV's
Hershey for English without a font). The readable floor is a cap height, ``MIN_TEXT_PX`` (13 px on a
7-inch 800x480 panel, see ``readable_cap_px``): text that does not fit at it wraps or ends with an
ellipsis instead of shrinking further. Used by edge.overlay, the technician box, the pairing panel
and capture mode.
"""

from edge import i18n
from edge import text as text_engine

# The smallest text drawn: cap height in pixels on the smallest supported panel (see readable_cap_px).
PANEL_800x480 = {"size": (800, 480), "diagonal_mm": 177.8}  # a 7-inch panel
READING_DISTANCE_MM = 500.0  # arm's length at the kiosk
MIN_ARCMIN = 16.0  # ISO 9241-303's minimum character height for reading


def readable_cap_px(panel=None, distance_mm=READING_DISTANCE_MM, arcmin=MIN_ARCMIN):
    """The smallest readable cap height in pixels: ``arcmin`` at ``distance_mm`` on ``panel``'s pixel pitch.

    13 px on a 7-inch 800x480 panel at 50 cm (2.33 mm tall at 0.19 mm a pixel).
    """
    import math

    panel = panel or PANEL_800x480
    width, height = panel["size"]
    pitch_mm = panel["diagonal_mm"] / math.hypot(width, height)
    return int(math.ceil(distance_mm * math.tan(math.radians(arcmin / 60.0)) / pitch_mm))


MIN_TEXT_PX = readable_cap_px()


def engine():
    """The text engine for the active language (FreeType with the script's font, or Hershey)."""
    return text_engine.use(i18n.language())


def min_px(drawer, bold=False):
    """The size (``px``, the height of "Ag") of the smallest readable text drawn by ``drawer``."""
    return drawer.min_px(MIN_TEXT_PX, bold)


def min_line_px(bold=False):
    """The height of one line of the smallest readable text (what a row must have to hold it)."""
    drawer = engine()
    return drawer.line_height(min_px(drawer, bold), bold)


def fit(drawer, text, pixels, bold, max_width, least=0.6):
    """Shrink ``pixels`` until ``text`` fits ``max_width`` (not below ``least`` of it, nor below the
    readable size); then cut with an ellipsis."""
    minimum = max(pixels * least, min_px(drawer, bold))
    pixels = max(pixels, minimum)
    while drawer.width(text, pixels, bold) > max_width and pixels > minimum:
        pixels = max(minimum, pixels * 0.9)
    ellipsis = drawer.ellipsis
    while len(text) > 3 and drawer.width(text, pixels, bold) > max_width:
        text = drawer.cut(text[:-(len(ellipsis) + 1)].rstrip(ellipsis)) + ellipsis
    return text, pixels


def wrap(drawer, text, pixels, bold, max_width):
    """``text`` broken at spaces into lines no wider than ``max_width`` (a long word keeps its line)."""
    lines, line = [], ""
    for word in text.split():
        candidate = (line + " " + word).strip()
        if line and drawer.width(candidate, pixels, bold) > max_width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def text_block(canvas, text, rect, pixels, colour, bold=False, max_lines=2, centre=False):
    """Wrapped text inside ``rect`` with glyphs ``pixels`` tall; shrunk to fit its height, never below
    readable (the last line that fits then ends with an ellipsis)."""
    drawer = engine()
    text = "{}".format(text)
    floor = min_px(drawer, bold)
    pixels = max(floor, pixels)
    for _attempt in range(8):
        lines = wrap(drawer, text, pixels, bold, rect.w)
        line_h = drawer.line_height(pixels, bold)
        if (len(lines) <= max_lines and line_h * len(lines) <= rect.h) or pixels <= floor:
            break
        pixels = max(floor, pixels * 0.85)
    allowed = max(1, min(max_lines, rect.h // line_h))
    if len(lines) > allowed:
        lines = lines[:allowed - 1] + [" ".join(lines[allowed - 1:])]
    total = line_h * len(lines)
    y = rect.y + max(0, (rect.h - total) // 2) + drawer.ascent(pixels, bold)
    for line in lines:
        line, line_px = fit(drawer, line, pixels, bold, rect.w)
        x = rect.x
        if centre:
            x += max(0, (rect.w - drawer.width(line, line_px, bold)) // 2)
        drawer.draw(canvas, line, x, y, line_px, colour, bold)
        y += line_h
