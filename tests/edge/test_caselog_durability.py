"""The case log's promises checked where a kill -9 test cannot see them (issue 18).

Durability at the syscall level: ``os.fsync``/``os.rename`` are wrapped by recorders that still
call the real functions, and each recorded fd is named through /proc/self/fd, so a deleted fsync
(invisible to a crash test: the page cache survives the process) fails here. Failures are real:
a table SQLite cannot insert into, an image deleted before export, an export folder that exists.
"""

import csv
import os
import sqlite3
import stat

import numpy as np
import pytest

from edge.caselog import (
    EXPORT_COLUMNS,
    CaseLog,
    CaseLogError,
    free_mb,
    result_summary,
    top3_pairs,
    write_file_atomic,
)

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.81},
                   {"name": "Cardiomegaly", "probability": 0.125},
                   {"name": "No finding", "probability": 0.0449}],
          "uncertain": False, "out_of_scope": False, "quality": {"ok": True}}
CREATED = "2026-11-29T10:00:00+00:00"


def _frame(seed=0):
    return np.random.RandomState(seed).randint(40, 215, size=(48, 64, 3)).astype(np.uint8)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def syscalls(monkeypatch):
    """[(call, path)] of every fsync and rename, in order; the real calls still happen."""
    calls = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        calls.append(("fsync", os.readlink("/proc/self/fd/{}".format(fd))))
        return real_fsync(fd)

    def rename(src, dst):
        calls.append(("rename", str(src), str(dst)))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return calls


def test_save_fsyncs_the_image_then_renames_then_fsyncs_its_folder(tmp_path, syscalls):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        del syscalls[:]
        case = log.save(_frame(), RESULT, "chest", created=CREATED)
        assert log._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: SQLite fsyncs each commit
    folder = os.path.dirname(case.image)
    (tmp,) = [c[1] for c in syscalls if c[0] == "rename"]
    assert syscalls[:3] == [("fsync", tmp), ("rename", tmp, case.image), ("fsync", folder)]
    assert tmp.startswith(case.image + ".") and tmp.endswith(".tmp")
    assert folder == os.path.join(str(tmp_path / "state"), "cases", "images", "20261129")


def test_write_file_atomic_writes_everything_privately(tmp_path, syscalls):
    path = str(tmp_path / "blob.png")
    data = os.urandom(3 * 1024 * 1024 + 17)
    old = os.umask(0)
    try:
        write_file_atomic(path, data)
    finally:
        os.umask(old)
    with open(path, "rb") as handle:
        assert handle.read() == data
    assert _mode(path) == 0o600
    assert [c[0] for c in syscalls] == ["fsync", "rename", "fsync"]
    assert syscalls[2] == ("fsync", str(tmp_path))
    assert os.listdir(str(tmp_path)) == ["blob.png"]


def test_export_fsyncs_every_file_and_folder_before_renaming_it(tmp_path, syscalls):
    usb = tmp_path / "usb"
    usb.mkdir()
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(_frame(), RESULT, "chest", created=CREATED)
        del syscalls[:]
        folder, count = log.export(str(usb), now="2026-11-30T08:00:00+00:00")
    assert count == 1 and folder == os.path.join(str(usb), "medkiosk-cases-20261130T080000")
    # Everything is written into a temporary folder on the stick, fsynced, then renamed into place.
    (image_tmp, _image), (tmp, _folder) = [c[1:] for c in syscalls if c[0] == "rename"]
    assert tmp.startswith(os.path.join(str(usb), ".medkiosk-cases-")) and tmp.endswith(".tmp")
    image = os.path.join(tmp, "images", os.path.basename(case.image))
    assert syscalls == [("fsync", image_tmp), ("rename", image_tmp, image), ("fsync", os.path.dirname(image)),
                        ("fsync", os.path.join(tmp, "cases.csv")), ("fsync", tmp), ("rename", tmp, folder),
                        ("fsync", str(usb))]


def test_sqlite_error_after_the_image_write_is_raised_and_the_image_removed(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        kept = log.save(_frame(0), RESULT, "chest", created=CREATED)
        # Another writer broke the schema: the INSERT fails after the image is on disk.
        other = sqlite3.connect(log.db_path, isolation_level=None)
        other.execute("ALTER TABLE cases RENAME TO cases_old")
        other.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY, uid TEXT)")
        other.close()
        with pytest.raises(CaseLogError) as info:
            log.save(_frame(1), RESULT, "chest", created=CREATED)
    message = str(info.value)
    assert message.startswith("case could not be recorded (") and "Fix: check free space" in message
    assert log.db_path in message
    images = os.listdir(os.path.dirname(kept.image))
    assert images == [os.path.basename(kept.image)]


