"""Printing for the CLIs that survives the Jetson's consoles.

Python 3.6 (JetPack 4.6) under LANG=C opens stdout as ASCII, where "\u2014" or "\u2026" would raise
UnicodeEncodeError in the middle of a result. ``echo`` writes what the stream can encode and
substitutes plain ASCII for the rest.
"""

import os
import sys

ASCII_FALLBACK = {"\u2014": "-", "\u2013": "-", "\u2026": "...", "\u00b1": "+/-", "\u2265": ">=",
                  "\u2264": "<="}


def encodable(text, stream):
    """``text`` made writable to ``stream`` (ASCII substitutes, then '?' for anything left)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        for char, plain in ASCII_FALLBACK.items():
            text = text.replace(char, plain)
        try:
            return text.encode(encoding, "replace").decode(encoding)
        except LookupError:
            return text.encode("ascii", "replace").decode("ascii")


def printable(text):
    """``text`` (a file name, usually) with every control or non-printable character escaped.

    A file named ``"x.png\\nmedkiosk: all images verified"`` must not start a second log line: newlines,
    carriage returns, escape sequences, bidi overrides and undecodable bytes become ``\\n``-style
    escapes (as Python's repr writes them); printable characters, spaces included, are kept.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else _escape(char) for char in text)


def _escape(char):
    code = ord(char)
    if char in "\n\r\t":
        return repr(char)[1:-1]
    if code < 0x100:
        return "\\x{:02x}".format(code)
    if code < 0x10000:
        return "\\u{:04x}".format(code)
    return "\\U{:08x}".format(code)


def quiet_opencv():
    """Silence OpenCV's own stderr warnings (e.g. "PNG input buffer is incomplete"): medkiosk reports
    the problem itself, on one line. Call before the first ``import cv2``; best effort afterwards."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2 = sys.modules.get("cv2")
    utils_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if utils_logging is not None and hasattr(utils_logging, "setLogLevel"):
        utils_logging.setLogLevel(utils_logging.LOG_LEVEL_ERROR)


def echo(text="", stream=None):
    """Print one line (to stdout by default)."""
    stream = stream or sys.stdout
    stream.write(encodable(text, stream) + "\n")


def warn(text):
    """Print a one-line note to stderr."""
    echo("medkiosk: " + text, sys.stderr)
