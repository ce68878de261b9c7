"""edge.caselog: real SQLite, real files, a real process killed with SIGKILL while saving."""

import csv
import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from edge.caselog import CaseLog, CaseLogError
from tests.edge.kiosk_media import textured

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.81},
                   {"name": "Cardiomegaly", "probability": 0.1},
                   {"name": "No finding", "probability": 0.05}],
          "probabilities": {"effusion": 0.81}, "uncertain": False, "out_of_scope": False,
          "quality": {"ok": True}}


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _age(folder, seconds=3600):
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            past = time.time() - seconds
            os.utime(os.path.join(parent, name), (past, past))


def _image_files(state):
    root = os.path.join(state, "cases")
    return sorted(os.path.relpath(os.path.join(parent, name), root)
                  for parent, _dirs, files in os.walk(os.path.join(root, "images")) for name in files)


def _noise(seed, height=480, width=640):
    import numpy as np

    return np.random.RandomState(seed).randint(0, 255, size=(height, width, 3)).astype(np.uint8)


def test_save_list_and_permissions(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest", bundle_id="chest@1.0.0+abc", bundle_version="1.0.0",
                        bundle_sha256="abc" * 10, backend="onnxruntime (CPU, fp32)", precision="fp32")
        second = log.save(textured(1), dict(RESULT, uncertain=True), "chest")
        assert log.integrity_check() == "ok"
        journal = log._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
        cases = log.cases()
    assert [c.uid for c in cases] == [case.uid, second.uid]
    assert case.top1 == "Pleural effusion" and case.top1_probability == pytest.approx(0.81)
    assert not case.uncertain and second.uncertain
    assert case.result["top3"][0]["name"] == "Pleural effusion"
    with open(case.image, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == case.image_sha256
    assert _mode(state) == 0o700 and _mode(os.path.join(state, "cases")) == 0o700
    assert _mode(os.path.dirname(case.image)) == 0o700
    assert _mode(case.image) == 0o600 and _mode(os.path.join(state, "cases", "cases.db")) == 0o600


def test_disk_nearly_full_refuses_and_keeps_what_is_there(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        kept = log.save(textured(0), RESULT, "chest")
    with CaseLog(state, min_free_mb=10 ** 9) as log:
        with pytest.raises(CaseLogError, match="Disk nearly full") as info:
            log.save(textured(1), RESULT, "chest")
        assert "Fix" in str(info.value)
        assert [c.uid for c in log.cases()] == [kept.uid]
    files = [name for _d, _s, names in os.walk(os.path.join(state, "cases", "images")) for name in names]
    assert files == [os.path.basename(kept.image)]


def test_old_temporaries_are_cleaned_young_ones_kept(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
    folder = os.path.dirname(case.image)
    old, young = os.path.join(folder, "x.png.1234.tmp"), os.path.join(folder, "y.png.5678.tmp")
    for path in (old, young):
        with open(path, "wb") as handle:
            handle.write(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with CaseLog(state) as log:
        assert log.cleaned == 1
        assert len(log.cases()) == 1
    assert not os.path.exists(old) and os.path.exists(young)


def test_export_csv_and_images(tmp_path):
    state = str(tmp_path / "state")
    usb = tmp_path / "usb"
    usb.mkdir()
    with CaseLog(state, min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest", created="2026-11-01T10:00:00+00:00")
        recent = log.save(textured(1), RESULT, "skin", created="2026-11-29T10:00:00+00:00")
        folder, count = log.export(str(usb), since="2026-11-15")
        with pytest.raises(CaseLogError, match="insert and mount the USB stick"):
            log.export(str(tmp_path / "no-usb"))
    assert count == 1
    with open(os.path.join(folder, "cases.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == [recent.uid]
    assert rows[0]["finding_1"] == "Pleural effusion" and rows[0]["percent_1"] == "81.0"
    assert os.path.isfile(os.path.join(folder, rows[0]["image"]))


def test_orphan_images_are_cleaned_on_the_next_open(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
    folder = os.path.dirname(case.image)
    old, young = os.path.join(folder, "orphan-old.png"), os.path.join(folder, "orphan-young.png")
    for path in (old, young):
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG image without a row")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    with CaseLog(state) as log:
        assert log.cleaned == 1
        assert [c.uid for c in log.cases()] == [case.uid]
    assert not os.path.exists(old) and os.path.exists(young) and os.path.isfile(case.image)


def test_loose_permissions_are_tightened_on_open(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
    for path in (state, os.path.join(state, "cases"), os.path.dirname(case.image)):
        os.chmod(path, 0o755)
    os.chmod(case.image, 0o644)
    os.chmod(os.path.join(state, "cases", "cases.db"), 0o644)
    with CaseLog(state) as log:
        assert len(log.cases()) == 1
    assert _mode(state) == 0o700 and _mode(os.path.dirname(case.image)) == 0o700
    assert _mode(case.image) == 0o600 and _mode(os.path.join(state, "cases", "cases.db")) == 0o600


def test_case_numbers_are_short_and_unique(tmp_path):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        numbers = [log.save(textured(i), RESULT, "chest").number for i in range(3)]
    assert numbers == ["K-0001", "K-0002", "K-0003"]
    with CaseLog(state) as log:
        assert log.cases()[-1].to_dict()["number"] == "K-0003"


def test_exports_are_private_and_unique_in_the_same_second(tmp_path):
    state, usb = str(tmp_path / "state"), tmp_path / "usb"
    usb.mkdir()
    with CaseLog(state, min_free_mb=0) as log:
        case = log.save(textured(0), RESULT, "chest")
        first, _count = log.export(str(usb), now="2026-12-01T10:00:00+00:00")
        second, _count = log.export(str(usb), now="2026-12-01T10:00:00+00:00")
    assert first != second and sorted(os.listdir(str(usb))) == sorted(
        os.path.basename(f) for f in (first, second))
    for folder in (first, second):
        assert _mode(folder) == 0o700 and _mode(os.path.join(folder, "images")) == 0o700
        assert _mode(os.path.join(folder, "cases.csv")) == 0o600
        image = os.path.join(folder, "images", os.path.basename(case.image))
        assert _mode(image) == 0o600
        with open(os.path.join(folder, "cases.csv")) as handle:
            assert next(csv.DictReader(handle))["number"] == "K-0001"


def _tamper_row(state, **values):
    connection = sqlite3.connect(os.path.join(state, "cases", "cases.db"))
    with connection:
        for column, value in values.items():
            connection.execute("UPDATE cases SET {} = ?".format(column), (value,))
    connection.close()


def test_export_refuses_an_image_path_outside_the_case_folder(tmp_path):
    state, usb = str(tmp_path / "state"), tmp_path / "usb"
    usb.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not a case")
    with CaseLog(state, min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest")
    for escape in ("images/../../../secret.txt", str(secret), "cases.db"):
        _tamper_row(state, image_path=escape)
        with CaseLog(state) as log, pytest.raises(CaseLogError, match="points outside the case") as info:
            log.export(str(usb))
        assert "K-0001" in str(info.value) and os.listdir(str(usb)) == [], escape


def test_export_rechecks_each_image_sha256(tmp_path):
    state, usb = str(tmp_path / "state"), tmp_path / "usb"
    usb.mkdir()
    with CaseLog(state, min_free_mb=0) as log:
        log.save(textured(0), RESULT, "chest")
        changed = log.save(textured(1), RESULT, "chest")
    with open(changed.image, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with CaseLog(state) as log, pytest.raises(CaseLogError, match="K-0002 .*changed since it was saved"):
        log.export(str(usb))
    assert os.listdir(str(usb)) == []


def _export_to_a_small_disk(tmp_path, usb, before_export=None):
    state = str(tmp_path / "state")
    with CaseLog(state, min_free_mb=0) as log:
        for seed in range(3):  # noise does not compress: ~0.9 MB each, more than the 1 MB disk holds
            log.save(_noise(seed), RESULT, "chest")
        if before_export:
            before_export()
        with pytest.raises(CaseLogError, match="nothing was written") as info:
            log.export(usb)
    assert os.listdir(usb) == [], "a failed export left something behind"
    return info.value


def test_export_to_a_full_tmpfs_leaves_nothing(tmp_path):
    usb = str(tmp_path / "usb")
    os.mkdir(usb)
    mounted = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", usb],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-fault test covers the logic")
    try:
        error = _export_to_a_small_disk(tmp_path, usb)
        assert "No space left on device" in str(error)
    finally:
        subprocess.check_call(["umount", usb])


def test_export_with_a_write_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import edge.caselog

    real, calls = edge.caselog.write_file_atomic, []

    def fail_on_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    usb = str(tmp_path / "usb")
    os.mkdir(usb)
    error = _export_to_a_small_disk(
        tmp_path, usb, lambda: monkeypatch.setattr(edge.caselog, "write_file_atomic", fail_on_second))
    assert len(calls) == 2 and "No space left on device" in str(error)


def test_opening_a_missing_log_without_create(tmp_path):
    with pytest.raises(CaseLogError, match="no case log"):
        CaseLog(str(tmp_path)).open(create=False)


SAVER = r"""
import sys
sys.path.insert(0, {root!r})
import numpy as np
from edge.caselog import CaseLog
rng = np.random.RandomState(0)
log = CaseLog({state!r}, min_free_mb=0).open()
result = {{"top3": [["a", 0.9], ["b", 0.05], ["c", 0.05]], "uncertain": False}}
count = 0
while True:
    # large, noisy frames make each PNG write take a while, so the kill lands mid-save
    log.save(rng.randint(0, 255, size=(480, 640, 3)).astype(np.uint8), result, "chest")
    count += 1
    sys.stdout.write("saved %d\n" % count)
    sys.stdout.flush()
"""


@pytest.mark.parametrize("kill_after", [2, 5])
def test_case_log_survives_kill_9_while_saving(tmp_path, kill_after):
    state = str(tmp_path / "state")
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=ROOT, state=state))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        saved = 0
        deadline = time.monotonic() + 60
        while saved < kill_after and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, process.stderr.read().decode()
            saved = int(line.split()[1])
        time.sleep(0.05 * kill_after)  # land somewhere inside a later save
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    db_path = os.path.join(state, "cases", "cases.db")
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = connection.execute("SELECT image_path, image_sha256 FROM cases").fetchall()
    connection.close()
    assert len(rows) >= saved
    for relative, digest in rows:
        path = os.path.join(state, "cases", relative)
        assert not relative.endswith(".tmp")
        with open(path, "rb") as handle:  # every row's file exists, complete
            assert hashlib.sha256(handle.read()).hexdigest() == digest
    with CaseLog(state) as log:
        listed = log.cases()
        assert len(listed) == len(rows) and all(os.path.isfile(c.image) for c in listed)
    _age(os.path.join(state, "cases", "images"))  # a minute later: the kiosk is surely not mid-save
    with CaseLog(state) as log:
        # An image whose row the kill prevented (or a .tmp) is gone; every case's image is there.
        assert _image_files(state) == sorted(relative for relative, _digest in rows)
        assert log.save(textured(0), RESULT, "chest").uid  # and it keeps working
