"""The kiosk window fills the screen: measure the X screen, check the real window, fix it.

On the appliance's bare X server (no window manager) OpenCV's "fullscreen" request is a window
manager hint that nobody honours: OpenCV's Qt build then shows a 400x300 window in a corner. So
the kiosk does not trust the request: it reads the screen's size from the X server (``xrandr``, or
``xdpyinfo``), reads its own window's real image area (``cv2.getWindowImageRect``) and, when they
differ, resizes the window to the screen and moves it to (0, 0), a few times, checking after each.
Without a window manager nothing overrides that; with one that honours fullscreen the window is
already right and nothing is done. ``WindowFit`` says what was found and whether it fills.
"""

import os
import re
import subprocess

from edge.errors import DisplayError
from edge.i18n import _

FIT_ATTEMPTS = 4
SETTLE_MS = 30  # event-loop time (cv2.waitKey) for the X server to apply a resize or move
PROBE_TIMEOUT_S = 5.0


def _parse_xrandr(text):
    match = re.search(r"current\s+(\d+)\s*x\s*(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _parse_xdpyinfo(text):
    match = re.search(r"dimensions:\s+(\d+)x(\d+)\s+pixels", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


# (tool, arguments, parser of its output, the package that has it): asked in this order.
SCREEN_PROBES = (
    ("xrandr", ["--current"], _parse_xrandr, "x11-xserver-utils"),
    ("xdpyinfo", [], _parse_xdpyinfo, "x11-utils"),
)


def _probe(tool, arguments, package, environ):
    """The tool's output, or (None, why) when it is absent, fails or hangs."""
    try:
        # stdout/stderr PIPE and universal_newlines: capture_output and text are Python 3.7+.
        done = subprocess.run([tool] + arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: UP022
                              env=environ, timeout=PROBE_TIMEOUT_S, universal_newlines=True)  # noqa: UP021
    except OSError:
        return None, _("{} is not installed (apt-get install {})").format(tool, package)
    except subprocess.TimeoutExpired:
        return None, _("{} did not answer in {:.0f} s").format(tool, PROBE_TIMEOUT_S)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [_("exit status {}").format(done.returncode)])[-1]
        return None, "{}: {}".format(tool, last)
    return done.stdout, None


def screen_size(environ=None):
    """(width, height) of the X screen named by DISPLAY; DisplayError naming the fix when unknown."""
    environ = dict(os.environ if environ is None else environ)
    display = environ.get("DISPLAY")
    if not display:
        raise DisplayError(_("the screen size cannot be read: DISPLAY is not set. Fix: run inside the "
                             "kiosk's X session (DISPLAY=:0 XAUTHORITY=/run/medkiosk-x/Xauthority)"))
    problems = []
    for tool, arguments, parse, package in SCREEN_PROBES:
        output, problem = _probe(tool, arguments, package, environ)
        size = parse(output) if output is not None else None
        if size is not None:
            return size
        problems.append(problem or _("{} printed no screen size").format(tool))
    raise DisplayError(_("the size of screen {} cannot be read ({}). Fix: check that the X server is up "
                         "(systemctl status medkiosk-display) and that xrandr or xdpyinfo is "
                         "installed").format(display, "; ".join(problems)))


class WindowFit(object):
    """The screen's size, the window's image area (x, y, w, h) after fitting, and how many fixes it took."""

    def __init__(self, screen, rect, fixes):
        self.screen = tuple(screen)
        self.rect = tuple(int(v) for v in rect)
        self.fixes = fixes

    @property
    def fills(self):
        return fills_screen(self.rect, self.screen)

    def describe(self):
        x, y, w, h = self.rect
        return _("window {}x{} at ({}, {}) on a {}x{} screen").format(w, h, x, y, *self.screen)

    def summary(self):
        """Short, for the technician box: "fills the 800x480 screen" or what it is instead."""
        if self.fills:
            return _("fills the {}x{} screen").format(*self.screen)
        return _("NOT FILLING: {}").format(self.describe())

    def problem(self):
        """None when the window fills the screen, else the line the journal and selftest print."""
        if self.fills:
            return None
        return _("the kiosk window does not fill the screen: {} after {} resize attempts. Fix: make sure "
                 "nothing else manages windows on this display (no desktop: jetson_setup.sh turns gdm3 off; "
                 "`xprop -root _NET_SUPPORTING_WM_CHECK` finds none), that OpenCV is JetPack's (selftest: "
                 "Libraries), then restart the kiosk").format(self.describe(), self.fixes)


def fills_screen(rect, screen):
    """True when the image area (x, y, w, h) covers the whole screen (width, height)."""
    x, y, w, h = rect
    return x <= 0 and y <= 0 and x + w >= screen[0] and y + h >= screen[1]


def fit_window(cv2, name, screen, redraw, attempts=FIT_ATTEMPTS):
    """Make window ``name`` cover ``screen`` (width, height); returns a WindowFit (check ``fills``).

    ``redraw()`` shows the current canvas again (cv2.imshow), so the window has content at its
    new size; cv2.waitKey runs the GUI's event loop, which applies the change.
    """
    width, height = int(screen[0]), int(screen[1])
    cv2.waitKey(SETTLE_MS)
    rect = cv2.getWindowImageRect(name)
    fixes = 0
    while not fills_screen(rect, screen) and fixes < attempts:
        fixes += 1
        cv2.resizeWindow(name, width, height)
        cv2.moveWindow(name, 0, 0)
        cv2.setWindowProperty(name, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        redraw()
        cv2.waitKey(SETTLE_MS * fixes)
        rect = cv2.getWindowImageRect(name)
    return WindowFit(screen, rect, fixes)
