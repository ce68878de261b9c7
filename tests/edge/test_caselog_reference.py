"""edge.caselog: the patient reference, the schema migration of an older case log, "new" cases and
the referral sheets in an export (real SQLite, real files, real PDFs)."""

import csv
import os
import sqlite3
import stat

import pytest

from edge.caselog import REFERENCE_MAX, SCHEMA_VERSION, CaseLog, CaseLogError, clean_reference
from tests.edge.kiosk_media import textured

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.81}], "uncertain": False,
          "out_of_scope": False, "quality": {"ok": True}}
# The case log as the first version wrote it (before patient_ref and exported_utc), row included.
V1_SCHEMA = """
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, created_utc TEXT NOT NULL,
    module TEXT NOT NULL, bundle_id TEXT, bundle_version TEXT, bundle_sha256 TEXT, backend TEXT,
    precision TEXT, image_path TEXT NOT NULL, image_sha256 TEXT NOT NULL, top1 TEXT, top1_probability REAL,
    uncertain INTEGER NOT NULL DEFAULT 0, out_of_scope INTEGER NOT NULL DEFAULT 0,
    quality_ok INTEGER NOT NULL DEFAULT 1, result_json TEXT NOT NULL);
CREATE INDEX cases_created ON cases (created_utc);
INSERT INTO cases (uid, created_utc, module, image_path, image_sha256, top1, result_json)
VALUES ('20261101T080000-0123456789', '2026-11-01T08:00:00+00:00', 'chest',
        'images/20261101/20261101T080000-0123456789.png', 'abc', 'effusion', '{"top3": []}');
"""


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("typed, stored", [
    ("1234", "1234"), ("opd-77".replace("-", ""), "OPD77"), ("  a1 ", "A1"), ("", None), ("   ", None),
    (None, None), ("9" * REFERENCE_MAX, "9" * REFERENCE_MAX)])
def test_reference_is_cleaned(typed, stored):
    assert clean_reference(typed) == stored


@pytest.mark.parametrize("typed", ["9" * (REFERENCE_MAX + 1), "A 1", "Jane Doe", "12/4", "१२३", "x;DROP"])
def test_reference_refused_with_the_rule(typed):
    with pytest.raises(CaseLogError, match=r"not allowed\. Fix: use 1-16 letters A-Z or digits"):
        clean_reference(typed)


def test_reference_saved_listed_and_a_bad_one_saves_nothing(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest", patient_ref="opd4521")
        plain = log.save(textured(1), RESULT, "chest")
        with pytest.raises(CaseLogError, match="not allowed"):
            log.save(textured(2), RESULT, "chest", patient_ref="Jane Doe")
        cases = log.cases()
    assert [(c.number, c.patient_ref) for c in cases] == [("K-0001", "OPD4521"), ("K-0002", None)]
    assert case.to_dict()["patient_ref"] == "OPD4521" and plain.exported_utc is None
    images = [n for _d, _s, names in os.walk(os.path.join(state, "cases", "images")) for n in names]
    assert len(images) == 2  # the refused one never reached the disk


def test_an_older_case_log_is_migrated_in_place(tmp_path):
    root = tmp_path / "state" / "cases"
    root.mkdir(parents=True)
    db = sqlite3.connect(str(root / "cases.db"))
    db.executescript(V1_SCHEMA)
    db.close()
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        assert log.schema_version() == SCHEMA_VERSION == 2
        old = log.cases()
        new = log.save(textured(0), RESULT, "chest", patient_ref="77")
        assert log.integrity_check() == "ok"
    assert [(c.number, c.uid, c.patient_ref, c.exported_utc) for c in old] == [
        ("K-0001", "20261101T080000-0123456789", None, None)]
    assert new.number == "K-0002" and new.patient_ref == "77"
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:  # a second open changes nothing
        assert log.schema_version() == 2 and [c.patient_ref for c in log.cases()] == [None, "77"]
        assert [c.uid for c in log.cases(new_only=True)] == [old[0].uid, new.uid]


def test_new_cases_are_those_not_marked_exported(tmp_path):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        first = log.save(textured(0), RESULT, "chest", created="2026-12-03T09:00:00+00:00")
        second = log.save(textured(1), RESULT, "chest", created="2026-12-03T09:30:00+00:00")
        log.mark_exported([first.uid], when="2026-12-03T10:00:00+00:00")
        assert [c.uid for c in log.cases(new_only=True)] == [second.uid]
        assert log.get(first.uid).exported_utc == "2026-12-03T10:00:00+00:00"
        third = log.save(textured(2), RESULT, "chest", created="2026-12-03T10:30:00+00:00")
        assert [c.uid for c in log.cases(new_only=True)] == [second.uid, third.uid]
        assert [c.uid for c in log.cases(since=third.created_utc, new_only=True)] == [third.uid]
        log.mark_exported([second.uid, third.uid])
        assert log.cases(new_only=True) == []
        assert len(log.cases()) == 3


def test_export_with_referral_sheets(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    calls = []

    def referral(record, data):
        calls.append((record.number, data[:8]))
        return b"%PDF-1.3 sheet of " + record.number.encode()

    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest", patient_ref="A7")
        log.save(textured(1), RESULT, "chest")
        folder, count = log.export(str(usb), referral=referral)
    assert count == 2 and calls == [("K-0001", b"\x89PNG\r\n\x1a\n"), ("K-0002", b"\x89PNG\r\n\x1a\n")]
    with open(os.path.join(folder, "cases.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["number"], r["patient_ref"], r["referral"]) for r in rows] == [
        ("K-0001", "A7", "referrals/K-0001.pdf"), ("K-0002", "", "referrals/K-0002.pdf")]
    sheet = os.path.join(folder, "referrals", "K-0002.pdf")
    with open(sheet, "rb") as handle:
        assert handle.read() == b"%PDF-1.3 sheet of K-0002"
    assert _mode(sheet) == 0o600 and _mode(os.path.dirname(sheet)) == 0o700


def test_a_failing_sheet_leaves_no_export(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()

    def referral(record, data):
        if record.number == "K-0002":
            raise OSError(28, "No space left on device")
        return b"%PDF"

    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest")
        log.save(textured(1), RESULT, "chest")
        with pytest.raises(CaseLogError, match=r"No space left on device\); nothing was written"):
            log.export(str(usb), referral=referral)
    assert os.listdir(str(usb)) == []


def test_marking_that_fails_says_they_will_be_exported_again(tmp_path):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
        # Another writer made the table refuse updates: the mark fails, nothing is half-marked.
        log._db.execute("CREATE TRIGGER no_updates BEFORE UPDATE ON cases BEGIN "
                        "SELECT RAISE(ABORT, 'read-only table'); END")
        with pytest.raises(CaseLogError, match=r"could not be marked \(read-only table\)\. Fix: check free "
                                               r"space; they will be exported again next time"):
            log.mark_exported([case.uid])
        assert [c.uid for c in log.cases(new_only=True)] == [case.uid]
