"""What the technician sees on T, and the image's file name: drawn over the image area by the kiosk.

The health worker's screen shows findings, warnings and the keys; backend, provider, precision,
frame rate and timings are for the technician and appear only while T is on (a box over the image).
A downgrade (CPU fallback, another precision) is never hidden: it stays as the loud banner of
edge.overlay on the worker's screen too. Pure: ``draw_technician(canvas, layout, lines, area)``.
"""

from edge.i18n import N_, _
from edge.lazy import require
from edge.overlay import DARK, GREY, WHITE, Rect, min_line_px, text_block


class TechnicianInfo(object):
    """The figures the technician box shows (set by the kiosk each frame)."""

    def __init__(self, backend=None, precision=None, provider=None, fps=None, draw_ms=None, latency_ms=None,
                 module=None, bundle=None, source=None, window=None, pairing=None, notices=None):
        self.backend = backend
        self.precision = precision
        self.provider = provider
        self.fps = fps
        self.draw_ms = draw_ms
        self.latency_ms = latency_ms
        self.module = module
        self.bundle = bundle
        self.source = source
        self.window = window  # edge.window.WindowFit.describe() or its problem
        self.pairing = pairing  # the LAN service's address, or why pairing is off
        self.notices = notices  # the runner's downgrade notices, whole (the red banner may cut them)


def _backend(info):
    text = " ".join(str(p) for p in (info.backend, info.precision) if p)
    return text or _("not loaded yet")


def _screen(info):
    fps = "-" if info.fps is None else "{:.1f}".format(info.fps)
    draw = "-" if info.draw_ms is None else "{:.0f}".format(info.draw_ms)
    return _("{} fps, drawn in {} ms").format(fps, draw)


def _inference(info):
    return None if info.latency_ms is None else "{:.0f} ms".format(info.latency_ms)


# (label, what of TechnicianInfo it shows, rows it may take): in this order (when the box is short,
# the last go first); absent ones are skipped.
LINES = (
    (N_("Backend: {}"), _backend, 1),
    (N_("Provider: {}"), lambda info: info.provider, 1),
    (N_("Notice: {}"), lambda info: info.notices, 2),
    (N_("Screen: {}"), _screen, 1),
    (N_("Inference: {}"), _inference, 1),
    (N_("Window: {}"), lambda info: info.window, 2),
    (N_("Module: {}"), lambda info: info.module, 1),
    (N_("Bundle: {}"), lambda info: info.bundle, 1),
    (N_("Source: {}"), lambda info: info.source, 1),
    (N_("LAN pairing: {}"), lambda info: info.pairing, 2),
)


def technician_lines(info):
    """[(text, rows)] of the box for ``info`` (translated)."""
    lines = []
    for label, value, rows in LINES:
        text = value(info)
        if text:
            lines.append((_(label).format(text), rows))
    return lines


def technician_rect(layout, top, bottom):
    """The box: the image area's width between ``top`` (below any alert) and ``bottom`` (above messages)."""
    pad = layout.pad
    return Rect(layout.image.x + pad, top + pad, layout.image.w - 2 * pad, max(0, bottom - top - 2 * pad))


def _fit_rows(rows, available, row_h):
    """``rows`` that fit ``available`` pixels at ``row_h`` a row: long lines lose their second row
    first, then the last figures go (the title and "T: close" stay)."""
    if sum(n for _t, n, _c, _b in rows) * row_h <= available:
        return rows
    rows = [(text, 1, colour, bold) for text, _n, colour, bold in rows]
    keep = max(2, available // row_h)
    return rows if len(rows) <= keep else rows[:keep - 1] + rows[-1:]


def draw_technician(canvas, layout, info, rect):
    """The technician box in ``rect``: a title, the figures (a long one on two rows), how to close it."""
    cv2 = require("cv2")
    unit = layout.unit
    rows = [(_("Technician"), 1, WHITE, True)]
    rows += [(text, n, WHITE, False) for text, n in technician_lines(info)]
    rows.append((_("T: close"), 1, GREY, False))
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), DARK, -1)
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), GREY, 1)
    inner = Rect(rect.x + layout.pad, rect.y + layout.pad // 2, rect.w - 2 * layout.pad, rect.h - layout.pad)
    row_h = max(min_line_px(bold=True), min(int(unit * 1.0), inner.h // sum(n for _t, n, _c, _b in rows)))
    rows = _fit_rows(rows, inner.h, row_h)
    boxes, y = [], inner.y
    for text, n, colour, bold in rows:
        box = Rect(inner.x, y, inner.w, row_h * n)
        text_block(canvas, text, box, unit * 0.6, colour, bold=bold, max_lines=n)
        boxes.append(box)
        y += box.h
    return boxes


def draw_file_name(canvas, layout, name, rect):
    """The still image's file name in a band at the bottom of the image area (USB images, folders)."""
    cv2 = require("cv2")
    cv2.rectangle(canvas, (rect.x, rect.y), (rect.x + rect.w - 1, rect.y + rect.h - 1), DARK, -1)
    text_block(canvas, _("File: {}").format(name), Rect(rect.x + layout.pad // 2, rect.y, rect.w - layout.pad,
                                                        rect.h), layout.unit * 0.6, WHITE, max_lines=1)
