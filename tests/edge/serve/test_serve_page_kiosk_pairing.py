"""Pairing from the kiosk screen, end to end: P on the kiosk -> its QR code -> the phone's browser.

A real `medkiosk serve` (subprocess, TLS on loopback) and the kiosk's Pairing on the same state
directory, as the two units share it on the appliance; the kiosk's screen is rendered at 800x480 and
its QR code read back (zbarimg: tests/edge/qr_read.py); Debian's chromium opens the decoded address: the
code is filled in from the address's fragment, the fragment is gone from the address bar, and pairing
succeeds. The kiosk then shows the device as paired. Skipped where chromium, its driver, selenium or
flask is absent.
"""

import time

import numpy as np
import pytest

from edge.config import load_config
from edge.kiosk.pairing import POLL_S, pairing_from_config
from edge.kiosk.views import KioskViews
from edge.overlay import OverlayState, draw_overlay
from tests.edge.qr_read import read_qr
from tests.edge.serve.serve_helpers import server_fixture
from tests.edge.serve.test_serve_page import CHROMEDRIVER, CHROMIUM, browser, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="apt-get install chromium chromium-driver"),
]


server = server_fixture("kiosk-pairing", pairing_key="on")  # key P: off unless switched on


def test_the_kiosks_qr_code_pairs_a_phone(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    pairing = pairing_from_config(load_config(server.config))
    assert pairing.available
    pairing.base_url = "https://{}:{}/".format(server.host, server.port)  # the test server's free port
    assert pairing.toggle() is None
    views = KioskViews(pairing)
    state = OverlayState(module_title="Chest X-ray (adult) - 1/2", size=(800, 480))
    canvas = draw_overlay(np.full((720, 1280, 3), 90, np.uint8), None, state)
    views.draw(canvas, state)
    url = read_qr(canvas)
    assert url == pairing.base_url + "#code=" + pairing.view.code

    browser.get(url)
    wait_for(browser, lambda d: d.find_element(By.ID, "pair-view").is_displayed())
    assert browser.find_element(By.ID, "pair-code").get_attribute("value") == pairing.view.code
    assert browser.execute_script("return window.location.hash") == ""  # the code left the address bar
    browser.find_element(By.ID, "pair-device").send_keys("ward phone")
    browser.find_element(By.ID, "pair-button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "classify-view").is_displayed())

    time.sleep(POLL_S)
    view = pairing.current()
    assert view.status == "paired" and "ward phone" in view.device
    assert "/#code=" not in server.log() and pairing.view.code not in server.log()
