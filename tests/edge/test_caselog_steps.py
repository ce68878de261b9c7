"""edge.caselog step by step (mutation survivors, issue 18): the export's refusals of an altered case
log, word for word, and which cases ``export`` takes (real SQLite, real files)."""

import csv
import os
import sqlite3

import numpy as np
import pytest

from edge.caselog import CaseLog, CaseLogError
from tests.edge.kiosk_media import textured

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.81}], "probabilities": {"effusion": 0.81},
          "uncertain": False, "out_of_scope": False, "quality": {"ok": True}}


def _set_image_path(state, value):
    connection = sqlite3.connect(os.path.join(state, "cases", "cases.db"))
    with connection:
        connection.execute("UPDATE cases SET image_path = ?", (value,))
    connection.close()


def test_export_refusals_name_the_case_and_the_problem(tmp_path):
    state, usb = str(tmp_path / "state"), tmp_path / "usb"
    usb.mkdir()
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
    with open(case.image, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with CaseLog(state) as log, pytest.raises(CaseLogError) as caught:
        log.export(str(usb))
    assert str(caught.value) == ("case K-0001 ({}): its image changed since it was saved (sha256 differs). "
                                 "Fix: nothing was exported; have the unit checked".format(case.uid))
    _set_image_path(state, "../cases.db")
    with CaseLog(state) as log, pytest.raises(CaseLogError) as caught:
        log.export(str(usb))
    assert str(caught.value) == ("case K-0001 ({}): its image path '../cases.db' points outside the case "
                                 "folder (the case log was altered). Fix: nothing was exported; have the "
                                 "unit checked".format(case.uid))
    assert os.listdir(str(usb)) == []


def test_export_takes_every_case_unless_new_only(tmp_path):
    state, usb = str(tmp_path / "state"), tmp_path / "usb"
    usb.mkdir()
    with CaseLog(state, min_free_mb=0) as log:
        first = log.save(textured(0), RESULT, "chest")
        log.mark_exported([first.uid])
        log.save(textured(1), RESULT, "chest")
        folder, count = log.export(str(usb))
        assert count == 2
        _folder, count = log.export(str(usb), new_only=True)
        assert count == 1
    with open(os.path.join(folder, "cases.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["referral"] for row in rows] == ["", ""]  # no referral sheets: an empty column


def test_an_export_target_that_refuses_a_new_folder(tmp_path):
    """/sys refuses mkdir even to root (EPERM): the stick mounted read-only, as the worker sees it."""
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest")
        with pytest.raises(CaseLogError) as caught:
            log.export("/sys")
    assert str(caught.value) == ("export to /sys failed (Operation not permitted). Fix: check the USB stick "
                                 "is mounted writable and has space")


def test_a_refused_patient_reference_is_quoted_up_to_40_characters():
    from edge.caselog import clean_reference

    with pytest.raises(CaseLogError) as caught:
        clean_reference(" jane doe ")
    assert str(caught.value) == ("patient reference 'JANE DOE' is not allowed. Fix: use 1-16 letters A-Z or "
                                 "digits (a clinic file number, never a name)")
    with pytest.raises(CaseLogError) as caught:
        clean_reference("A" * 39 + "-BC")
    assert "patient reference '{}-' is not allowed".format("A" * 39) in str(caught.value)


def test_open_makes_the_private_images_folder_in_the_case_log_whatever_the_working_directory(tmp_path,
                                                                                              monkeypatch):
    """A relative --state-dir is resolved once, when the log is made: the images folder is created
    (0700) beside cases.db at open, never in the working directory, and a later chdir moves nothing."""
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    monkeypatch.chdir(str(work))
    old_umask = os.umask(0o022)
    try:
        with CaseLog("state", min_free_mb=0) as log:
            images = str(work / "state" / "cases" / "images")
            assert os.stat(images).st_mode & 0o777 == 0o700
            assert sorted(os.listdir(str(work))) == ["state"]
            monkeypatch.chdir(str(other))
            case = log.save(textured(0), RESULT, "chest")
    finally:
        os.umask(old_umask)
    assert case.image.startswith(images + os.sep) and os.path.isfile(case.image)
    assert os.listdir(str(other)) == []
    for folder in (images, os.path.dirname(case.image)):
        assert os.stat(folder).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("frame", [np.zeros((4, 4, 4, 4), np.uint8), np.zeros((0, 0, 3), np.uint8)],
                         ids=["imencode-returns-false", "imencode-raises"])
def test_a_frame_opencv_cannot_encode_is_refused_and_nothing_is_saved(tmp_path, frame):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        with pytest.raises(CaseLogError) as caught:
            log.save(frame, RESULT, "chest")
        assert log.cases() == []
    assert os.listdir(os.path.join(state, "cases", "images")) == []
    assert str(caught.value) == ("the frame could not be encoded as PNG. Fix: report this; the camera frame "
                                 "is invalid")


def test_the_free_space_guard_at_its_boundary(tmp_path, monkeypatch):
    """The disk's free space is fixed here (a shared disk's moves between two calls): exactly the
    reserve left is accepted, a quarter MB less is refused, and a GiB is 1024 x 1024 x 1024 bytes."""
    free = {"mb": 100.0}
    monkeypatch.setattr("edge.caselog.free_mb", lambda path: free["mb"])
    with CaseLog(str(tmp_path / "state"), min_free_mb=100) as log:
        log.check_space()  # nothing needed, the reserve exactly left
        free["mb"] = 100.0 + 1024.0
        log.check_space(1024 ** 3)
        free["mb"] = 100.0 + 1024.0 - 0.25
        with pytest.raises(CaseLogError) as caught:
            log.check_space(1024 ** 3)
    assert str(caught.value) == ("Disk nearly full (1124 MB free, 100 MB kept free): case not saved. Fix: "
                                 "export cases with `medkiosk cases export` and free space")


def _aged(path, mtime, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    os.utime(path, ns=(int(mtime * 1e9), int(mtime * 1e9)))
    return path


def test_leftovers_are_removed_once_older_than_a_minute_to_the_second(tmp_path, monkeypatch):
    """The clock is stopped (it would move between setting an age and the open): a leftover exactly
    a minute old stays, one older goes; every removed file is counted."""
    state = str(tmp_path / "state")
    CaseLog(state, min_free_mb=0).open().close()
    day = os.path.join(state, "cases", "images", "20261203")
    now = 2000000000.0
    kept = [_aged(os.path.join(day, name), now - 60.0) for name in ("a.png.1234.tmp", "x.png")]
    gone = [_aged(os.path.join(day, name), now - age)
            for name, age in (("b.png.5678.tmp", 60.5), ("y.png", 61.0), ("z.png", 61.0))]
    monkeypatch.setattr("time.time", lambda: now)
    with CaseLog(state, min_free_mb=0) as log:
        assert log.cleaned == 3
    assert all(os.path.exists(path) for path in kept)
    assert not any(os.path.exists(path) for path in gone)
