"""Capture mode's photos onto the USB stick (edge.capture_usb) through the real root helper
(systemd/medkiosk-usb-export) on the real stick stand-in of the case export's tests
(tests/edge/usb_stick.py: ext4 on a loop device, mounted read-only, really remounted), and the purge
of photos recorded as exported (``medkiosk capture purge --exported``). Real PNGs of real X-rays
(stand-ins for skin photos), the helper as a real process, the CLI as a real subprocess. The only
stand-in is ext4 for FAT (no vfat module in this kernel), as for the case export.
"""

import csv
import glob
import json
import os
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.capture import EXPORTED_INDEX, CaptureError, CaptureStore
from edge.capture_usb import export_usb
from edge.usb_export import CommandTrigger, UsbExporter, UsbExportError
from tests.conftest import ROOT, SHARED_DATA
from tests.edge.usb_stick import (
    HELPER,
    RecordingHelper,
    Stick,
    helper_env,
    hold_outbox,
    loop_mounts_possible,
)

POSSIBLE, WHY = loop_mounts_possible()
needs_stick = pytest.mark.skipif(not POSSIBLE, reason=WHY)
LABELS = ["Acne", "Scabies", "Fungal infection", "Warts"]  # no photo of Warts: an empty class folder


@pytest.fixture(scope="module")
def photos():
    paths = sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png")))[:4]
    if len(paths) < 4:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return [cv2.resize(cv2.imread(path), (256, 256), interpolation=cv2.INTER_AREA) for path in paths]


@pytest.fixture
def stick(tmp_path):
    made = Stick(tmp_path / "stick")
    yield made
    made.close()


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class Unit(object):
    """The state folder, its capture store with photos of two people, and an exporter whose root
    helper works on the stick at ``mountpoint``."""

    def __init__(self, tmp_path, mountpoint, photos, module="skin"):
        self.state = str(tmp_path / "state")
        self.outbox = os.path.join(self.state, "usb-outbox")
        self.env = helper_env(mountpoint, self.outbox, str(tmp_path / "export.lock"))
        self.exporter = UsbExporter(self.outbox, CommandTrigger(HELPER, env=self.env))
        self.store = CaptureStore(self.state, module, min_free_mb=0).open()
        first = self.store.start_session(True, "tech-07", device="unit-3")
        for image, label in zip(photos[:3], ("Acne", "Scabies", "Acne")):
            self.store.save(first, image, label)
        second = self.store.start_session(True, "tech-07", device="unit-3")
        self.store.save(second, photos[3], "Fungal infection")

    def export(self, now=None):
        return export_usb(self.store, self.exporter, LABELS, now=now)

    def exported(self):
        return sorted(self.store.exported())


