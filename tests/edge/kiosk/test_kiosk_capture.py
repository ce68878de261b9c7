"""Capture mode through the real kiosk loop: key C, the consent screen, labelled photos, the export.

The camera is the fake V4L2 device of the other kiosk tests (no camera on CI) behind the real V4L2
source, playing real chest X-ray images as camera frames (no skin photos are licensed to this
project). The module is "skin", not installed, as on a shipped unit: no model runs, so these tests
also run on the JetPack 4.6 set without ONNX Runtime.
"""

import glob
import io
import json
import os
import stat
import threading
import time

import cv2
import numpy as np
import pytest

from edge.capture import CONSENT_FILE, CaptureSettings, CaptureStore
from edge.kiosk import Kiosk, ModuleSlot
from edge.kiosk.capture_mode import draw_capture, draw_consent
from edge.outputs import ImageDirSink, KeyScript
from edge.overlay import Layout
from edge.sources import open_source
from edge.usb_export import CommandTrigger, UsbExporter
from tests.conftest import SHARED_DATA
from tests.edge.kiosk.kiosk_helpers import AMBER, BAR, SIZE, frames_in, has_colour
from tests.edge.kiosk.test_kiosk_screen import spy  # noqa: F401
from tests.edge.kiosk_media import CaptureFactory, blurred
from tests.edge.usb_stick import HELPER, Stick, helper_env, loop_mounts_possible

LABELS = ["Acne", "Scabies", "Fungal infection"]
POSSIBLE, WHY = loop_mounts_possible()
needs_stick = pytest.mark.skipif(not POSSIBLE, reason=WHY)
RED = (40, 40, 220)


@pytest.fixture(scope="module")
def camera_frames():
    paths = sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png")))[:4]
    if len(paths) < 4:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return [cv2.resize(cv2.imread(path), (320, 240), interpolation=cv2.INTER_AREA) for path in paths]


def settings_for(tmp_path, **overrides):
    values = {"labels": LABELS, "captured_by": "tech-07", "export_dir": str(tmp_path / "usb"),
              "enabled": True, "min_free_mb": 0}
    values.update(overrides)
    return CaptureSettings(str(tmp_path / "state"), **values)


def run_capture_kiosk(tmp_path, frames, keys, settings, exporter_factory=None, until_stopped=False):
    """The kiosk over a fake camera with ``keys`` scripted; (kiosk, stdout lines, stderr, screens).
    It ends two frames after the last key, or (``until_stopped``) when the test calls kiosk.stop()."""
    factory = CaptureFactory(frames, period=0.01)
    source = open_source("v4l2:///dev/fake", capture_factory=factory, backoff=(0.1,), idle_s=0.02,
                         frame_timeout_s=1.0, max_read_failures=2)
    sink = ImageDirSink(str(tmp_path / "frames"))
    stdout, stderr = io.StringIO(), io.StringIO()
    kiosk = Kiosk(source, sink, [ModuleSlot("skin", problem="Module not installed")], stdout=stdout,
                  stderr=stderr, size=SIZE, keys=KeyScript(keys),
                  max_frames=None if until_stopped else len(KeyScript(keys).tokens) + 2,
                  capture=settings, exporter_factory=exporter_factory)
    with source, sink:
        assert kiosk.run() == 0
    return kiosk, stdout.getvalue().splitlines(), stderr.getvalue(), frames_in(tmp_path / "frames")


def stored(settings):
    return CaptureStore(settings.state_dir, settings.module).open().records()


def subjects(settings):
    root = os.path.join(settings.state_dir, "capture", settings.module)
    return sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))) \
        if os.path.isdir(root) else []  # one folder per person (beside them: the capture index)


def test_consent_refused_stores_nothing_and_space_never_gives_consent(tmp_path, camera_frames):
    settings = settings_for(tmp_path)
    keys = "WAIT1,C,SPACE,SPACE,S,M,ESC,WAIT2"
    kiosk, _out, err, screens = run_capture_kiosk(tmp_path, camera_frames, keys, settings)
    assert subjects(settings) == [] and stored(settings) == []
    assert "consent not given, nothing stored" in err
    assert kiosk.messages.last == "No consent - nothing stored"
    consent = screens[2]
    layout = Layout(SIZE)
    # The consent screen shows no camera image: the dark screen with the statement, ENTER / ESC.
    assert not has_colour(consent, RED, minimum=50) and has_colour(consent, (0, 220, 255), minimum=200)
    assert float(np.abs(consent[:, :layout.image.w].astype(int) - screens[0][:, :layout.image.w]).mean()) > 5
    for later in screens[3:6]:  # SPACE, SPACE, S, M on the consent screen change nothing
        assert np.array_equal(later, consent)


