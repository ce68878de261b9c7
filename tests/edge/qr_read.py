"""Reading a screen's QR code back in the tests as a phone's scanner would: with zbarimg.

OpenCV's QRCodeDetector misses some valid codes outright, depending only on their content. Of random
pairing codes drawn on the kiosk screen it missed 2% under OpenCV 4.1.2 (the JetPack 4.6 set), 1.5% under
4.6 and 0.5% under 4.14, each miss repeatable for that code, while zbarimg read every one of them
(tests/edge/test_qr_read.py keeps such codes). A test that draws a random code and reads it with OpenCV
therefore failed about once in a hundred runs. The tests read with zbarimg (zbar-tools, installed by
.ci/run) and skip where it is absent.
"""

import os
import shutil
import subprocess
import tempfile

import cv2
import pytest

ZBAR_HINT = "zbarimg is not installed (apt-get install zbar-tools): the QR code cannot be read back"
ZBAR_FOUND_NONE = 4  # zbarimg's exit status when the image holds no code it can read


def read_qr(image):
    """The text of the QR code(s) in the BGR ``image``, one per line ('' when none reads)."""
    if shutil.which("zbarimg") is None:
        pytest.skip(ZBAR_HINT)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "screen.png")
        assert cv2.imwrite(path, image)
        out = subprocess.run(["zbarimg", "--quiet", "--raw", path], stdout=subprocess.PIPE,  # noqa: UP022
                             stderr=subprocess.PIPE, timeout=30)  # capture_output is Python 3.7+
    if out.returncode not in (0, ZBAR_FOUND_NONE):
        raise AssertionError("zbarimg failed ({}): {}".format(out.returncode, out.stderr.decode()))
    return out.stdout.decode().strip()
