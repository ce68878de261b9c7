"""The kiosk's screen end to end at 800x480: technician details only on T, the USB image's file name,
the module's place in the list, and the pairing panel on P (real bundle on ONNX Runtime, real loop).

The live camera is the fake of the other kiosk tests (no camera on CI). Every text the screen draws
is recorded per frame (the text engine's draw passed through, tests/edge/test_overlay_800x480.TextSpy) and
the written screens are read back (the QR code with OpenCV's detector).
"""

import pytest

from edge import text as text_engine
from edge.kiosk import ModuleSlot
from edge.kiosk.pairing import Pairing
from edge.outputs import NullSink
from edge.serve.auth import DeviceStore
from edge.sources import open_source
from tests.edge.kiosk.kiosk_helpers import fake_camera, run_kiosk
from tests.edge.qr_read import read_qr
from tests.edge.test_overlay_800x480 import TextSpy

BASE_URL = "https://192.168.4.1:8443/"


class ScreenSink(NullSink):
    """Keeps each screen and the texts drawn on it."""

    def __init__(self, spy):
        super().__init__()
        self.spy = spy
        self.screens = []
        self._mark = 0

    def write(self, canvas):
        super().write(canvas)
        self.screens.append((canvas.copy(), [text for text, _box, _cap in self.spy.drawn[self._mark:]]))
        self._mark = len(self.spy.drawn)


@pytest.fixture
def spy(monkeypatch):
    spy = TextSpy(text_engine.engine_for("en"), "en")
    monkeypatch.setattr(text_engine, "use", lambda language: spy)
    return spy


def _joined(texts):
    return " | ".join(texts)


def test_technician_key_file_name_and_module_count(tmp_path, slot, synth_images, two_class_folder, spy):
    pytest.importorskip("onnxruntime", reason="the technician box shows the runner ONNX Runtime loads")
    source, _factory = fake_camera(synth_images, period=0.02)
    absent = ModuleSlot("skin", problem="No model bundle for 'skin'")
    sink = ScreenSink(spy)
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot, absent], max_frames=14, sink=sink,
                                       keys="WAIT3,F,WAIT2,T,WAIT2,T,WAIT2,M,WAIT1",
                                       importer_factory=lambda: open_source(str(two_class_folder) + "/"))
    texts = [t for _canvas, t in sink.screens]
    assert len(texts) == 14
    # the module line says which of how many (the panel is redrawn only when it changes); M: the next
    assert "1/2" in _joined(texts[0]) and "2/2" not in _joined(sum(texts[:12], []))
    assert "skin - 2/2" in _joined(texts[13])
    # before T: no backend, provider or fps anywhere on the worker's screen
    before = _joined(sum(texts[:7], []))
    assert "onnxruntime" not in before and "CPUExecutionProvider" not in before and "fps" not in before
    # F froze a.png from the USB stick: its name stays on screen (the message goes away, the name not)
    assert kiosk.freeze.name == "a.png"
    assert all(any(t == "File: a.png" for t in frame) for frame in texts[5:])
    # T on: the technician box with what the runner really is; T again: gone
    on = _joined(texts[7])
    assert "Technician" in on and "Backend: onnxruntime" in on and "Provider: CPUExecutionProvider" in on
    assert "Screen: " in on and "fps" in on and "Module: synth-test" in on and "T: close" in on
    assert "Technician" not in _joined(texts[11])


def test_pairing_key_shows_a_scannable_code_and_closes(tmp_path, slot, two_class_folder, spy):
    store = DeviceStore(str(tmp_path / "state"))
    sink = ScreenSink(spy)
    kiosk, _lines, _frames = run_kiosk(tmp_path, open_source(str(two_class_folder) + "/"), [slot],
                                       keys="WAIT2,P,WAIT2,P,WAIT1", max_frames=7, sink=sink,
                                       pairing=Pairing(store, BASE_URL))
    decoded = [read_qr(canvas) for canvas, _texts in sink.screens]
    shown = [text for text in decoded if text]
    assert len(shown) == 3 and len(set(shown)) == 1  # P's frame and the two after it
    code = shown[0].split("#code=")[1]
    assert shown[0] == BASE_URL + "#code=" + code
    assert "{} {}".format(code[:3], code[3:]) in sink.screens[3][1]
    assert decoded[-1] == "" and kiosk.views.pairing.view is None  # P again: closed
    assert store.code_status(code) == "ended"  # and the code voided


def test_pairing_key_when_the_service_is_off(tmp_path, slot, two_class_folder, spy):
    sink = ScreenSink(spy)
    kiosk, _lines, _frames = run_kiosk(tmp_path, open_source(str(two_class_folder) + "/"), [slot],
                                       keys="P,WAIT1", max_frames=3, sink=sink)
    assert "LAN service is off" in kiosk.messages.last and "Fix" in kiosk.messages.last
    assert kiosk.views.pairing.view is None