@needs_stick
def test_photos_go_to_the_stick_private_complete_then_read_only_and_are_recorded(tmp_path, stick, photos):
    unit = Unit(tmp_path, stick.mountpoint, photos)
    assert stick.read_only() and unit.exported() == []
    done = unit.export(now="2026-12-03T10:00:00+00:00")
    assert (done.count, done.name) == (4, "medkiosk-capture-skin-20261203T100000")
    assert done.message() == "Safe to remove the USB stick - 4 photo(s) exported to " + done.name
    assert stick.read_only() and stick.entries() == [done.name]  # no hidden temporary folder left
    folder = os.path.join(stick.mountpoint, done.name)
    assert sorted(os.listdir(folder)) == ["README.txt", "acne", "capture.csv", "fungal_infection", "scabies",
                                          "warts"]
    assert os.listdir(os.path.join(folder, "warts")) == []  # copied by the helper, empty
    with open(os.path.join(folder, "capture.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["label"], r["consent"], r["captured_by"]) for r in rows) == [  # two people: random ids
        ("Acne", "given", "tech-07"), ("Acne", "given", "tech-07"), ("Fungal infection", "given", "tech-07"),
        ("Scabies", "given", "tech-07")]
    for row in rows:  # every photo byte for byte, where capture.csv says
        with open(os.path.join(folder, *row["file"].split("/")), "rb") as copy:
            assert cv2.imdecode(np.frombuffer(copy.read(), np.uint8), 1).shape == (256, 256, 3)
    for parent, _dirs, files in os.walk(folder):  # folders 0700, files 0600 on the stick
        assert _mode(parent) == 0o700
        assert all(_mode(os.path.join(parent, name)) == 0o600 for name in files)
    assert os.listdir(unit.outbox) == []
    index = unit.store.exported()
    assert len(index) == 4 and {e["to"][0] for e in index.values()} == {done.name}
    assert {e["first_utc"] for e in index.values()} == {"2026-12-03T10:00:00+00:00"}
    assert _mode(unit.store.index_path) == 0o600
    # A second export in the same second: a name not used yet, the first untouched; first_utc kept.
    again = unit.export(now="2026-12-03T10:00:00+00:00")
    assert again.name == done.name + "-2" and stick.entries() == [done.name, again.name]
    assert all(e["to"] == [done.name, again.name] for e in unit.store.exported().values())


@needs_stick
def test_no_stick_is_one_line_and_nothing_is_recorded(tmp_path, photos):
    (tmp_path / "usb").mkdir()
    unit = Unit(tmp_path, str(tmp_path / "usb"), photos)
    with pytest.raises(UsbExportError, match=r"^No USB stick found\. Fix: insert the USB stick") as info:
        unit.export()
    assert info.value.code == "no-stick" and unit.exported() == []
    assert os.listdir(unit.outbox) == [] and os.listdir(str(tmp_path / "usb")) == []


@needs_stick
def test_a_full_stick_is_refused_before_writing(tmp_path, photos):
    stick = Stick(tmp_path / "stick", size_mb=8, fill_kb_left=64)
    try:
        unit = Unit(tmp_path, stick.mountpoint, photos)
        full = r"^USB stick full \(\d+ KB free, \d+ KB needed\)\. Fix"
        with pytest.raises(UsbExportError, match=full) as info:
            unit.export()
        assert info.value.code == "full" and unit.exported() == []
        assert stick.entries() == ["holiday.mp4"] and stick.read_only()
    finally:
        stick.close()


@needs_stick
def test_running_out_mid_copy_leaves_nothing_on_the_stick(tmp_path, photos):
    """Space enough by the numbers, too few inodes for the class folders and photos: cp fails half-way."""
    stick = Stick(tmp_path / "stick", size_mb=8, inodes=16)
    try:
        unit = Unit(tmp_path, stick.mountpoint, photos)
        with pytest.raises(UsbExportError, match=r"^USB stick full: nothing was exported\. Fix") as info:
            unit.export()
        assert info.value.code == "full" and unit.exported() == []
        assert stick.entries() == [] and stick.read_only()
    finally:
        stick.close()


@needs_stick
def test_a_write_protected_stick_is_named(tmp_path, photos):
    stick = Stick(tmp_path / "stick", write_protected=True)
    try:
        unit = Unit(tmp_path, stick.mountpoint, photos)
        with pytest.raises(UsbExportError, match=r"^USB stick is write-protected or damaged\. Fix: slide"):
            unit.export()
        assert unit.exported() == [] and stick.read_only() and stick.entries() == []
    finally:
        stick.close()


@needs_stick
def test_a_photo_changed_since_capture_stops_the_export_before_the_stick(tmp_path, stick, photos):
    unit = Unit(tmp_path, stick.mountpoint, photos)
    record = unit.store.records()[1]
    with open(record["path"], "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CaptureError, match="changed since it was captured"):
        unit.export()
    assert stick.entries() == [] and stick.read_only() and unit.exported() == []
    assert os.listdir(unit.outbox) == []


def _ask(env, line):
    helper = subprocess.Popen([HELPER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
    out, _err = helper.communicate(line, timeout=60)
    return helper.returncode, out


@needs_stick
def test_the_helper_takes_a_capture_export_only_with_its_list(tmp_path, stick):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    env = helper_env(stick.mountpoint, str(outbox), str(tmp_path / "lock"))
    (outbox / "medkiosk-capture-skin-20261203T100000").mkdir()  # no capture.csv
    (outbox / "medkiosk-cases-20261203T100000").mkdir()
    (outbox / "medkiosk-cases-20261203T100000" / "capture.csv").write_text("x")  # the other kind's list
    (outbox / "medkiosk-capture-skin-20261203T110000").mkdir()
    os.symlink("/etc/hostname", str(outbox / "medkiosk-capture-skin-20261203T110000" / "capture.csv"))
    for request, reason in (("EXPORT medkiosk-capture-skin-20261203T100000\n", "no prepared export"),
                            ("EXPORT medkiosk-cases-20261203T100000\n", "no prepared export"),
                            ("EXPORT medkiosk-capture-skin-20261203T110000\n", "no prepared export"),
                            ("EXPORT medkiosk-capture-../x-20261203T100000\n", "bad export name"),
                            ("EXPORT medkiosk-capture--20261203T100000\n", "bad export name"),
                            ("EXPORT medkiosk-capture-skin-2026120T100000\n", "bad export name")):
        status, out = _ask(env, request)
        assert status == 1 and out.startswith("FAIL refused ") and reason in out, (request, out)
    assert stick.entries() == [] and stick.read_only()


def test_a_module_the_helper_cannot_name_is_refused_on_the_unit(tmp_path, photos):
    state = str(tmp_path / "state")
    store = CaptureStore(state, "hautbild\u00e9", min_free_mb=0).open()
    store.save(store.start_session(True, "tech-07"), photos[0], "Acne")
    exporter = UsbExporter(os.path.join(state, "usb-outbox"), CommandTrigger(HELPER))
    with pytest.raises(CaptureError, match=r"capture module 'hautbild\u00e9' cannot name a folder on the USB "
                                           r"stick\. Fix: set \[capture\] module"):
        export_usb(store, exporter, LABELS)


def test_no_photos_is_said_and_nothing_is_asked(tmp_path):
    class Refusing(object):
        def request(self, line):
            raise AssertionError("the helper must not be asked")

    store = CaptureStore(str(tmp_path / "state"), "skin", min_free_mb=0).open()
    done = export_usb(store, UsbExporter(str(tmp_path / "state" / "usb-outbox"), Refusing()), LABELS)
    assert (done.count, done.name, done.message()) == (0, None, "No photos to export")


# ---- the CLI: export --usb / --to, purge --exported ----
def _cli(*args, env=None):
    process = subprocess.Popen([sys.executable, "-m", "edge", "capture"] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                               env=dict(env or os.environ, PYTHONPATH=ROOT))
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _config(tmp_path, unit):
    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\nstate_dir = {}\nusb_export = command:{}\n[capture]\nlabels = {}\n".format(
        unit.state, HELPER, ", ".join(LABELS)))
    return str(path)


@needs_stick
def test_cli_export_usb_does_what_e_does_and_to_still_writes_a_folder(tmp_path, stick, photos):
    unit = Unit(tmp_path, stick.mountpoint, photos)
    config = _config(tmp_path, unit)
    code, out, err = _cli("export", "--usb", "--config", config, env=unit.env)
    assert code == 0, err
    (name,) = stick.entries()
    assert out == "Safe to remove the USB stick - 4 photo(s) exported to {}\n".format(name)
    assert stick.read_only() and len(unit.exported()) == 4
    folder = tmp_path / "laptop"
    folder.mkdir()
    code, out, err = _cli("--config", config, "export", "--to", str(folder))
    (copy,) = os.listdir(str(folder))
    assert code == 0 and out == "exported 4 photo(s) to {}\n".format(folder / copy), err
    code, out, err = _cli("export", "--config", config)  # where to is required: no default folder
    assert code == 2 and "one of the arguments --usb --to is required" in err


def _marked(tmp_path, photos, when):
    """A unit whose first person's photos are on a stick since ``when`` (the helper's OK stood in for
    by the record it leads to), the second person's never exported."""
    unit = Unit(tmp_path, str(tmp_path / "no-stick"), photos)
    first = [r for r in unit.store.records() if r["label"] != "Fungal infection"]
    unit.store.mark_exported(first, "medkiosk-capture-skin-20261101T100000", now=when)
    return unit, first


def test_purge_deletes_only_photos_recorded_as_exported_dry_run_first(tmp_path, photos):
    unit, first = _marked(tmp_path, photos, "2026-11-01T10:00:00+00:00")
    config = _config(tmp_path, unit)
    before = sorted(os.listdir(unit.store.root))
    code, out, err = _cli("purge", "--exported", "--config", config)
    assert code == 0 and out == ("would delete 3 photo(s) of 1 person(s) already on a USB stick; 1 kept; "
                                 "nothing deleted: add --yes to delete them\n"), err
    assert sorted(os.listdir(unit.store.root)) == before and len(unit.store.records()) == 4
    code, out, err = _cli("purge", "--exported", "--yes", "--config", config)
    assert code == 0 and out == "deleted 3 photo(s) of 1 person(s) already on a USB stick; 1 kept\n", err
    (left,) = unit.store.records()
    assert left["label"] == "Fungal infection"  # never exported: kept
    assert not os.path.exists(os.path.dirname(first[0]["path"]))  # the person's folder, consent and all
    with open(unit.store.index_path) as handle:
        assert json.load(handle)["photos"] == {}  # rewritten without them
    assert [n for n in os.listdir(unit.store.root) if n.endswith(".tmp")] == []
    code, out, _err = _cli("purge", "--exported", "--yes", "--config", config)
    assert out == "deleted 0 photo(s) of 0 person(s) already on a USB stick; 1 kept\n"


def test_purge_older_than_is_pinned_at_its_boundary(tmp_path, photos):
    unit, first = _marked(tmp_path, photos, "2026-11-01T10:00:00+00:00")
    store = unit.store
    assert len(store.purgeable(30, now="2026-12-01T10:00:00+00:00")) == 3  # exactly 30 days: due
    assert store.purgeable(30, now="2026-12-01T09:59:59+00:00") == []  # one second short: kept
    assert len(store.purgeable(0, now="2026-11-01T10:00:00+00:00")) == 3
    assert len(store.purgeable(None)) == 3
    # A photo changed since it went to the stick is not the photo on the stick: never purged.
    with open(first[0]["path"], "r+b") as handle:
        handle.write(b"X")
    assert [r["file"] for r in store.purgeable(None)] == [r["file"] for r in first[1:]]
    config = _config(tmp_path, unit)
    code, out, err = _cli("purge", "--exported", "--older-than", "30.5", "--yes", "--config", config)
    assert code == 0 and out.startswith("deleted 2 photo(s) of 1 person(s) already on a USB stick first "
                                        "exported 30.5+ days ago; 2 kept"), err


@pytest.mark.parametrize("days", ["-1", "soon", "nan", "99999999"])
def test_purge_refuses_a_bad_number_of_days_in_one_line(tmp_path, photos, days):
    unit, _first = _marked(tmp_path, photos, "2026-11-01T10:00:00+00:00")
    code, out, err = _cli("purge", "--exported", "--older-than", days, "--yes", "--config",
                          _config(tmp_path, unit))
    assert code != 0 and out == "" and len(unit.store.records()) == 4
    assert err.splitlines() == ["medkiosk: error: --older-than {!r} is not a number of days. Fix: e.g. "
                                "--older-than 30 (photos first exported 30 or more days ago)".format(days)]


def test_purge_needs_exported_and_a_damaged_index_deletes_nothing(tmp_path, photos):
    unit, _first = _marked(tmp_path, photos, "2026-11-01T10:00:00+00:00")
    config = _config(tmp_path, unit)
    code, _out, err = _cli("purge", "--yes", "--config", config)
    assert code == 2 and "the following arguments are required: --exported" in err
    key = next(iter(unit.store.exported()))
    for damaged in ("{not json", '{"photos": []}', json.dumps({"photos": {key: {"first_utc": "soon"}}}),
                    json.dumps({"photos": {key: {"first_utc": "2026-11-01T10:00:00+00:00"}}})):
        with open(unit.store.index_path, "w") as handle:
            handle.write(damaged)
        code, out, err = _cli("purge", "--exported", "--yes", "--config", config)
        assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, damaged
        assert "capture index {} is damaged".format(unit.store.index_path) in err
        assert "Fix: move it aside" in err
        assert len(unit.store.records()) == 4
    assert os.path.basename(unit.store.index_path) == EXPORTED_INDEX


def test_a_capture_export_while_e_exports_the_cases_is_refused_and_touches_nothing(tmp_path, photos):
    """The other way round: the kiosk's E (a real second process holding the outbox, the cases' folder
    staged for the helper) while `medkiosk capture export --usb` runs: refused as busy, nothing cleared,
    asked or recorded; once the other process is gone it proceeds."""
    unit = Unit(tmp_path, str(tmp_path / "usb"), photos)
    helper = RecordingHelper()
    unit.exporter.trigger = helper
    other = hold_outbox(unit.outbox, "medkiosk-cases-20261203T100000")
    try:
        with pytest.raises(UsbExportError) as info:
            unit.export()
        assert info.value.code == "busy" and "is in use" in str(info.value)
        assert os.listdir(unit.outbox) == ["medkiosk-cases-20261203T100000"]
        assert helper.requests == [] and unit.exported() == []
    finally:
        other.stdin.close()
        assert other.wait(30) == 0
    with pytest.raises(UsbExportError) as info:
        unit.export()
    assert info.value.code == "no-stick" and helper.requests[0].startswith("EXPORT medkiosk-capture-skin-")
