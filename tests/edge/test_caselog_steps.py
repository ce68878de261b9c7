"""edge.caselog step by step (mutation survivors, issue 18): the export's refusals of an altered case
log, word for word, and which cases ``export`` takes (real SQLite, real files)."""

import csv
import os
import sqlite3

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
