"""S with a patient reference typed on the keypad, and E exporting the new cases to the USB stick, through
the real kiosk loop: the real test bundle (ONNX Runtime), the fake V4L2 camera the other kiosk tests use
(no camera here), a real case log, the real root helper on a real loop-device stick (tests/edge/usb_stick.py).
"""

import csv
import io
import os
import sys

import cv2
import numpy as np
import pytest

from edge.caselog import REFERENCE_MAX, CaseLog
from edge.kiosk.entry import TYPED
from edge.usb_export import CommandTrigger, UsbExporter, kiosk_referral
from tests.edge.kiosk.kiosk_helpers import (
    BLUE,
    LAYOUT,
    YELLOW,
    KeysAfterResult,
    fake_camera,
    has_colour,
    run_kiosk,
)
from tests.edge.usb_stick import HELPER, Stick, helper_env, loop_mounts_possible

POSSIBLE, WHY = loop_mounts_possible()


def prompt_shown(frame):
    """The entry's yellow-framed box over the image area (the panel on the right is not touched)."""
    return has_colour(LAYOUT.image.crop(frame), YELLOW, minimum=400, tolerance=30)


def saved_image_is(tmp_path, kiosk, frames):
    """The saved image is a camera frame (96x96), not the screen."""
    with CaseLog(str(tmp_path / "state")) as log:
        image = cv2.imread(log.cases()[0].image)
    return image.shape == (96, 96, 3)


def saved(tmp_path):
    with CaseLog(str(tmp_path / "state")) as log:
        return [(c.number, c.patient_ref) for c in log.cases()]


def test_s_opens_the_entry_keys_type_and_enter_saves_with_the_reference(tmp_path, slot, synth_images):
    source, _factory = fake_camera(synth_images, period=0.02)
    keys = KeysAfterResult("S,1,2,BACKSPACE,3,M,Q,-,SPACE,WAIT2")
    kiosk, lines, frames = run_kiosk(tmp_path, source, [slot], keys=keys, kiosk_mode=False)
    wait = keys.waited  # screens before the first result: S follows screen `wait`
    # M and Q were typed, not obeyed (the run went on; kiosk_mode is off, so Q would have ended it).
    assert saved(tmp_path) == [("K-0001", "13MQ")] and kiosk.frames == wait + 11
    assert kiosk.messages.last == "Case saved K-0001 - ref 13MQ"
    assert not any("13MQ" in line for line in lines)  # the journal gets the number, never the reference
    # Drawn from the frame after S to the frame of SPACE (8 keys later), on no other; meanwhile the
    # live view is frozen on the image being saved, and live again after.
    shown = [index for index, frame in enumerate(frames) if prompt_shown(frame)]
    assert shown == list(range(wait + 1, wait + 9))
    frozen = [index for index, frame in enumerate(frames) if has_colour(LAYOUT.badge.crop(frame), BLUE, 200)]
    assert frozen == shown and not kiosk.freeze.active
    assert kiosk.screen.frame is not None and saved_image_is(tmp_path, kiosk, frames)


def test_esc_cancels_and_nothing_is_saved(tmp_path, slot, synth_images):
    source, _factory = fake_camera(synth_images, period=0.02)
    keys = KeysAfterResult("S,5,ESC,WAIT2")
    kiosk, _lines, frames = run_kiosk(tmp_path, source, [slot], keys=keys)
    assert kiosk.frames == keys.waited + 5 and not kiosk.freeze.active  # back to live
    assert kiosk.cases_saved == 0 and kiosk.messages.last == "Not saved"
    assert prompt_shown(frames[keys.waited + 2]) and not prompt_shown(frames[-1])
    assert not os.path.exists(str(tmp_path / "state" / "cases" / "cases.db")) or saved(tmp_path) == []


def test_the_reference_stops_at_its_limit_and_s_saves(tmp_path, slot, synth_images):
    source, _factory = fake_camera(synth_images, period=0.02)
    keys = KeysAfterResult("S," + ",".join(["7"] * (REFERENCE_MAX + 3)) + ",S,WAIT1")
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot], keys=keys)
    assert kiosk.frames == keys.waited + REFERENCE_MAX + 6
    assert saved(tmp_path) == [("K-0001", "7" * REFERENCE_MAX)]
    assert "S" not in TYPED  # S saves; it is never typed into a reference


def test_e_without_an_exporter_says_so(tmp_path, slot, synth_images):
    source, _factory = fake_camera(synth_images, period=0.02)
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot], keys="WAIT3,E", max_frames=5)
    assert kiosk.messages.last == "USB export is not configured"


def _exporter_factory(tmp_path, mountpoint):
    outbox = str(tmp_path / "state" / "usb-outbox")
    env = helper_env(mountpoint, outbox, str(tmp_path / "export.lock"))

    def make(kiosk):
        specs = {s.bundle.bundle_id: s.bundle.description.input for s in kiosk.slots if s.bundle is not None}
        return UsbExporter(outbox, CommandTrigger(HELPER, env=env), referral=kiosk_referral(specs))

    return make


