"""P on the kiosk: a pairing code of the LAN service with its QR code (edge.kiosk.pairing, edge.pairing_view).

Real: the service's DeviceStore in a temporary state directory (the files the service reads), segno's
QR code drawn on an 800x480 kiosk screen, read back by zbarimg (tests/edge/qr_read.py says why not by
OpenCV's detector; skipped where zbar-tools is absent), and the code redeemed through the store as the
service does.
Time is the store's and the panel's injectable clock (expiry without waiting five minutes).
"""

import os
import re
import stat

import numpy as np
import pytest

from edge.config import load_config
from edge.errors import MedkioskError
from edge.kiosk.pairing import LINGER_S, POLL_S, Pairing, pairing_from_config
from edge.kiosk.views import KioskViews
from edge.overlay import Layout, OverlayState, draw_overlay
from edge.pairing_view import PairingView, pairing_url, qr_image
from edge.serve.auth import CODE_TRIES, PAIRING_FILE, SERVE_DIR, DeviceStore
from edge.sources import open_source
from tests.edge.kiosk.kiosk_helpers import run_kiosk
from tests.edge.kiosk.test_kiosk_screen import ScreenSink, spy  # noqa: F401
from tests.edge.qr_read import read_qr

SIZE = (800, 480)
BASE_URL = "https://192.168.4.1:8443/"


class Clock(object):
    def __init__(self, now=1000000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return DeviceStore(str(tmp_path / "state"), pair_seconds=300, clock=clock)


def _screen(views, state=None):
    state = state or OverlayState(module_title="Chest X-ray (adult) - 1/2", size=SIZE)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    canvas = draw_overlay(frame, None, state)
    views.draw(canvas, state)
    return canvas


def test_p_shows_a_code_whose_qr_reads_back_and_that_the_service_accepts(store, clock):
    pairing = Pairing(store, BASE_URL, clock=clock)
    views = KioskViews(pairing, clock=clock)
    assert pairing.toggle() is None
    view = pairing.current()
    assert re.match(r"^\d{6}$", view.code) and view.status == "active"
    canvas = _screen(views)
    url = BASE_URL + "#code=" + view.code
    assert read_qr(canvas) == url
    qr = views.drawn["pairing"].qr
    assert qr.x >= 0 and qr.x + qr.w <= Layout(SIZE).image.w  # on the image area, not over the findings
    # the service redeems the very code on screen (same store files), once
    token = store.redeem(url.split("#code=")[1], "Clinic phone")
    assert store.authenticate(token)["device"] == "Clinic phone"
    clock.now += POLL_S
    assert pairing.current().status == "paired" and pairing.current().device == "Clinic phone"
    paired = _screen(views)
    assert read_qr(paired) == ""  # a used code is never drawn as something to scan
    clock.now += LINGER_S
    assert pairing.current() is None  # the outcome lingers, then the panel closes


def test_only_the_hash_is_stored_privately(store, tmp_path):
    pairing = Pairing(store, BASE_URL)
    pairing.toggle()
    folder = os.path.join(str(tmp_path / "state"), SERVE_DIR)
    path = os.path.join(folder, PAIRING_FILE)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        assert pairing.view.code not in handle.read()


def test_the_code_expires_on_screen_and_in_the_store(store, clock):
    pairing = Pairing(store, BASE_URL, clock=clock)
    pairing.toggle()
    code = pairing.view.code
    clock.now += 299
    assert pairing.current().status == "active"
    clock.now += 2  # 301 s: past pair_seconds
    assert pairing.current().status == "expired"
    canvas = _screen(KioskViews(pairing, clock=clock))
    assert read_qr(canvas) == ""
    with pytest.raises(MedkioskError, match="expired"):
        store.redeem(code, "late phone")


def test_p_again_closes_and_voids_the_code(store, clock):
    pairing = Pairing(store, BASE_URL, clock=clock)
    pairing.toggle()
    code = pairing.view.code
    assert pairing.toggle() is None and pairing.current() is None
    with pytest.raises(MedkioskError, match="no pairing code is active"):
        store.redeem(code, "phone")


def test_a_new_code_voids_the_old_one_and_wrong_tries_lock_it(store, clock):
    pairing = Pairing(store, BASE_URL, clock=clock)
    pairing.toggle()
    first = pairing.view.code
    pairing.toggle()  # close
    pairing.toggle()  # a fresh code
    assert store.code_status(first) == "ended"
    for _ in range(CODE_TRIES):
        with pytest.raises(MedkioskError, match="wrong pairing code"):
            store.redeem("x", "guesser")
    clock.now += POLL_S
    view = pairing.current()
    assert view.status == "ended" and view.device is None  # locked out, nobody paired


def test_pairing_refusals(tmp_path):
    off = Pairing(problem="Pairing: the LAN service is off. Fix: [serve] enabled = yes")
    assert "Fix" in off.toggle() and off.current() is None

    class BrokenStore(object):
        def new_code(self):
            raise MedkioskError("pairing store cannot be written. Fix: check the state directory")

    assert "Pairing failed: pairing store cannot be written" in Pairing(BrokenStore(), BASE_URL).toggle()


def _config(tmp_path, serve):
    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\nstate_dir = {}\n[serve]\n{}\n".format(tmp_path / "state", serve))
    return load_config(str(path))


def test_pairing_from_config(tmp_path):
    assert "enabled = yes" in pairing_from_config(_config(tmp_path, "enabled = no\npairing_key = on")).problem
    bad = pairing_from_config(_config(tmp_path, "enabled = yes\nbind = 0.0.0.0\npairing_key = on"))
    assert not bad.available and "every interface" in bad.problem
    good = pairing_from_config(_config(tmp_path, "enabled = yes\nbind = 192.168.4.1\nport = 8443\n"
                                                 "pairing_key = on"))
    assert good.available and good.base_url == BASE_URL and not good.key_off


SERVE_ON = "enabled = yes\nbind = 192.168.4.1\nport = 8443\n"


@pytest.mark.parametrize("line, key_off", [("", True), ("pairing_key = off", True),
                                           ("pairing_key = no", True), ("pairing_key = on", False),
                                           ("pairing_key = yes", False)])
def test_the_pairing_key_is_off_unless_the_technician_switches_it_on(tmp_path, line, key_off):
    config = _config(tmp_path, SERVE_ON + line)
    assert config.serve["pairing_key"] is (not key_off)
    pairing = pairing_from_config(config)
    assert pairing.key_off is key_off and pairing.available is (not key_off)
    if key_off:  # with the service off too, the switch is what P names
        assert pairing_from_config(_config(tmp_path, "enabled = no\n" + line)).key_off


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "o n"])
def test_a_bad_pairing_key_value_is_refused_with_its_fix(tmp_path, value):
    with pytest.raises(MedkioskError, match=r"^config \[serve\] pairing_key: '{}' is not yes/no\. Fix: set "
                                            r"pairing_key = yes or no$".format(value)):
        _config(tmp_path, SERVE_ON + "pairing_key = " + value)


