"""A real X server for the window tests: Xvfb, and a Python whose OpenCV can open windows.

pip's opencv-python-headless (the test venv's) has no GUI, so windows are opened in a subprocess by
the system Python with Debian's python3-opencv (Qt), importing this checkout's ``edge``. Tests that
need them skip, saying what is missing, where Xvfb or a GUI OpenCV is absent.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUI_PYTHONS = (sys.executable, "/usr/bin/python3")
# An OpenCV with a window backend lists one of these as YES in its build information (the "GUI:"
# line alone is not enough: some pip wheels name a backend there yet were built without it).
PROBE = ("import cv2, sys; lines = [l.strip() for l in cv2.getBuildInformation().splitlines()]; "
         "backends = ('QT:', 'GTK+:', 'GTK+ 2.x:', 'GTK+ 3.x:', 'Win32 UI:', 'Cocoa:'); "
         "sys.exit(0 if any(l.startswith(backends) and 'YES' in l for l in lines) else 1)")


def gui_python():
    """A Python interpreter whose OpenCV has a GUI backend, or None."""
    for python in GUI_PYTHONS:
        if python and os.path.isfile(python):
            probe = subprocess.run([python, "-c", PROBE], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            if probe.returncode == 0:
                return python
    return None


class Xvfb(object):
    """An Xvfb server of one screen size on a free display number (``-displayfd``)."""

    def __init__(self, width, height):
        self.size = (width, height)
        self.process = None
        self.display = None

    def start(self):
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "{}x{}x24".format(*self.size), "-nolisten",
             "tcp", "-noreset"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.stop()
            raise RuntimeError("Xvfb did not start")
        self.display = ":" + number
        return self

    def environ(self, **extra):
        environ = dict(os.environ, DISPLAY=self.display, PYTHONPATH=ROOT, QT_QPA_PLATFORM="xcb",
                       XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
        environ.update(extra)
        return environ

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def need_xvfb():
    """Skip (with the reason) unless Xvfb and a GUI OpenCV are here; returns that Python."""
    if shutil.which("Xvfb") is None:
        pytest.skip("needs X: Xvfb is not installed (apt-get install xvfb)")
    python = gui_python()
    if python is None:
        pytest.skip("needs X: no OpenCV with a GUI backend here (apt-get install python3-opencv)")
    return python