@pytest.mark.skipif(not POSSIBLE, reason=WHY)
def test_e_exports_the_new_cases_and_says_safe_to_remove(tmp_path, slot, synth_images, monkeypatch):
    stick = Stick(tmp_path / "stick")
    journal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", journal)
    try:
        source, _factory = fake_camera(synth_images, period=0.02)
        keys = KeysAfterResult("S,4,2,SPACE,WAIT2,E,WAIT2")
        kiosk, _lines, frames = run_kiosk(tmp_path, source, [slot], keys=keys,
                                          exporter_factory=_exporter_factory(tmp_path, stick.mountpoint))
        # run() waits for the export thread when it ends; its line is the last message.
        assert kiosk.messages.last.startswith("Safe to remove the USB stick - 1 case(s) exported to "
                                              "medkiosk-cases-")
        name = stick.entries()[0]
        assert stick.entries() == [name] and stick.read_only()
        with open(os.path.join(stick.mountpoint, name, "cases.csv")) as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["number"], r["patient_ref"]) for r in rows] == [("K-0001", "42")]
        assert os.path.getsize(os.path.join(stick.mountpoint, name, rows[0]["referral"])) > 1000
        assert "USB export: 1 case(s) to " + name in journal.getvalue()
        with CaseLog(str(tmp_path / "state")) as log:
            assert log.cases(new_only=True) == []
    finally:
        stick.close()


@pytest.mark.skipif(not POSSIBLE, reason=WHY)
def test_e_with_no_stick_is_one_line_on_screen_and_in_the_journal(tmp_path, slot, synth_images, monkeypatch):
    (tmp_path / "usb").mkdir()
    journal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", journal)
    source, _factory = fake_camera(synth_images, period=0.02)
    keys = KeysAfterResult("S,SPACE,WAIT1,E,WAIT2")
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot], keys=keys,
                                       exporter_factory=_exporter_factory(tmp_path, str(tmp_path / "usb")))
    assert kiosk.messages.last == "No USB stick found"
    assert "USB export failed: No USB stick found. Fix: insert the USB stick" in journal.getvalue()
    with CaseLog(str(tmp_path / "state")) as log:
        assert [c.number for c in log.cases(new_only=True)] == ["K-0001"]


def test_the_prompt_stays_inside_the_image_area_and_fits_800x480():
    """Drawn on a blank 800x480 screen, with the longest reference and the "at most" line: nothing
    outside the image area changes (every line is wrapped to the box) and the box is not cut off."""
    from edge.kiosk.entry import ReferenceEntry

    entry = ReferenceEntry(None, None, None)
    entry.text, entry.full = "9" * REFERENCE_MAX, True
    canvas = np.zeros((480, 800, 3), dtype=np.uint8)
    entry.draw(canvas)
    area = LAYOUT.image
    outside = canvas.copy()
    outside[area.y:area.y + area.h, area.x:area.x + area.w] = 0
    assert not outside.any() and canvas.any()
    rows = np.where(canvas[:, area.x:area.x + area.w].any(axis=2).any(axis=1))[0]
    assert rows.min() > 0 and rows.max() < 479  # the box is not cut at the top or bottom


def test_e_with_a_bad_usb_export_setting_is_one_line(tmp_path, slot, synth_images, monkeypatch):
    from edge.usb_export import open_trigger

    journal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", journal)
    source, _factory = fake_camera(synth_images, period=0.02)
    kiosk, _lines, _frames = run_kiosk(tmp_path, source, [slot], keys="WAIT3,E,WAIT1", max_frames=6,
                                       exporter_factory=lambda _kiosk: open_trigger("sudo:/bin/sh"))
    assert kiosk.messages.last == "usb_export = 'sudo:/bin/sh' is not understood"
    logged = "USB export failed: usb_export = 'sudo:/bin/sh' is not understood. Fix: socket:"
    assert logged in journal.getvalue()


@pytest.mark.parametrize("language", ["hi", "bn"])
def test_the_prompt_in_the_workers_language_is_drawn_by_the_text_engine(language):
    """In Hindi and Bengali the prompt's title is drawn (not blank, not cut out of the image area):
    the same 800x480 box, with the script's font (Hershey would draw nothing for these letters)."""
    from edge import i18n
    from edge.kiosk.entry import ReferenceEntry

    pytest.importorskip("PIL")
    try:
        i18n.set_language(language)
        title = ReferenceEntry(None, None, None).lines()[0]
        assert any(ord(ch) > 127 for ch in " ".join(title))
        canvas = np.zeros((480, 800, 3), dtype=np.uint8)
        ReferenceEntry(None, None, None).draw(canvas)
    finally:
        i18n.set_language("en")
    area = LAYOUT.image
    outside = canvas.copy()
    outside[area.y:area.y + area.h, area.x:area.x + area.w] = 0
    assert not outside.any()
    inside = canvas[area.y:area.y + area.h, area.x:area.x + area.w]
    white = (inside == 255).all(axis=2)  # title and typed text are white/yellow; count white ink
    assert white.sum() > 50
