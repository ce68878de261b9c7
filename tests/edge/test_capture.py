"""edge.capture: consent before anything is stored, private atomic storage, the export (all or nothing),
the [capture] config. Real files, real PNGs of real X-rays (stand-ins for skin photos, which no licence
lets this project hold), real subprocesses for the CLI."""

import csv
import glob
import json
import os
import stat
import subprocess
import sys
import time

import cv2
import pytest

from edge.capture import (
    CONSENT_FILE,
    SUBJECT_PATTERN,
    CaptureError,
    CaptureSettings,
    CaptureStore,
    label_folder,
    new_subject_id,
    parse_labels,
)
from edge.config import load_config
from edge.errors import ConfigError
from edge.quality import assess_quality
from tests.conftest import ROOT, SHARED_DATA
from tests.edge.usb_stick import HELPER, Stick, helper_env, loop_mounts_possible

LABELS = ["Acne", "Scabies", "Fungal infection"]


@pytest.fixture(scope="module")
def photos():
    paths = sorted(glob.glob(os.path.join(SHARED_DATA, "chest-nih", "images", "*.png")))[:6]
    if len(paths) < 6:
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return [cv2.imread(path) for path in paths]


def open_store(tmp_path, **kwargs):
    kwargs.setdefault("min_free_mb", 0)
    return CaptureStore(str(tmp_path / "state"), "skin", **kwargs).open()


def filled_store(tmp_path, photos):
    """Two people: three photos and one photo."""
    store = open_store(tmp_path)
    first = store.start_session(True, "tech-07", device="unit-3")
    for image, label in zip(photos[:3], ("Acne", "Scabies", "Acne")):
        store.save(first, image, label, quality=assess_quality(image))
    second = store.start_session(True, "tech-07", device="unit-3")
    store.save(second, photos[3], "Fungal infection")
    return store, first, second


def tree(path):
    return sorted(os.path.relpath(os.path.join(folder, name), str(path))
                  for folder, dirs, files in os.walk(str(path)) for name in dirs + files)


def test_no_consent_nothing_stored(tmp_path, photos):
    store = open_store(tmp_path)
    for refused in (False, None, "yes"):
        with pytest.raises(CaptureError, match="no consent was given: nothing is stored"):
            store.start_session(refused, "tech-07")
    with pytest.raises(CaptureError, match="no consent recorded for this photo"):
        store.save(None, photos[0], "Acne")
    assert tree(store.root) == []


def test_a_session_without_photos_leaves_nothing(tmp_path):
    store = open_store(tmp_path)
    session = store.start_session(True, "tech-07")
    assert os.path.isfile(os.path.join(session.folder, CONSENT_FILE))
    store.end_session(session)
    assert tree(store.root) == []


def test_who_captures_is_required_and_never_a_line_break(tmp_path):
    store = open_store(tmp_path)
    with pytest.raises(CaptureError, match="who captures is not set"):
        store.start_session(True, "  ")
    with pytest.raises(ConfigError, match="not a short staff id"):
        store.start_session(True, "tech\nmedkiosk: forged")
    assert tree(store.root) == []


def test_photo_and_record_private_and_patient_free(tmp_path, photos):
    store, first, _second = filled_store(tmp_path, photos)
    for folder in (os.path.dirname(os.path.dirname(store.root)), os.path.dirname(store.root), store.root,
                   first.folder):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    names = sorted(os.listdir(first.folder))
    assert names == sorted([CONSENT_FILE] + ["{}_{:03d}.{}".format(first.subject, n, ext)
                                             for n in (1, 2, 3) for ext in ("json", "png")])
    for name in names:
        assert stat.S_IMODE(os.stat(os.path.join(first.folder, name)).st_mode) == 0o600, name
    record = [r for r in store.records() if r["subject"] == first.subject][0]
    assert set(record) == {"file", "label", "subject", "module", "captured_utc", "captured_by", "device",
                           "consent", "quality", "width", "height", "sha256", "medkiosk", "path"}
    assert record["consent"]["given"] is True and record["consent"]["statement"] == "capture-consent-1"
    assert record["device"] == "unit-3" and record["label"] == "Acne"
    assert record["quality"]["ok"] in (True, False) and record["width"] == photos[0].shape[1]
    assert (cv2.imread(record["path"]) == photos[0]).all()
    assert store.counts() == {"Acne": 2, "Scabies": 1, "Fungal infection": 1}


