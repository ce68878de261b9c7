"""The patient-reference entry that S opens: a visible prompt over the image, typed on the keypad.

S takes a snapshot of what is on screen (image, result, module), freezes a live view on that image
while the prompt is open (so the screen shows what will be saved), and opens the prompt; digits (and
letters from a keyboard) are typed, BACKSPACE deletes the last one, ENTER (or S again: the keypad's
save key) saves the snapshot with the reference, ESC cancels and nothing is saved. An empty
reference is allowed: the case is saved without one. At most ``edge.caselog.REFERENCE_MAX``
characters, A-Z and 0-9 only; the letter S cannot be typed, S saves.

The prompt is drawn over the image area (redrawn every frame by ``OverlayRenderer``), never over
the results panel, by the same text engine as the rest of the screen (the worker's language).
"""

from edge.caselog import REFERENCE_MAX
from edge.i18n import N_, _
from edge.lazy import require
from edge.overlay import WHITE, YELLOW, Layout
from edge.overlay_text import engine, min_px

PROMPT_TITLE = N_("Save case - patient reference (optional)")
# Each kept on one line; wrapped between them.
PROMPT_HELP = (N_("ENTER: save"), N_("ESC: cancel"), N_("BACKSPACE: delete"))
PROMPT_FULL = N_("{} characters at most")
CANCELLED = N_("Not saved")
CONFIRM_KEYS = ("ENTER", "SPACE", "S")
TYPED = frozenset("0123456789ABCDEFGHIJKLMNOPQRTUVWXYZ")  # every letter but S, the save key
PANEL_BG = (24, 24, 24)


class Snapshot(object):
    """What S saw on screen: the image, its result and the module, saved when the entry is confirmed;
    ``held``: S froze a live view on this image for the entry (released when the entry closes)."""

    def __init__(self, frame, result, slot, record, held=False):
        self.frame = frame
        self.result = result
        self.slot = slot
        self.record = record
        self.held = held


class ReferenceEntry(object):
    """The entry mode: ``on_key(kiosk, key)`` while open, ``draw(canvas)`` once a frame."""

    def __init__(self, snapshot, on_confirm, on_cancel):
        self.snapshot = snapshot
        self.text = ""
        self.full = False
        self._on_confirm = on_confirm
        self._on_cancel = on_cancel

    def on_key(self, kiosk, key):
        if key in CONFIRM_KEYS:
            kiosk.desk.mode = None
            self._on_confirm(kiosk, self.snapshot, self.text)
        elif key == "ESC":
            kiosk.desk.mode = None
            self._on_cancel(kiosk, self.snapshot)
        elif key == "BACKSPACE":
            self.text, self.full = self.text[:-1], False
        elif key in TYPED:
            self.full = len(self.text) >= REFERENCE_MAX
            if not self.full:
                self.text += key

    def lines(self):
        """The prompt's parts, each a list of pieces kept whole when wrapped: title (by word), the
        reference typed so far (with a cursor), help (by item)."""
        if self.full:
            help_items = [_(PROMPT_FULL).format(REFERENCE_MAX)]
        else:
            help_items = [_(item) for item in PROMPT_HELP]
        return _(PROMPT_TITLE).split(), ["> " + self.text + "_"], help_items

    def draw(self, canvas):
        """Draw the prompt over the image area of ``canvas`` (the composed screen); returns it.

        Text is ``height / 20`` pixels tall ("Ag"), never under the readable size of the worker's
        language (``edge.overlay_text``), drawn by its text engine and wrapped to the box; nothing is
        drawn outside the image area."""
        cv2 = require("cv2")
        drawer = engine()
        height, width = canvas.shape[:2]
        area = Layout((width, height)).image
        text_px = max(min_px(drawer), int(height / 20.0))
        margin = max(4, area.w // 24)
        x, w = area.x + margin, area.w - 2 * margin
        blocks = []  # (lines, colour, size, line step)
        for pieces, colour, size, sep in zip(self.lines(), (YELLOW, WHITE, WHITE),
                                             (text_px, int(text_px * 1.5), text_px), (" ", " ", "   ")):
            step = int(max(size * 1.45, drawer.line_height(size)))
            blocks.append((_wrap(drawer, pieces, sep, size, w - text_px), colour, size, step))
        box_h = sum(step * len(lines) for lines, _c, _s, step in blocks) + text_px
        y = area.y + max(0, (area.h - box_h) // 2)
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + box_h - 1), PANEL_BG, -1)
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + box_h - 1), YELLOW, 2)
        top = y + text_px // 2
        for lines, colour, size, step in blocks:
            for line in lines:
                top += step
                drawer.draw(canvas, line, x + text_px // 2, top - int(step * 0.3), size, colour)
        return canvas


def _wrap(drawer, pieces, sep, pixels, max_w):
    """``pieces`` joined by ``sep`` in lines no wider than ``max_w`` at ``pixels`` (a piece wider
    than a line is cut)."""

    def fits(candidate):
        return drawer.width(candidate, pixels) <= max_w

    lines, line = [], ""
    for word in pieces:
        candidate = (line + sep + word) if line else word
        if fits(candidate) or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
        while not fits(line) and len(line) > 1:
            cut = len(line) - 1
            while cut > 1 and not fits(line[:cut]):
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    return lines + [line] if line else lines
