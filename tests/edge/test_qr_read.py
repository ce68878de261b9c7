"""The tests' QR reader (tests/edge/qr_read.py) on the pairing codes OpenCV's detector missed.

Each code here was drawn on the 800x480 kiosk screen by the pairing panel and missed by OpenCV's
QRCodeDetector under one of the OpenCV versions the tests run with (4.1.2, 4.6, 4.14); two of them
failed CI runs. zbarimg must read every one, and read nothing on a screen without a code.
"""

import numpy as np

from edge.pairing_view import pairing_url, qr_image
from tests.edge.qr_read import read_qr

BASE_URL = "https://192.168.4.1:8443/"
OPENCV_MISSED = ("486444", "039635", "612454", "317965", "419195", "337467", "570836", "042322", "588544",
                 "318880", "753863", "179918")


def _screen_with(text):
    canvas = np.full((480, 800, 3), 90, np.uint8)
    qr = qr_image(text, 300)
    canvas[90:90 + qr.shape[0], 60:60 + qr.shape[1]] = qr
    return canvas


def test_zbar_reads_every_code_opencv_missed():
    urls = [pairing_url(BASE_URL, code) for code in OPENCV_MISSED]
    assert [read_qr(_screen_with(url)) for url in urls] == urls


def test_a_screen_without_a_code_reads_as_nothing():
    assert read_qr(np.full((480, 800, 3), 90, np.uint8)) == ""