def test_subject_ids_are_random_and_match_the_split_pattern():
    import re

    ids = {new_subject_id() for _ in range(50)}
    assert len(ids) == 50
    pattern = re.compile(SUBJECT_PATTERN)
    for subject in ids:
        assert pattern.match(subject + "_001.png").group("patient") == subject


def test_crash_leftovers_are_cleaned_once_old_and_never_counted(tmp_path, photos):
    store, first, _second = filled_store(tmp_path, photos)
    orphan = os.path.join(first.folder, "{}_009.png".format(first.subject))  # killed before its record
    young = os.path.join(first.folder, "{}_010.png".format(first.subject))
    tmp = os.path.join(first.folder, "{}_011.png.ab12cd34.tmp".format(first.subject))
    for path in (orphan, young, tmp):
        with open(path, "wb") as handle:
            handle.write(b"partial")
    old = time.time() - 61
    os.utime(orphan, (old, old))
    os.utime(tmp, (old, old))
    assert len(store.records()) == 4  # an image without a record is not a photo
    reopened = open_store(tmp_path)
    assert reopened.cleaned == 2 and not os.path.exists(orphan) and not os.path.exists(tmp)
    assert os.path.exists(young)  # may be the running kiosk between its two writes


def test_looser_permissions_are_tightened_at_open(tmp_path, photos):
    store, first, _second = filled_store(tmp_path, photos)
    photo = os.path.join(first.folder, "{}_001.png".format(first.subject))
    os.chmod(photo, 0o644)
    os.chmod(first.folder, 0o755)
    open_store(tmp_path)
    assert stat.S_IMODE(os.stat(photo).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.folder).st_mode) == 0o700


def test_disk_nearly_full_stores_nothing(tmp_path, photos):
    store = open_store(tmp_path, min_free_mb=10 ** 9)
    session = store.start_session(True, "tech-07")
    with pytest.raises(CaptureError, match="Disk nearly full .* photo not stored"):
        store.save(session, photos[0], "Acne")
    assert sorted(os.listdir(session.folder)) == [CONSENT_FILE]
    assert session.photos == 0