class AfterTheKeys(object):
    """The real root helper, asked only once every scripted key was pressed (ESC last): so ESC always
    comes while the export runs, and the mode must wait for it before it leaves. Once the kiosk says
    the outcome (capture mode left), three more kiosk screens, then the run is stopped."""

    def __init__(self, trigger, kiosk):
        self.trigger = trigger
        self.kiosk = kiosk

    def request(self, line):
        self._wait_for(lambda: self.kiosk.keys.exhausted)
        reply = self.trigger.request(line)
        threading.Thread(target=self._stop_after_leaving, daemon=True).start()
        return reply

    def _stop_after_leaving(self):
        self._wait_for(lambda: (self.kiosk.messages.last or "").startswith("Safe to remove"))
        shown = self.kiosk.frames
        self._wait_for(lambda: self.kiosk.frames >= shown + 3)
        self.kiosk.stop()

    @staticmethod
    def _wait_for(condition, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)


def helper_exporter(tmp_path, mountpoint, gate=False):
    """The kiosk's exporter_factory with the real helper working on the stick at ``mountpoint``."""
    outbox = str(tmp_path / "state" / "usb-outbox")
    trigger = CommandTrigger(HELPER, env=helper_env(mountpoint, outbox, str(tmp_path / "export.lock")))
    return lambda kiosk: UsbExporter(outbox, AfterTheKeys(trigger, kiosk) if gate else trigger)


@needs_stick
def test_photos_labels_counters_and_export_through_the_loop(tmp_path, camera_frames, spy):  # noqa: F811
    """E in capture mode goes through the root helper to the read-only stick, as the kiosk's E does;
    ESC during the export leaves once it is done, with its outcome line."""
    settings = settings_for(tmp_path)
    stick = Stick(tmp_path / "stick")
    try:
        keys = "WAIT1,C,ENTER,SPACE,M,SPACE,WAIT1,SPACE,F,F,SPACE,E,WAIT1,ESC"
        kiosk, out, err, screens = run_capture_kiosk(tmp_path, camera_frames, keys, settings,
                                                     helper_exporter(tmp_path, stick.mountpoint, gate=True),
                                                     until_stopped=True)
        exports = stick.entries()
        read_only = stick.read_only()
    finally:
        stick.close()
    records = stored(settings)
    assert [r["label"] for r in records] == ["Acne", "Scabies", "Scabies", "Fungal infection"]
    assert len({r["subject"] for r in records}) == 1 and len(subjects(settings)) == 1
    for record in records:
        assert record["consent"]["given"] is True and record["captured_by"] == "tech-07"
        assert record["device"] and record["consent"]["recorded_utc"] <= record["captured_utc"]
        photo = cv2.imread(record["path"])
        assert any(np.array_equal(photo, frame) for frame in camera_frames)  # the camera frame, unaltered
    assert sum("capture photo" in line for line in out) == 4
    assert len(exports) == 1 and exports[0].startswith("medkiosk-capture-skin-") and read_only
    assert "capture: USB export: 4 photo(s) to {}".format(exports[0]) in err
    assert "person {} done, 4 photo(s)".format(records[0]["subject"]) in err
    assert kiosk.messages.last == "Safe to remove the USB stick - 4 photo(s) exported to " + exports[0]
    drawn = _drawn(spy)  # the capture screen said the export's states while it ran
    assert "Exporting to the USB stick..." in drawn and "Capture mode closes when the export is done" in drawn
    assert len(CaptureStore(settings.state_dir, settings.module).open().exported()) == 4
    assert os.listdir(str(tmp_path / "state" / "usb-outbox")) == []
    # Capture screens: the red CAPTURE banner over the camera image; the kiosk screen after ESC has none.
    assert has_colour(screens[3], RED, minimum=500) and not has_colour(screens[-1], RED, minimum=500)


def test_the_capture_screen_counts_per_class_and_person(tmp_path, camera_frames):
    settings = settings_for(tmp_path)
    run_capture_kiosk(tmp_path, camera_frames, "C,ENTER,SPACE,SPACE,ESC", settings)
    # a second person: the totals include the first, the (+n) this person's photos only
    keys = "C,ENTER,M,SPACE,C,WAIT1,ENTER,SPACE,ESC"
    _kiosk, _out, err, _screens = run_capture_kiosk(tmp_path / "second", camera_frames, keys, settings)
    counts = CaptureStore(settings.state_dir, settings.module).open().counts()
    assert counts == {"Acne": 2, "Scabies": 2}  # the label chosen stays for the next person
    assert len(subjects(settings)) == 3
    assert err.count("consent given for person") == 2


def test_the_view_has_a_counter_per_class_and_the_quality_warning(tmp_path, camera_frames):
    """The screen from the mode's own view: blurred frames give the amber warning, sharp ones none."""
    sharp = {"title": "Capture: skin", "person": "Person abc123 - 2 photo(s)", "selected": 1, "quality": None,
             "labels": [("Acne", 5, 0), ("Scabies", 7, 2), ("Fungal infection", 0, 0)], "message": None}
    canvas = draw_capture(SIZE, camera_frames[0], sharp)
    warned = draw_capture(SIZE, blurred(camera_frames[0]), dict(sharp, quality="Image quality: blurry"))
    assert has_colour(canvas, BAR, minimum=300) and not has_colour(canvas, AMBER, minimum=300)
    assert has_colour(warned, AMBER, minimum=300)
    assert draw_consent(SIZE).shape == (SIZE[1], SIZE[0], 3)


