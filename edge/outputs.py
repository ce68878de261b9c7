"""Where composed screens go, named by URI: ``display://0``, ``file://out.mp4``, ``file://dir/``, ``null://``.

The display is an OpenCV window, fullscreen. OpenCV cannot hide the mouse cursor: the kiosk's X
session does it (``unclutter -idle 0`` or ``xsetroot -cursor blank.xbm blank.xbm``; see
systemd/ and jetson_setup.sh). Keys come from the display (cv2.waitKey) or, for tests and
demos, from a scripted list (``KeyScript``).
"""

import os

from edge.errors import ConfigError, DisplayError, MissingDependencyError
from edge.lazy import require

WINDOW_NAME = "medkiosk"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")
# OpenCV key codes -> the kiosk's key names (USB keyboards and numeric keypads). ENTER acts as SPACE
# in the kiosk; capture mode's consent screen takes ENTER only (edge/kiosk/capture_mode.py).
KEY_CODES = {32: "SPACE", 13: "ENTER", 10: "ENTER", 27: "ESC", 9: "M", 43: "M", 46: "S", 42: "H", 45: "F"}
KEY_NAMES = ("SPACE", "ENTER", "M", "F", "S", "H", "Q", "ESC", "C", "E", "T", "P")


def key_name(code):
    """An OpenCV key code (cv2.waitKey) -> 'SPACE', 'M', ... or None."""
    if code is None or code < 0:
        return None
    code &= 0xFF
    if code in KEY_CODES:
        return KEY_CODES[code]
    char = chr(code).upper()
    return char if char in KEY_NAMES else None


class KeyScript(object):
    """Scripted key presses, one token per displayed frame: ``"SPACE,S,WAIT3,M"``.

    ``-`` or ``NONE`` is a frame without a key; ``WAITn`` is n such frames.
    """

    def __init__(self, spec):
        self.tokens = []
        for raw in str(spec or "").split(","):
            token = raw.strip().upper()
            if not token:
                continue
            if token in ("-", "NONE"):
                self.tokens.append(None)
            elif token.startswith("WAIT") and token[4:].isdigit():
                self.tokens.extend([None] * int(token[4:]))
            elif token in KEY_NAMES:
                self.tokens.append(token)
            else:
                raise ConfigError("--keys: unknown key {!r}. Fix: use {} or WAITn, comma-separated".format(
                    raw.strip(), ", ".join(KEY_NAMES)))
        self._next = 0

    @property
    def exhausted(self):
        return self._next >= len(self.tokens)

    def next_key(self):
        if self.exhausted:
            return None
        token = self.tokens[self._next]
        self._next += 1
        return token


class Sink(object):
    """An output: ``write(canvas)``, ``poll_key()`` -> key name or None, context manager."""

    uri = ""
    interactive = False

    def open(self):
        return self

    def write(self, canvas):
        raise NotImplementedError

    def poll_key(self, delay_ms=1):
        return None

    def close(self):
        pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


class NullSink(Sink):
    """Discards frames (benchmarks, headless runs that only print results)."""

    uri = "null://"

    def __init__(self):
        self.frames = 0

    def write(self, canvas):
        self.frames += 1


class ImageDirSink(Sink):
    """Writes each screen as ``frame_000001.png`` into a folder."""

    def __init__(self, path):
        self.path = str(path)
        self.uri = "file://" + self.path
        self.frames = 0

    def open(self):
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--output {}: cannot create the folder ({}). Fix: choose a writable "
                              "folder".format(
                self.uri, exc.strerror)) from exc
        return self

    def write(self, canvas):
        self.frames += 1
        path = os.path.join(self.path, "frame_{:06d}.png".format(self.frames))
        if not require("cv2").imwrite(path, canvas):
            raise ConfigError("--output {}: could not write {}. Fix: check free space and permissions".format(
                self.uri, path))