def test_export_layout_manifest_and_permissions(tmp_path, photos):
    store, first, second = filled_store(tmp_path, photos)
    usb = tmp_path / "usb"
    usb.mkdir()
    folder, count = store.export(str(usb), labels=LABELS + ["Leprosy"], now="2026-12-03T11:40:00+00:00")
    assert count == 4 and folder == str(usb / "medkiosk-capture-skin-20261203T114000")
    assert sorted(os.listdir(folder)) == ["README.txt", "acne", "capture.csv", "fungal_infection", "leprosy",
                                          "scabies"]
    assert os.listdir(os.path.join(folder, "leprosy")) == []  # every class has its folder
    assert sorted(os.listdir(os.path.join(folder, "acne"))) == ["{}_001.png".format(first.subject),
                                                                "{}_003.png".format(first.subject)]
    for path in tree(folder):
        mode = stat.S_IMODE(os.stat(os.path.join(folder, path)).st_mode)
        assert mode == (0o700 if os.path.isdir(os.path.join(folder, path)) else 0o600), path
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    with open(os.path.join(folder, "capture.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_file = {row["file"]: row for row in rows}
    assert sorted(by_file) == sorted(
        ["acne/{}_001.png".format(first.subject), "scabies/{}_002.png".format(first.subject),
         "acne/{}_003.png".format(first.subject), "fungal_infection/{}_001.png".format(second.subject)])
    assert {row["consent"] for row in rows} == {"given"}
    assert {row["captured_by"] for row in rows} == {"tech-07"}
    unchecked = by_file["fungal_infection/{}_001.png".format(second.subject)]
    assert unchecked["quality"] == "" and unchecked["quality_ok"] == "1"  # saved without a quality check
    assert by_file["scabies/{}_002.png".format(first.subject)]["subject"] == first.subject
    with open(os.path.join(folder, "README.txt")) as handle:
        readme = handle.read()
    assert SUBJECT_PATTERN in readme and "2 person(s)" in readme
    again, _count = store.export(str(usb), labels=LABELS, now="2026-12-03T11:40:00+00:00")
    assert again == folder + "-2"  # a second export in the same second gets its own folder


def test_a_failed_export_leaves_nothing(tmp_path, photos):
    store, first, _second = filled_store(tmp_path, photos)
    usb = tmp_path / "usb"
    usb.mkdir()
    last = os.path.join(first.folder, "{}_003.png".format(first.subject))  # the third of four photos
    ok, encoded = cv2.imencode(".png", photos[5])
    with open(last, "wb") as handle:
        handle.write(encoded.tobytes())  # changed after capture
    with pytest.raises(CaptureError, match="changed since it was captured .* nothing was exported"):
        store.export(str(usb), labels=LABELS)
    assert os.listdir(str(usb)) == []  # not even the temporary folder


def test_export_refusals_name_the_fix(tmp_path, photos):
    store = open_store(tmp_path)
    with pytest.raises(CaptureError, match="no photos to export .* Fix: capture photos first"):
        store.export(str(tmp_path), labels=LABELS)
    store, _first, _second = filled_store(tmp_path, photos)
    with pytest.raises(CaptureError, match="is not a folder. Fix: pass an existing folder with --to, or "
                                           "--usb for the unit's USB stick"):
        store.export(str(tmp_path / "missing"), labels=LABELS)
    damaged = store.records()[0]["path"][:-4] + ".json"
    with open(damaged, "w") as handle:
        handle.write("{not json")
    with pytest.raises(CaptureError, match="is damaged .* Fix: move its subject folder"):
        store.export(str(tmp_path), labels=LABELS)


def test_a_destination_that_is_not_writable_is_refused_with_the_fix(tmp_path, photos):
    """``--to`` a folder that refuses new entries. Root writes through permission bits, so the folder
    is /sys, which refuses a new entry from anyone (root included). (The unit's read-only stick is
    --usb's: tests/edge/test_capture_usb.py.)"""
    if not os.path.isdir("/sys"):
        pytest.skip("no /sys on this system")
    store, _first, _second = filled_store(tmp_path, photos)
    before = sorted(os.listdir("/sys"))
    with pytest.raises(CaptureError, match="export to /sys failed: not writable .* Fix: pass a writable "
                                           "folder with --to, or --usb for the unit's USB stick"):
        store.export("/sys", labels=LABELS)
    assert sorted(os.listdir("/sys")) == before


def test_labels_make_safe_distinct_folders(tmp_path):
    assert label_folder("Fungal infection") == "fungal_infection"
    assert parse_labels("Acne,\n Scabies ,") == ["Acne", "Scabies"]
    for bad, said in (("Acne", "at least 2 labels"), ("Acne, ../etc", "cannot be a folder name"),
                      ("Acne, a/b", "cannot be a folder name"), ("Acne, .hidden", "cannot be a folder name"),
                      ("Fungal infection, fungal  Infection", "make the same folder"),
                      ("Acne, " + "x" * 61, "cannot be a folder name")):
        with pytest.raises(ConfigError, match=said):
            parse_labels(bad)
    assert parse_labels("Acne, " + "x" * 60)[1] == "x" * 60


def test_capture_config_defaults_file_and_labels_file(tmp_path):
    config = load_config(use_default_path=False)
    settings = CaptureSettings.from_config(config)
    assert settings.enabled is False and settings.module == "skin" and settings.captured_by == ""
    assert settings.labels == ["Acne", "Scabies", "Psoriasis", "Vitiligo", "Warts", "Fungal infection",
                               "Leprosy"]
    assert "Capture mode is off" in settings.problem()
    labels = tmp_path / "labels.txt"
    labels.write_text("# skin classes\nEczema\nImpetigo  # bacterial\n\n")
    conf = tmp_path / "medkiosk.conf"
    conf.write_text("[kiosk]\nstate_dir = {}\n[capture]\nenabled = yes\ncaptured_by = tech-07\n"
                    "labels_file = {}\nexport_dir = /media/usb\n".format(tmp_path / "state", labels))
    settings = CaptureSettings.from_config(load_config(str(conf)))
    assert settings.labels == ["Eczema", "Impetigo"] and settings.problem() is None
    assert settings.state_dir == str(tmp_path / "state")
    conf.write_text("[capture]\nenabled = yes\ncaptured_by = tech\nlabels_file = {}\n".format(
        tmp_path / "no"))
    with pytest.raises(ConfigError, match="labels_file .* cannot be read"):
        CaptureSettings.from_config(load_config(str(conf)))
    conf.write_text("[capture]\nlabels = Acne\n")
    with pytest.raises(ConfigError, match=r"\[capture\] labels: needs at least 2 labels"):
        load_config(str(conf))


def test_the_shipped_config_has_capture_off():
    config = load_config(os.path.join(ROOT, "config", "medkiosk.conf"))
    assert config.capture["enabled"] is False and config.capture["captured_by"] == ""


class Ran(object):
    def __init__(self, process):
        self.stdout, self.stderr = process.communicate(timeout=120)
        self.returncode = process.returncode


def _cli(*args, env=None):
    return Ran(subprocess.Popen([sys.executable, "-m", "edge"] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                                env=dict(env or os.environ, PYTHONPATH=ROOT)))


def test_cli_lists_and_exports(tmp_path, photos):
    filled_store(tmp_path, photos)
    state = str(tmp_path / "state")
    result = _cli("capture", "list", "--state-dir", state)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Acne", "2"] and lines[-1].startswith("4 photo(s) of 2 person(s)")
    usb = tmp_path / "usb"
    usb.mkdir()
    result = _cli("capture", "export", "--to", str(usb), "--state-dir", state)
    assert result.returncode == 0, result.stderr
    (folder,) = os.listdir(str(usb))
    assert result.stdout == "exported 4 photo(s) to {}\n".format(usb / folder)
    result = _cli("capture", "--state-dir", state, "export", "--to", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "is not a folder. Fix:" in result.stderr


def test_records_name_no_one(tmp_path, photos):
    """Patient-free: nothing but ids, times, the label, the device, quality and the hash."""
    store, first, _second = filled_store(tmp_path, photos)
    with open(os.path.join(first.folder, CONSENT_FILE)) as handle:
        consent = json.load(handle)
    assert set(consent) == {"given", "recorded_utc", "statement", "captured_by", "device", "module",
                            "subject", "medkiosk"}


def test_the_guide_gives_the_split_pattern_the_export_uses():
    with open(os.path.join(ROOT, "docs", "training-skin.md"), encoding="utf-8") as handle:
        guide = handle.read()
    assert "--patient-pattern '{}'".format(SUBJECT_PATTERN) in guide


@pytest.mark.skipif(not loop_mounts_possible()[0], reason=loop_mounts_possible()[1])
def test_medkiosk_run_takes_capture_mode_from_the_config(tmp_path, photos):
    """The real command: config [capture] on, scripted keys over a folder of real images, headless; E
    goes through the root helper named by usb_export (run directly here) to the read-only stick."""
    source, models = tmp_path / "src", tmp_path / "models"
    for folder in (source, models):
        folder.mkdir()
    cv2.imwrite(str(source / "a.png"), cv2.resize(photos[0], (320, 240)))
    stick = Stick(tmp_path / "stick")
    state = tmp_path / "state"
    conf = tmp_path / "medkiosk.conf"
    conf.write_text("[kiosk]\nmodels_dir = {}\nmodules = skin\noptional_modules =\nstate_dir = {}\n"
                    "kiosk_mode = no\nusb_export = command:{}\n[capture]\nenabled = yes\n"
                    "captured_by = tech-07\nlabels = Acne, Scabies\n".format(models, state, HELPER))
    env = helper_env(stick.mountpoint, str(state / "usb-outbox"), str(tmp_path / "lock"))
    try:
        result = _cli("run", "--config", str(conf), "--source", str(source), "--output", "null://",
                      "--keys", "WAIT1,C,ENTER,SPACE,M,SPACE,E,ESC", "--max-frames", "12", env=env)
        exports = stick.entries()
        read_only = stick.read_only()
    finally:
        stick.close()
    assert result.returncode == 0, result.stderr
    photo_lines = [line for line in result.stdout.splitlines() if "capture photo" in line]
    assert len(photo_lines) == 2 and "label Acne" in photo_lines[0] and "label Scabies" in photo_lines[1]
    (export,) = exports
    assert "capture: USB export: 2 photo(s) to {}".format(export) in result.stderr and read_only


def test_opening_the_store_tightens_every_modules_photos(tmp_path, photos):
    """As the case log does for its folder when it opens: loose modes (an older version, a copy by
    hand) are made 0700/0600 again, for the photos of a module no longer configured too."""
    from edge.capture import loose_paths

    old = CaptureStore(str(tmp_path / "state"), "wounds", min_free_mb=0).open()
    session = old.start_session(True, "tech-07")
    record = old.save(session, photos[0], "Acne")
    os.chmod(session.folder, 0o755)
    os.chmod(os.path.join(session.folder, record["file"]), 0o644)
    root = str(tmp_path / "state" / "capture")
    assert sorted(mode for _path, mode in loose_paths(root)) == [0o644, 0o755]
    open_store(tmp_path)  # the configured module is skin now
    assert loose_paths(root) == []
    assert stat.S_IMODE(os.stat(os.path.join(session.folder, record["file"])).st_mode) == 0o600