def test_a_blurred_photo_is_stored_with_its_warning(tmp_path, camera_frames):
    settings = settings_for(tmp_path)
    frames = [blurred(frame) for frame in camera_frames]
    _kiosk, out, _err, screens = run_capture_kiosk(tmp_path, frames, "C,ENTER,SPACE,ESC", settings)
    (record,) = stored(settings)
    assert record["quality"]["ok"] is False and record["quality"]["problems"][0][0] == "blurry"
    assert any("quality Image quality: blurry" in line for line in out)
    assert has_colour(screens[2], AMBER, minimum=300)


def test_capture_mode_off_or_without_a_staff_id_stores_nothing(tmp_path, camera_frames):
    for settings, said in ((settings_for(tmp_path, enabled=False), "Capture mode is off"),
                           (settings_for(tmp_path, captured_by=""), "Capture mode needs a staff id"),
                           (None, "Capture mode is not configured")):
        kiosk, _out, err, _screens = run_capture_kiosk(tmp_path, camera_frames, "C,ENTER,SPACE,WAIT1",
                                                       settings)
        assert kiosk.messages.last == said and "capture mode not started" in err
        assert not os.path.exists(str(tmp_path / "state" / "capture"))


def test_stored_photos_are_private(tmp_path, camera_frames):
    settings = settings_for(tmp_path)
    run_capture_kiosk(tmp_path, camera_frames, "C,ENTER,SPACE,ESC", settings)
    root = os.path.join(settings.state_dir, "capture")
    for folder, _dirs, files in os.walk(root):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600, name
    (subject,) = subjects(settings)
    with open(os.path.join(root, "skin", subject, CONSENT_FILE)) as handle:
        consent = json.load(handle)
    assert consent["given"] is True and consent["captured_by"] == "tech-07" and consent["subject"] == subject


@needs_stick
def test_an_export_that_fails_is_one_journal_line_and_the_mode_goes_on(tmp_path, camera_frames):
    (tmp_path / "usb").mkdir()  # the mount point with no stick on it
    settings = settings_for(tmp_path)
    kiosk, out, err, _screens = run_capture_kiosk(tmp_path, camera_frames, "C,ENTER,SPACE,E,WAIT1,SPACE,ESC",
                                                  settings, helper_exporter(tmp_path, str(tmp_path / "usb")))
    assert "capture: USB export failed: No USB stick found. Fix: insert the USB stick" in err
    assert len(stored(settings)) == 2  # the photo after the failed export was still taken
    assert CaptureStore(settings.state_dir, settings.module).open().exported() == {}
    assert os.listdir(str(tmp_path / "usb")) == []


def test_e_without_usb_export_configured_says_so(tmp_path, camera_frames, spy):  # noqa: F811
    settings = settings_for(tmp_path)
    run_capture_kiosk(tmp_path, camera_frames, "C,ENTER,SPACE,E,WAIT1", settings)
    assert "USB export is not configured" in _drawn(spy) and len(stored(settings)) == 1


def _drawn(recorder):
    """Every text drawn, in order, one space between (a wrapped message reads as one)."""
    return " ".join(text for text, _box, _cap in recorder.drawn)


def test_enter_still_freezes_in_the_kiosk(tmp_path, camera_frames):
    """ENTER is its own key now (the consent key); outside capture mode it does what SPACE does."""
    kiosk, _out, _err, _screens = run_capture_kiosk(tmp_path, camera_frames, "WAIT1,ENTER,WAIT1",
                                                    settings_for(tmp_path))
    assert kiosk.freeze.active


def test_one_export_at_a_time_cases_or_photos(tmp_path):
    """E in capture mode while the kiosk's case export (a real ExportJob thread, held on a gate) or a
    photo export still runs: the busy line, and no second export is started."""
    from types import SimpleNamespace

    from edge.caselog import CaseLog
    from edge.kiosk.capture_mode import CaptureMode, export_photos
    from edge.kiosk.export_job import ExportJob
    from edge.kiosk.keys import Desk
    from edge.kiosk.screen import Messages
    from edge.usb_export import ExportDone

    gate = threading.Event()

    class Held(object):
        def export_new(self, caselog):
            gate.wait(30)
            return ExportDone(0, None)

    def never(_kiosk):
        raise AssertionError("no exporter may be made while an export runs")

    settings = settings_for(tmp_path)
    desk = Desk(caselog_factory=lambda: CaseLog(settings.state_dir, min_free_mb=0), exporter_factory=never)
    desk.export_job = ExportJob(Held(), desk.caselog_factory, Messages(), lambda line: None).start()
    kiosk = SimpleNamespace(desk=desk, reporter=SimpleNamespace(log=lambda line: None))
    mode = CaptureMode(kiosk, settings, CaptureStore(settings.state_dir, settings.module).open())
    try:
        export_photos(mode)
        assert mode.messages.last == "Export running - wait for 'Safe to remove the USB stick'"
        assert mode.export_job is None
        mode.export_job, desk.export_job = desk.export_job, None  # now a photo export of its own runs
        export_photos(mode)
        assert mode.messages.last == "Export running - wait for 'Safe to remove the USB stick'"
    finally:
        gate.set()
    assert mode.export_job.wait(30)
