"""The kiosk window fills the screen (edge.window, DisplaySink, selftest's display check).

Real: Xvfb servers of two panel sizes (no window manager, like the appliance's bare X server), the
system Python's Qt OpenCV in a subprocess, xrandr/xdpyinfo, and xwininfo to check the window
independently. The one stand-in: a window that stays 400x300 whatever is asked (what a window
manager that refuses would do; no such X server can be made here), for selftest's FAIL line.
"""

import json
import os
import subprocess

import pytest

from edge.errors import DisplayError
from edge.verify import FAIL, PASS, WARN
from edge.window import WindowFit, fills_screen, fit_window, screen_size
from tests.edge.x11 import ROOT, Xvfb, need_xvfb

pytestmark = pytest.mark.x11

OPEN_WINDOW = """
import json, sys
import numpy as np
from edge.outputs import DisplaySink
sink = DisplaySink("0", fullscreen=True).open()
sink.write(np.full((%(h)d, %(w)d, 3), 90, np.uint8))
sink.poll_key(50)
print(json.dumps({"rect": sink.fit.rect, "screen": sink.fit.screen, "fixes": sink.fit.fixes,
                  "problem": sink.window_problem}), flush=True)
sys.stdin.readline()
sink.close()
"""

SELFTEST_DISPLAY = """
import json
from edge.commands.selftest import display_check
print(json.dumps(display_check(size=(%(w)d, %(h)d)).to_dict()))
"""


@pytest.fixture(params=[(800, 480), (1280, 720)], ids=["7-inch-800x480", "1280x720"])
def xserver(request):
    python = need_xvfb()
    server = Xvfb(*request.param).start()
    server.python = python
    yield server
    server.stop()


def _xwininfo(environ):
    out = subprocess.check_output(["xwininfo", "-name", "medkiosk"], env=environ, timeout=10).decode()
    fields = dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)
    return tuple(int(fields[k].strip()) for k in ("Absolute upper-left X", "Absolute upper-left Y", "Width",
                                                    "Height"))


def test_screen_size_is_read_from_the_x_server(xserver):
    assert screen_size(xserver.environ()) == xserver.size
    # without xrandr on PATH, xdpyinfo answers; with neither, the error names both packages
    bare = os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-such-bin")
    xdpyinfo_only = xserver.environ(PATH=os.path.dirname(subprocess.check_output(
        ["sh", "-c", "command -v xdpyinfo"]).decode().strip()) + os.pathsep + bare)
    if subprocess.run(["sh", "-c", "PATH='{}' command -v xrandr".format(xdpyinfo_only["PATH"])]).returncode:
        assert screen_size(xdpyinfo_only) == xserver.size
    with pytest.raises(DisplayError, match="xrandr is not installed .apt-get install x11-xserver-utils.*"
                                           "xdpyinfo is not installed .apt-get install x11-utils"):
        screen_size(xserver.environ(PATH=bare))


def test_screen_size_refusals():
    with pytest.raises(DisplayError, match="DISPLAY is not set. Fix"):
        screen_size({"PATH": os.environ["PATH"]})
    with pytest.raises(DisplayError, match="size of screen :93 cannot be read .*Fix: check that the X "
                                           "server"):
        screen_size(dict(os.environ, DISPLAY=":93"))


def test_the_kiosk_window_fills_the_bare_x_server(xserver):
    """OpenCV's fullscreen alone gives a small window in a corner here; the sink fixes it."""
    width, height = xserver.size
    environ = xserver.environ()
    child = subprocess.Popen([xserver.python, "-c", OPEN_WINDOW % {"w": width, "h": height}], env=environ,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        found = json.loads(line)
        real = _xwininfo(environ)  # the X server's own view of the window, not OpenCV's
    finally:
        child.stdin.close()
        child.wait(timeout=20)
    assert found["problem"] is None
    assert tuple(found["screen"]) == (width, height)
    assert fills_screen(found["rect"], (width, height)), found
    assert found["fixes"] >= 1  # fullscreen alone did not fill it: the fix was needed and worked
    assert real == (0, 0, width, height)


def test_selftest_display_passes_and_warns_on_a_size_mismatch(xserver):
    width, height = xserver.size
    for size, status, words in (((width, height), PASS, "fills the {}x{} screen".format(width, height)),
                                ((1024, 600), WARN, "Fix: set [display] width = {}".format(width))):
        out = subprocess.check_output([xserver.python, "-c", SELFTEST_DISPLAY % {"w": size[0], "h": size[1]}],
                                      env=xserver.environ(), stderr=subprocess.DEVNULL, timeout=60)
        check = json.loads(out.decode().strip().splitlines()[-1])
        assert check["status"] == status and words in check["detail"], check


def test_the_kiosk_run_journals_a_size_mismatch_and_fills_the_screen(xserver, tmp_path):
    """`medkiosk run` on the screen (no model installed: the loop still draws and checks its window)."""
    width, height = xserver.size
    samples = os.path.join(ROOT, "samples")
    for size, says in (("{}x{}".format(width, height), False), ("1024x600", True)):
        child = subprocess.Popen(
            [xserver.python, "-m", "edge", "run", "--source", samples + "/", "--output", "display://0",
             "--max-frames", "3", "--size", size, "--models", str(tmp_path), "--module", "chest",
             "--no-kiosk", "--state-dir", str(tmp_path / "state")],
            env=xserver.environ(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        err = child.communicate(timeout=120)[1].decode()
        assert child.returncode == 0, err
        assert "3 frames shown" in err and "does not fill the screen" not in err
        mismatch = "the screen is {}x{} but [display] is 1024x600".format(width, height)
        assert (mismatch in err) == says, err


class StuckWindow(object):
    """Stand-in for OpenCV under a window manager that keeps the window at 400x300 (see module doc)."""

    WND_PROP_FULLSCREEN, WINDOW_FULLSCREEN = 0, 1

    def __init__(self):
        self.calls = []

    def waitKey(self, ms):
        return -1

    def getWindowImageRect(self, name):
        return (0, 30, 400, 300)

    def resizeWindow(self, name, w, h):
        self.calls.append(("resize", w, h))

    def moveWindow(self, name, x, y):
        self.calls.append(("move", x, y))

    def setWindowProperty(self, name, prop, value):
        self.calls.append(("fullscreen", value))


def test_a_window_that_cannot_fill_the_screen_is_a_failed_selftest(monkeypatch):
    from edge.commands.selftest import window_check

    stuck = StuckWindow()
    fit = fit_window(stuck, "medkiosk", (800, 480), redraw=lambda: None, attempts=3)
    assert not fit.fills and fit.fixes == 3
    assert stuck.calls.count(("resize", 800, 480)) == 3 and ("move", 0, 0) in stuck.calls

    class Sink(object):
        pass

    sink = Sink()
    sink.fit, sink.window_problem = fit, fit.problem()
    check = window_check(sink, {"DISPLAY": ":0"}, (800, 480))
    assert check.status == FAIL
    assert "window 400x300 at (0, 30) on a 800x480 screen after 3 resize attempts" in check.detail
    assert "Fix: make sure nothing else manages windows on this display" in check.detail


def test_fills_screen_boundaries():
    assert fills_screen((0, 0, 800, 480), (800, 480))
    assert not fills_screen((0, 0, 799, 480), (800, 480))
    assert not fills_screen((0, 1, 800, 480), (800, 480))
    assert not fills_screen((1, 0, 800, 480), (800, 480))
    assert fills_screen((-1, -1, 802, 482), (800, 480))
    assert WindowFit((800, 480), (0, 0, 800, 480), 0).problem() is None