def test_p_switched_off_makes_no_code_and_says_so(tmp_path, store):
    pairing = Pairing(store, BASE_URL, key_off=True)
    for _ in range(2):  # P again: the same line, never a panel
        assert pairing.toggle() == "Pairing is switched off (technician)"
        assert pairing.view is None and pairing.current() is None
    assert not pairing.available
    assert pairing.problem == "key P off ([serve] pairing_key = off); on the console: medkiosk serve pair"
    assert not os.path.exists(os.path.join(str(tmp_path / "state"), SERVE_DIR, PAIRING_FILE))


def test_qr_image_and_url():
    assert pairing_url("https://10.0.0.2:8443", "123456") == "https://10.0.0.2:8443/#code=123456"
    image = qr_image("https://10.0.0.2:8443/#code=123456", 200)
    side = image.shape[0]
    assert image.shape == (side, side, 3) and side <= 200 and set(np.unique(image)) == {0, 255}
    assert (image[:4] == 255).all()  # the quiet zone is white
    assert PairingView("123456", BASE_URL, 0).spaced_code() == "123 456"


def test_the_panel_is_redrawn_when_its_countdown_changes_and_reused_in_between(store, clock):
    pairing = Pairing(store, BASE_URL, clock=clock)
    pairing.toggle()
    views = KioskViews(pairing, clock=clock)
    first, again = _screen(views), _screen(views)
    fresh = _screen(KioskViews(pairing, clock=clock))
    assert np.array_equal(first, again) and np.array_equal(first, fresh)  # reused = drawn anew
    clock.now += 1
    later = _screen(views)
    status = views.drawn["pairing"].status
    assert not np.array_equal(status.crop(first), status.crop(later))  # 4:59 -> 4:58
    assert read_qr(later) == BASE_URL + "#code=" + pairing.view.code


def test_p_switched_off_in_the_kiosk_loop_status_line_box_and_journal(tmp_path, slot, two_class_folder,
                                                                      spy, capsys):  # noqa: F811
    """The real loop with the shipped default (pairing_key off, the service on): P draws no panel and
    stores no code, says one line; T's box says the key is off; the journal names the press."""
    pairing = pairing_from_config(_config(tmp_path, SERVE_ON))
    sink = ScreenSink(spy)
    kiosk, _lines, _frames = run_kiosk(tmp_path, open_source(str(two_class_folder) + "/"), [slot],
                                       keys="WAIT1,P,WAIT1,T,WAIT1", max_frames=6, sink=sink, pairing=pairing)
    journal = capsys.readouterr().err
    texts = [" | ".join(t) for _canvas, t in sink.screens]
    assert kiosk.messages.last == "Pairing is switched off (technician)"
    assert "Pairing is switched off (technician)" in texts[2] and kiosk.views.pairing.view is None
    assert all(read_qr(canvas) == "" for canvas, _t in sink.screens)
    assert "LAN pairing: key P off ([serve] pairing_key = off)" in texts[-1]
    pressed = "medkiosk: pairing: key P pressed while switched off ([serve] pairing_key = off); no code made"
    assert journal.count(pressed) == 1
    assert not os.path.exists(os.path.join(str(tmp_path / "state"), SERVE_DIR, PAIRING_FILE))