class VideoSink(Sink):
    """Writes the annotated screens to a video file (mp4v / MJPG)."""

    def __init__(self, path, fps=15.0):
        self.path = str(path)
        self.uri = "file://" + self.path
        self.fps = float(fps)
        self.frames = 0
        self._writer = None

    def write(self, canvas):
        cv2 = require("cv2")
        if self._writer is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            codec = "MJPG" if self.path.lower().endswith(".avi") else "mp4v"
            height, width = canvas.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*codec)
            self._writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                self._writer = None
                raise ConfigError("--output {}: OpenCV cannot write this video. Fix: use a .avi file or an "
                                  "image folder (file://dir/)".format(self.uri))
        self._writer.write(canvas)
        self.frames += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class DisplaySink(Sink):
    """A fullscreen OpenCV window on the HDMI screen; keys from cv2.waitKey.

    Fullscreen is checked, not trusted: after the first frame the window's real size is compared
    with the screen's and fixed (edge.window); ``fit`` holds what was found and ``window_problem``
    the line to log when the window still does not fill the screen.
    """

    interactive = True

    def __init__(self, screen="0", fullscreen=True, environ=None):
        self.screen = screen
        self.uri = "display://{}".format(screen)
        self.fullscreen = fullscreen
        self.environ = os.environ if environ is None else environ
        self.frames = 0
        self._open = False
        self.fit = None
        self.window_problem = None

    def open(self):
        if not self.environ.get("DISPLAY") and not self.environ.get("WAYLAND_DISPLAY"):
            raise ConfigError("--output {}: no display (DISPLAY is not set). Fix: run inside the kiosk's X "
                              "session (DISPLAY=:0), or use --output null:// or file://dir/ "
                              "headless".format(self.uri))
        cv2 = require("cv2")
        try:
            # GUI_NORMAL: no toolbar or status bar (OpenCV's Qt build), only the image; FREERATIO: the
            # image fills the window even when [display] is not the screen's size (selftest warns).
            cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL | cv2.WINDOW_FREERATIO)
            if self.fullscreen:
                cv2.setWindowProperty(WINDOW_NAME, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        except cv2.error as exc:
            raise MissingDependencyError("--output {}: this OpenCV cannot open windows ({}). Fix: on a "
                                         "Jetson use "
                                         "JetPack's OpenCV (apt: nvidia-opencv), not pip's "
                                         "opencv-python-headless"
                                         .format(self.uri, str(exc).strip().splitlines()[-1])) from exc
        self._open = True
        return self

    def write(self, canvas):
        cv2 = require("cv2")
        cv2.imshow(WINDOW_NAME, canvas)
        if self.fullscreen and self.frames == 0:
            self._fill_screen(cv2, canvas)
        self.frames += 1

    def _fill_screen(self, cv2, canvas):
        from edge.window import fit_window, screen_size

        try:
            screen = screen_size(self.environ)
        except DisplayError as exc:
            self.window_problem = str(exc)
            return
        self.fit = fit_window(cv2, WINDOW_NAME, screen, lambda: cv2.imshow(WINDOW_NAME, canvas))
        self.window_problem = self.fit.problem()

    def poll_key(self, delay_ms=1):
        return key_name(require("cv2").waitKey(max(1, int(delay_ms))))

    def close(self):
        if self._open:
            require("cv2").destroyWindow(WINDOW_NAME)
            self._open = False


def _open_display(rest, options):
    return DisplaySink(rest or "0", fullscreen=options.get("fullscreen", True))


def _open_file(rest, options):
    if not rest:
        raise ConfigError("--output file:// needs a path. Fix: file://out.mp4 or file://frames/")
    if os.path.splitext(rest)[1].lower() in VIDEO_EXTENSIONS:
        return VideoSink(rest, fps=options.get("fps") or 15.0)
    return ImageDirSink(rest)


def _open_null(rest, options):
    return NullSink()


# scheme -> opener(rest, options) returning an unopened Sink
SINKS = {"display": _open_display, "file": _open_file, "null": _open_null}


def open_output(uri, **options):
    """Make the Sink named by ``uri`` (not yet opened). Options: fps (video), fullscreen (display)."""
    uri = str(uri).strip()
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    scheme = scheme.lower()
    if scheme not in SINKS:
        raise ConfigError("--output {}: unknown output {!r}. Fix: use display://0, file://out.mp4, "
                          "file://dir/ "
                          "or null://".format(uri, scheme))
    return SINKS[scheme](rest, options)
