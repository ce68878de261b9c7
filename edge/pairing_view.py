"""The pairing panel on the kiosk screen: a QR code and the short code of the LAN service, with its expiry.

Drawn over the image area (the findings panel stays as it is) by the kiosk while a pairing code is
pending (P, edge.kiosk.pairing). The QR code holds the page's address with the code in the URL's
fragment (``https://<bind>:<port>/#code=123456``): a phone's camera opens the page with the code
filled in, and a fragment is never sent to the server, so the code reaches no request line or log.
A code that has expired or been used is not drawn as a QR code at all: only what became of it.
Pure: ``draw_pairing(canvas, layout, view, now)``. QR codes are made with segno (pure Python, 3.6+).
"""

import functools

from edge.i18n import _
from edge.lazy import require
from edge.overlay import AMBER, BAR, DARK, GREY, WHITE, YELLOW, Rect, text_block

QR_ERROR = "m"  # 15% of the code can be lost (glare on the panel) and it still reads
QUIET_MODULES = 4  # the white margin the QR standard asks for, in modules
SEGNO_HINT = "pip install segno==1.6.6 (pure Python; in the device wheelhouse)"


def pairing_url(base_url, code):
    """The page's address with the code in its fragment: ``https://192.168.4.1:8443/#code=123456``."""
    return "{}#code={}".format(base_url if base_url.endswith("/") else base_url + "/", code)


@functools.lru_cache(maxsize=4)
def qr_modules(text):
    """The QR code of ``text`` as a numpy bool array (True: dark module), quiet zone included.

    Cached: segno takes tens of milliseconds (pure Python), and the panel is drawn every frame.
    Callers must not modify the array.
    """
    np = require("numpy")
    segno = require("segno", SEGNO_HINT)
    matrix = np.array([list(row) for row in segno.make(text, error=QR_ERROR, micro=False).matrix], dtype=bool)
    return np.pad(matrix, QUIET_MODULES, mode="constant", constant_values=False)


@functools.lru_cache(maxsize=4)
def qr_image(text, max_px):
    """A BGR uint8 image of the QR code of ``text``, whole pixels per module, at most ``max_px`` square
    (cached like qr_modules; callers copy from it, never into it)."""
    np = require("numpy")
    modules = qr_modules(text)
    scale = max(1, int(max_px) // modules.shape[0])
    image = np.where(modules, 0, 255).astype(np.uint8)
    image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    return np.dstack([image] * 3)


class PairingView(object):
    """What the pairing panel shows: the code, the page's address, when it expires and what became of it.

    ``status``: "active", "expired", "ended" (used, voided or replaced) or "paired" (``device``).
    """

    def __init__(self, code, base_url, expires, status="active", device=None):
        self.code = code
        self.base_url = base_url
        self.expires = expires
        self.status = status
        self.device = device

    @property
    def url(self):
        return pairing_url(self.base_url, self.code)

    def seconds_left(self, now):
        return max(0, int(self.expires - now))

    def spaced_code(self):
        """``123 456``: read out and typed in two halves."""
        half = len(self.code) // 2
        return "{} {}".format(self.code[:half], self.code[half:])


def _status_line(view, now):
    """(text, colour) of the line under the code."""
    if view.status == "active":
        left = view.seconds_left(now)
        return _("Valid for {}:{:02d} - one device").format(left // 60, left % 60), YELLOW
    if view.status == "paired":
        return _("Paired: {}").format(view.device or _("a device")), BAR
    if view.status == "expired":
        return _("Code expired - press P for a new one"), AMBER
    return _("Code no longer valid - press P for a new one"), AMBER


class PairingLayout(object):
    """Where the parts of the pairing panel go inside ``area`` (the image area of the screen)."""

    def __init__(self, area, unit, pad, modules):
        self.area = area
        y = area.y + pad
        self.title = Rect(area.x + pad, y, area.w - 2 * pad, int(unit * 1.3))
        qr_max = int(min(area.w - 2 * pad, area.h * 0.52))
        side = qr_max - qr_max % modules
        self.qr = Rect(area.x + (area.w - side) // 2, self.title.y + self.title.h + pad // 2, side, side)
        self.code = Rect(self.title.x, self.qr.y + self.qr.h + pad // 2, self.title.w, int(unit * 2.0))
        self.url = Rect(self.title.x, self.code.y + self.code.h, self.title.w, int(unit * 1.1))
        self.status = Rect(self.title.x, self.url.y + self.url.h, self.title.w, int(unit * 1.1))
        self.hint = Rect(self.title.x, area.y + area.h - pad - int(unit * 1.0), self.title.w, int(unit * 1.0))

    def rects(self):
        return [self.title, self.qr, self.code, self.url, self.status, self.hint]


def draw_pairing(canvas, layout, view, now):
    """Draw the pairing panel for ``view`` over the image area of ``canvas`` (an edge.overlay.Layout)."""
    cv2 = require("cv2")
    np = require("numpy")
    area = layout.image
    unit = layout.unit
    cv2.rectangle(canvas, (area.x, area.y), (area.x + area.w - 1, area.y + area.h - 1), DARK, -1)
    modules = qr_modules(view.url).shape[0]
    parts = PairingLayout(area, unit, layout.pad, modules)
    text_block(canvas, _("Pair a phone or laptop"), parts.title, unit * 0.8, WHITE, bold=True, max_lines=1,
               centre=True)
    qr = parts.qr
    if view.status == "active":
        image = qr_image(view.url, qr.w)
        np.copyto(canvas[qr.y:qr.y + image.shape[0], qr.x:qr.x + image.shape[1]], image)
        text_block(canvas, view.spaced_code(), parts.code, unit * 1.5, WHITE, bold=True, max_lines=1,
                   centre=True)
        text_block(canvas, view.base_url, parts.url, unit * 0.6, GREY, max_lines=1, centre=True)
    else:  # a spent code is never drawn as something to scan
        cv2.rectangle(canvas, (qr.x, qr.y), (qr.x + qr.w - 1, qr.y + qr.h - 1), GREY, 2)
    text, colour = _status_line(view, now)
    text_block(canvas, text, parts.status, unit * 0.65, colour, bold=True, max_lines=1, centre=True)
    text_block(canvas, _("P: close"), parts.hint, unit * 0.6, GREY, max_lines=1, centre=True)
    return parts
