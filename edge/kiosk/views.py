"""What the kiosk draws over the composed screen, on the image area only: the still image's file
name, the technician box (T) and the pairing panel (P).

The findings panel (edge.overlay's cached panel) is never touched; the image area is redrawn
every frame anyway, so these cost nothing when off. Every one keeps clear of the loud banners at
the top of the image area (CPU fallback, developer mode, FROZEN): a downgrade is never covered.
"""

import time

from edge.kiosk.pairing import Pairing
from edge.overlay import Layout, Rect, banners_bottom
from edge.pairing_view import draw_pairing
from edge.technician_view import TechnicianInfo, draw_file_name, draw_technician, technician_rect


class KioskViews(object):
    """The technician switch, the pairing controller, and drawing them with the file name."""

    def __init__(self, pairing=None, clock=time.time):
        self.technician = False
        self.pairing = pairing if pairing is not None else Pairing()
        self.clock = clock
        self.drawn = {}  # what was drawn last: "file", "technician", "pairing" -> its rect(s), for tests
        self._panel = None  # (key, pixels, parts): the pairing panel, redrawn when what it says changes

    def toggle_technician(self):
        self.technician = not self.technician

    def draw(self, canvas, state, name=None, info=None):
        """Draw over ``canvas`` (composed for OverlayState ``state``); ``info``: a TechnicianInfo."""
        layout = Layout(state.size)
        top = banners_bottom(layout, state)
        self.drawn = {}
        view = self.pairing.current()
        if view is not None:
            area = Rect(layout.image.x, top, layout.image.w, layout.image.h - top)
            self.drawn["pairing"] = self._draw_pairing(canvas, layout, area, view)
            return
        if name:
            draw_file_name(canvas, layout, name, layout.tech)
            self.drawn["file"] = layout.tech
        if self.technician:
            bottom = layout.message.y if state.message else (layout.tech.y if name else layout.image.h)
            rect = technician_rect(layout, top, bottom)
            self.drawn["technician"] = draw_technician(canvas, layout, info or TechnicianInfo(), rect)


    def _draw_pairing(self, canvas, layout, area, view):
        """The pairing panel, drawn once a second at most (its text is most of a frame's drawing time)."""
        now = self.clock()
        key = (view.code, view.status, view.device, view.seconds_left(now), repr(area), layout.unit)
        if self._panel is None or self._panel[0] != key:
            parts = draw_pairing(canvas, _AreaLayout(layout, area), view, now)
            self._panel = (key, area.crop(canvas).copy(), parts)
        else:
            area.crop(canvas)[...] = self._panel[1]
        return self._panel[2]


class _AreaLayout(object):
    """A Layout whose image area is ``area`` (the part below the banners) for the pairing panel."""

    def __init__(self, layout, area):
        self.image = area
        self.unit = layout.unit
        self.pad = layout.pad