def _full_stick(monkeypatch, path_part):
    """os.fsync fails with ENOSPC for paths containing ``path_part`` (a full USB stick: cannot exist here)."""
    import errno

    real_fsync = os.fsync

    def fsync(fd):
        if path_part in os.readlink("/proc/self/fd/{}".format(fd)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_failed_export_raises_and_leaves_nothing(tmp_path, monkeypatch):
    usb = tmp_path / "usb"
    usb.mkdir()
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(_frame(), RESULT, "chest", created=CREATED)
        _full_stick(monkeypatch, "cases.csv")
        with pytest.raises(CaseLogError) as info:
            log.export(str(usb), now="2026-11-30T08:00:00+00:00")
        monkeypatch.undo()
        assert str(info.value).startswith("export to {} failed (".format(usb))
        assert "Fix: check the USB stick has space and is writable" in str(info.value)
        assert os.listdir(str(usb)) == []  # the temporary folder is removed: all or nothing
        os.unlink(case.image)  # the image vanished: the export is incomplete, not a success
        with pytest.raises(CaseLogError, match="its image cannot be read"):
            log.export(str(usb), now="2026-11-30T08:00:00+00:00")
        assert os.listdir(str(usb)) == []
        with pytest.raises(CaseLogError) as info:
            log.export(str(tmp_path / "no-usb"))
        assert str(info.value).startswith("export target {} is not a folder".format(tmp_path / "no-usb"))


def test_existing_loose_state_is_tightened(tmp_path):
    state = tmp_path / "state"
    images = state / "cases" / "images"
    day = images / "20261129"
    os.makedirs(str(day))
    for folder in (state, state / "cases", images, day):
        os.chmod(str(folder), 0o777)
    db = state / "cases" / "cases.db"
    sqlite3.connect(str(db)).close()
    os.chmod(str(db), 0o666)
    loose = day / "old.txt"
    loose.write_bytes(b"x")
    os.chmod(str(loose), 0o666)
    with CaseLog(str(state), min_free_mb=0) as log:
        for path in (state, state / "cases", images):
            assert _mode(str(path)) == 0o700, path
        assert _mode(str(db)) == 0o600
        assert _mode(str(day)) == 0o700 and _mode(str(loose)) == 0o600  # tightened when the log opens
        os.chmod(str(day), 0o777)  # loosened again while the kiosk runs: tightened when the next case goes in
        case = log.save(_frame(), RESULT, "chest", created=CREATED)
    assert _mode(str(day)) == 0o700 and _mode(case.image) == 0o600


def test_three_hundred_saves_leak_no_file_handle(tmp_path):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        log.save(_frame(), RESULT, "chest")
        before = sorted(os.listdir("/proc/self/fd"))
        frame = _frame(1)
        for _ in range(300):
            log.save(frame, RESULT, "chest")
        after = sorted(os.listdir("/proc/self/fd"))
        assert len(log.cases()) == 301
    assert len(after) == len(before)


def test_free_space_guard_counts_megabytes(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        stats = os.statvfs(log.root)
        assert free_mb(log.root) == pytest.approx(stats.f_bavail * stats.f_frsize / 1048576.0, abs=64)
        log.min_free_mb = free_mb(log.root) - 2.0
        log.check_space(256 * 1024)  # a quarter MB fits in the 2 MB margin
        with pytest.raises(CaseLogError) as info:
            log.check_space(8 * 1024 * 1024)  # eight MB do not
        assert "MB free, {:.0f} MB kept free): case not saved".format(log.min_free_mb) in str(info.value)
        assert "Fix: export cases with `medkiosk cases export`" in str(info.value)
        log.min_free_mb = free_mb(log.root) + 64.0
        with pytest.raises(CaseLogError):
            log.check_space(0)


@pytest.mark.parametrize("result, summary", [
    (RESULT, {"top1": "Pleural effusion", "top1_probability": 0.81, "uncertain": 0, "out_of_scope": 0,
              "quality_ok": 1}),
    ({"top3": [["X", "0.5"]], "uncertain": True, "out_of_scope": True, "quality": {"ok": False}},
     {"top1": "X", "top1_probability": 0.5, "uncertain": 1, "out_of_scope": 1, "quality_ok": 0}),
    ({}, {"top1": None, "top1_probability": None, "uncertain": 0, "out_of_scope": 0, "quality_ok": 1}),
    ({"quality": None}, {"top1": None, "top1_probability": None, "uncertain": 0, "out_of_scope": 0,
                         "quality_ok": 1}),
])
def test_result_summary_columns(result, summary):
    assert result_summary(result) == summary


def test_top3_pairs_reads_objects_and_pairs():
    pairs = top3_pairs({"top3": [{"name": "a", "probability": "0.5"}, ("b", 0.25)]})
    assert pairs == [("a", 0.5), ("b", 0.25)]
    assert top3_pairs({"top3": None}) == []


def test_export_writes_every_column_including_findings_two_and_three(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    poor = dict(RESULT, uncertain=True, out_of_scope=True, quality={"ok": False},
                top3=[{"name": "Mass", "probability": 0.5}])
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        good = log.save(_frame(0), RESULT, "chest", bundle_id="chest@1+abc", backend="ort", created=CREATED)
        bad = log.save(_frame(1), poor, "chest", created="2026-11-29T10:00:01+00:00")
        folder, count = log.export(str(usb), since=CREATED)  # `since` is inclusive
        records = log.cases()
    assert count == 2 and [r.uid for r in records] == [good.uid, bad.uid]
    assert records[1].quality_ok == 0 and records[0].quality_ok == 1
    with open(os.path.join(folder, "cases.csv")) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == EXPORT_COLUMNS
    name = os.path.basename(good.image)
    assert rows[1] == [good.uid, "K-0001", CREATED, "chest", "chest@1+abc", "ort", "Pleural effusion", "81.0",
                       "Cardiomegaly", "12.5", "No finding", "4.5", "0", "0", "1",
                       os.path.join("images", name), "", ""]  # no patient reference, no referral sheet
    assert rows[2][:2] == [bad.uid, "K-0002"]
    assert rows[2][6:16] == ["Mass", "50.0", "", "", "", "", "1", "1", "0",
                             os.path.join("images", os.path.basename(bad.image))]
    with open(os.path.join(folder, "images", name), "rb") as copied, open(good.image, "rb") as original:
        assert copied.read() == original.read()


def test_record_to_dict_and_lookup(tmp_path):
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(_frame(), RESULT, "chest", bundle_version="1.0.0", precision="fp16", created=CREATED)
        assert log.get("no-such-case") is None
        assert log.cases(since="2026-11-29T10:00:01") == []
        data = log.get(case.uid).to_dict()
    assert data["uid"] == case.uid and data["result"] == RESULT and data["image"] == case.image
    assert data["bundle_version"] == "1.0.0" and data["precision"] == "fp16"
    assert "result_json" not in data
    assert case.uid.startswith("20261129T100000-")
    assert data["image_path"] == os.path.join("images", "20261129", case.uid + ".png")


def test_closed_log_refuses_and_damaged_database_is_named(tmp_path):
    log = CaseLog(str(tmp_path / "state"), min_free_mb=0)
    with pytest.raises(CaseLogError, match="not open. Fix: use CaseLog as a context manager"):
        log.save(_frame(), RESULT, "chest")
    with pytest.raises(CaseLogError) as info:
        log.cases()
    assert str(info.value) == "case log is not open. Fix: use CaseLog as a context manager"
    assert CaseLog(str(tmp_path / "state")).min_free_mb == 200.0  # the shipped reserve
    log.open()
    log.close()
    log.close()  # twice is harmless
    with open(log.db_path, "wb") as handle:
        handle.write(b"this is not a database" * 100)
    with pytest.raises(CaseLogError) as info:
        CaseLog(str(tmp_path / "state")).open()
    assert "the database is damaged" in str(info.value) and "images in" in str(info.value)


def test_unwritable_state_folder_is_a_case_log_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CaseLogError) as info:
        CaseLog(str(blocker / "state")).open()
    assert "cannot be created" in str(info.value) and "--state-dir" in str(info.value)


def test_every_refusal_message_names_the_path_and_the_fix(tmp_path):
    state = str(tmp_path / "state")
    root = os.path.join(state, "cases")
    db = os.path.join(root, "cases.db")
    with pytest.raises(CaseLogError) as info:
        CaseLog(state).open(create=False)
    assert str(info.value) == ("no case log at {}. Fix: check --state-dir (cases are saved with key S in "
                               "`medkiosk run`)".format(db))
    with pytest.raises(CaseLogError) as info:
        CaseLog(state).save(_frame(), RESULT, "chest")
    assert str(info.value) == "case log is not open. Fix: use CaseLog as a context manager"
    with CaseLog(state, min_free_mb=0) as log:
        os.makedirs(os.path.join(root, "images"), exist_ok=True)
        with open(os.path.join(root, "images", "20261129"), "w") as handle:
            handle.write("a file where the day folder goes")
        with pytest.raises(CaseLogError) as info:
            log.save(_frame(), RESULT, "chest", created=CREATED)
        assert str(info.value) == ("case image could not be written (File exists). Fix: check free space and "
                                   "that {} is writable".format(root))
        with pytest.raises(CaseLogError) as info:
            log.export(str(tmp_path / "no-usb"))
        assert str(info.value) == ("export target {} is not a folder. Fix: insert and mount the USB stick, "
                                   "then pass its mount point with --to".format(tmp_path / "no-usb"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CaseLogError) as info:
        CaseLog(str(blocker / "state")).open()
    assert str(info.value) == ("case log {}: cannot be created (Not a directory). Fix: create the folder "
                               "writable by the kiosk user, or set state_dir / --state-dir".format(
                                   blocker / "state" / "cases"))
    with open(db, "wb") as handle:
        handle.write(b"this is not a database" * 100)
    with pytest.raises(CaseLogError) as info:
        CaseLog(state).open()
    assert str(info.value) == ("case log {}: the database is damaged (file is not a database). Fix: move it "
                               "aside; the images in {} are intact".format(db, os.path.join(root, "images")))


def test_failure_messages_carry_the_cause(tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(_frame(), RESULT, "chest", created=CREATED)
        os.unlink(case.image)
        with pytest.raises(CaseLogError) as info:
            log.export(str(usb), now="2026-11-30T08:00:00+00:00")
        assert str(info.value) == ("case {} ({}): its image cannot be read (No such file or directory). "
                                   "Fix: nothing was exported; have the unit checked".format(case.number,
                                                                                             case.uid))
        other = sqlite3.connect(log.db_path, isolation_level=None)
        other.execute("DROP TABLE cases")
        other.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY, uid TEXT)")
        other.close()
        with pytest.raises(CaseLogError) as info:
            log.save(_frame(1), RESULT, "chest")
    assert str(info.value) == ("case could not be recorded (table cases has no column named backend). Fix: "
                               "check free space; the case log at {} is unchanged".format(log.db_path))
    log.min_free_mb = 10 ** 9
    with pytest.raises(CaseLogError) as info:
        log.check_space()
    assert str(info.value).startswith("Disk nearly full (")
    assert str(info.value).endswith(" MB free, 1000000000 MB kept free): case not saved. Fix: export cases "
                                    "with `medkiosk cases export` and free space")


def test_stored_result_is_sorted_json_and_the_default_time_is_utc_seconds(tmp_path):
    result = {"z": 1, "top3": [["X", 0.5]], "a": 2}
    with CaseLog(str(tmp_path / "state"), min_free_mb=0) as log:
        case = log.save(_frame(), result, "chest")
    assert case.result_json == '{"a": 2, "top3": [["X", 0.5]], "z": 1}'
    assert case.created_utc.endswith("+00:00") and "." not in case.created_utc
    assert len(case.uid.split("-")[1]) == 10


def test_with_caselog_never_swallows_an_exception_and_counts_every_cleaned_temporary(tmp_path):
    import time

    state = str(tmp_path / "state")
    log = CaseLog(state, min_free_mb=0)
    assert log.cleaned == 0
    with pytest.raises(KeyError), log:
        raise KeyError("must reach the caller")
    folder = os.path.join(state, "cases", "images", "20261129")
    os.makedirs(folder)
    for name in ("a.png.1.tmp", "b.png.2.tmp", "keep.txt"):
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(b"x")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    with CaseLog(state) as log:
        assert log.cleaned == 2
    assert os.listdir(folder) == ["keep.txt"]
