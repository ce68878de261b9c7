"""The patient-reference entry that S opens: a visible prompt over the image, typed on the keypad.

S takes a snapshot of what is on screen (image, result, module) and opens the prompt; digits (and
letters from a keyboard) are typed, BACKSPACE deletes the last one, ENTER (or S again: the keypad's
save key) saves the snapshot with the reference, ESC cancels and nothing is saved. An empty
reference is allowed: the case is saved without one. At most ``edge.caselog.REFERENCE_MAX``
characters, A-Z and 0-9 only; the letter S cannot be typed, S saves.

The prompt is drawn over the image area (redrawn every frame by ``OverlayRenderer``), never over
the results panel, and with the same ASCII folding as the rest of the screen.
"""

from edge.caselog import REFERENCE_MAX
from edge.i18n import N_, _
from edge.lazy import require
from edge.overlay import WHITE, YELLOW, Layout, ascii_text

PROMPT_TITLE = N_("Save case - patient reference (optional)")
PROMPT_HELP = N_("0-9 type   ENTER save   BACKSPACE delete   ESC cancel")
PROMPT_FULL = N_("{} characters at most")
CANCELLED = N_("Not saved")
CONFIRM_KEYS = ("ENTER", "SPACE", "S")
TYPED = frozenset("0123456789ABCDEFGHIJKLMNOPQRTUVWXYZ")  # every letter but S, the save key
PANEL_BG = (24, 24, 24)
MIN_TEXT_PX = 16


class Snapshot(object):
    """What S saw on screen: the image, its result and the module, saved when the entry is confirmed."""

    def __init__(self, frame, result, slot, record):
        self.frame = frame
        self.result = result
        self.slot = slot
        self.record = record


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
            self._on_cancel(kiosk)
        elif key == "BACKSPACE":
            self.text, self.full = self.text[:-1], False
        elif key in TYPED:
            self.full = len(self.text) >= REFERENCE_MAX
            if not self.full:
                self.text += key

    def lines(self):
        """The prompt's three lines: title, the reference typed so far (with a cursor), help."""
        help_line = _(PROMPT_FULL).format(REFERENCE_MAX) if self.full else _(PROMPT_HELP)
        return _(PROMPT_TITLE), "> " + self.text + "_", help_line

    def draw(self, canvas):
        """Draw the prompt over the image area of ``canvas`` (the composed screen); returns it."""
        cv2 = require("cv2")
        height, width = canvas.shape[:2]
        area = Layout((width, height)).image
        text_px = max(MIN_TEXT_PX, int(height / 26.0))
        line_h = int(text_px * 2.2)
        box_h = line_h * 3 + text_px
        x, y, w = area.x + area.w // 16, area.y + (area.h - box_h) // 2, area.w - area.w // 8
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + box_h - 1), PANEL_BG, -1)
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + box_h - 1), YELLOW, 2)
        for index, (line, colour, size) in enumerate(zip(self.lines(), (YELLOW, WHITE, WHITE),
                                                         (text_px, int(text_px * 1.5), text_px))):
            _put_line(cv2, canvas, ascii_text(line), x + text_px // 2, y + line_h * (index + 1),
                      w - text_px, size, colour)
        return canvas


def _put_line(cv2, canvas, text, x, baseline, max_w, pixels, colour):
    """One line of text ``pixels`` tall (cap height), shrunk to ``max_w`` but never below MIN_TEXT_PX."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = pixels / float(cv2.getTextSize("Ag", font, 1.0, 1)[0][1])
    minimum = MIN_TEXT_PX / float(cv2.getTextSize("Ag", font, 1.0, 1)[0][1])
    thickness = max(1, int(round(scale * 1.5)))
    while cv2.getTextSize(text, font, scale, thickness)[0][0] > max_w and scale * 0.9 >= minimum:
        scale *= 0.9
        thickness = max(1, int(round(scale * 1.5)))
    cv2.putText(canvas, text, (x, baseline), font, scale, colour, thickness, cv2.LINE_AA)
