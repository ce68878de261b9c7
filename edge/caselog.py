"""The case log: saved frames and their results, private to the device, crash safe.

Layout under ``state_dir`` (default /var/lib/medkiosk)::

    cases/cases.db              SQLite, WAL, synchronous=FULL
    cases/images/YYYYMMDD/<case uid>.png

A case is saved image first (temporary file, fsync, rename, fsync of the folder), then its row,
so a row never points at a missing file; a crash can leave at most an image without a row or a
``.tmp`` file, both cleaned up at the next open (once older than a minute: the running kiosk may
be between the two steps). Folders are 0700, files 0600; looser ones left by an older version
are tightened at open. When the disk is nearly full the save is refused (CaseLogError) and nothing
already saved is touched.

Each case has a short number a person can read out (``K-0042``: the row id, never reused on the
unit) beside its long unique id, and optionally a patient reference typed on the kiosk's keypad
(``clean_reference``: 1-16 letters/digits). ``export`` re-checks each image's path and sha256, writes
into a private temporary folder on the destination's filesystem and renames it: a failed export
leaves nothing behind, and two exports in the same second get two folders. ``export(new_only=True)``
takes the cases not exported yet; ``mark_exported`` records them once the export is safely on the
stick (``edge.usb_export``).

Schema versions (``PRAGMA user_version``): 0/1 the first case log, 2 adds ``patient_ref`` and
``exported_utc``. An older case log is migrated in place at open (columns added, nothing rewritten).
"""

import csv
import datetime
import hashlib
import json
import os
import re
import sqlite3
import uuid

from edge.errors import MedkioskError
from edge.lazy import require
from edge.private_files import (
    TMP_SUFFIX,
    fsync_dir,
    private_dir,
    publish_folder,
    tighten_tree,
    write_file_atomic,
)

DB_NAME = "cases.db"
CASES_DIR = "cases"
IMAGES_DIR = "images"
EXPORT_PREFIX = "medkiosk-cases-"
CASE_NUMBER = "K-{:04d}"
ORPHAN_MIN_AGE_S = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    created_utc TEXT NOT NULL,
    module TEXT NOT NULL,
    bundle_id TEXT,
    bundle_version TEXT,
    bundle_sha256 TEXT,
    backend TEXT,
    precision TEXT,
    image_path TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    top1 TEXT,
    top1_probability REAL,
    uncertain INTEGER NOT NULL DEFAULT 0,
    out_of_scope INTEGER NOT NULL DEFAULT 0,
    quality_ok INTEGER NOT NULL DEFAULT 1,
    result_json TEXT NOT NULL,
    patient_ref TEXT,
    exported_utc TEXT
);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_utc);
"""
SCHEMA_VERSION = 2
# Columns added after the first version: (name, SQL type), added by ALTER TABLE to an older log.
MIGRATIONS = (("patient_ref", "TEXT"), ("exported_utc", "TEXT"))
COLUMNS = ("id", "uid", "created_utc", "module", "bundle_id", "bundle_version", "bundle_sha256", "backend",
           "precision", "image_path", "image_sha256", "top1", "top1_probability", "uncertain", "out_of_scope",
           "quality_ok", "result_json", "patient_ref", "exported_utc")

# patient_ref and referral came later: at the end, so older readers of the CSV keep their columns.
EXPORT_COLUMNS = ["case", "number", "created_utc", "module", "bundle", "backend", "finding_1", "percent_1",
                  "finding_2", "percent_2", "finding_3", "percent_3", "uncertain", "out_of_scope",
                  "quality_ok", "image", "patient_ref", "referral"]
REFERRALS_DIR = "referrals"
UNENCODABLE = "the frame could not be encoded as PNG. Fix: report this; the camera frame is invalid"
REFERENCE_MAX = 16
REFERENCE_PATTERN = re.compile(r"^[A-Z0-9]{1," + str(REFERENCE_MAX) + r"}$")


class CaseLogError(MedkioskError):
    """A case cannot be saved or read (disk full, unwritable state folder, damaged database)."""


def clean_reference(text):
    """A patient reference as stored: upper case, 1-16 letters A-Z or digits; None for empty/None.

    Raises CaseLogError for anything else (no names, no spaces, no punctuation: a clinic's file
    number, not an identity)."""
    if text is None:
        return None
    value = str(text).strip().upper()
    if not value:
        return None
    if not REFERENCE_PATTERN.match(value):
        raise CaseLogError("patient reference {!r} is not allowed. Fix: use 1-{} letters A-Z or digits "
                           "(a clinic file number, never a name)".format(value[:40], REFERENCE_MAX))
    return value


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def free_mb(path):
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize / (1024.0 * 1024.0)


def top3_pairs(result):
    """[(name, probability)] from a result dict's "top3" (``Prediction.to_dict`` objects or pairs)."""
    pairs = []
    for item in result.get("top3") or []:
        if isinstance(item, dict):
            pairs.append((item.get("name"), float(item.get("probability"))))
        else:
            pairs.append((item[0], float(item[1])))
    return pairs


def result_summary(result):
    """Columns derived from a result dict (``Prediction.to_dict()`` plus what the kiosk adds)."""
    top3 = top3_pairs(result)
    quality = result.get("quality") or {}
    return {
        "top1": top3[0][0] if top3 else None,
        "top1_probability": top3[0][1] if top3 else None,
        "uncertain": int(bool(result.get("uncertain"))),
        "out_of_scope": int(bool(result.get("out_of_scope"))),
        "quality_ok": int(bool(quality.get("ok", True))),
    }


class CaseRecord(object):
    """One row of the case log; ``image`` is the absolute image path."""

    def __init__(self, row, root):
        for name in COLUMNS:
            setattr(self, name, row[name])
        self.image = os.path.join(root, row["image_path"])
        self.result = json.loads(row["result_json"])

    @property
    def number(self):
        """The short case number a health worker reads out (K-0042), unique on this unit."""
        return CASE_NUMBER.format(self.id)

    def to_dict(self):
        data = {name: getattr(self, name) for name in COLUMNS if name != "result_json"}
        data["result"] = self.result
        data["image"] = self.image
        data["number"] = self.number
        return data


class CaseLog(object):
    """Open (creating if needed) the case log under ``state_dir``; use as a context manager."""

    def __init__(self, state_dir, min_free_mb=200):
        # Absolute once, here: a relative --state-dir would otherwise resolve against whatever the
        # working directory is at each later call (images in one place, their rows' paths in another).
        self.state_dir = os.path.abspath(str(state_dir))
        self.root = os.path.join(self.state_dir, CASES_DIR)
        self.images = os.path.join(self.root, IMAGES_DIR)
        self.db_path = os.path.join(self.root, DB_NAME)
        self.min_free_mb = float(min_free_mb)
        self.cleaned = 0
        self._db = None

    def open(self, create=True):
        if not create and not os.path.isfile(self.db_path):
            raise CaseLogError("no case log at {}. Fix: check --state-dir (cases are saved with key S in "
                               "`medkiosk run`)".format(self.db_path))
        try:
            private_dir(self.state_dir)
            private_dir(self.root)
            private_dir(self.images)
            fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.db_path, 0o600)
            self._db = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._migrate()
        except OSError as exc:
            raise CaseLogError("case log {}: cannot be created ({}). Fix: create the folder writable by the "
                               "kiosk "
                               "user, or set state_dir / "
                               "--state-dir".format(self.root, exc.strerror)) from exc
        except sqlite3.DatabaseError as exc:
            raise CaseLogError("case log {}: the database is damaged ({}). Fix: move it aside; the images "
                               "in {} are intact".format(self.db_path, exc, self.images)) from exc
        tighten_tree(self.root)
        self.cleaned = self._clean_temporaries() + self._clean_orphans()
        return self

    def _migrate(self):
        """Bring an older case log to SCHEMA_VERSION: add the missing columns (existing rows keep
        NULL: no patient reference, never exported)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        present = {row[1] for row in self._db.execute("PRAGMA table_info(cases)")}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for name, kind in MIGRATIONS:
                if name not in present:
                    self._db.execute("ALTER TABLE cases ADD COLUMN {} {}".format(name, kind))
            self._db.execute("PRAGMA user_version = {:d}".format(SCHEMA_VERSION))

    def schema_version(self):
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def _clean_temporaries(self, min_age_s=60.0):
        """Remove ``.tmp`` leftovers of interrupted saves (never listed, never exported).

        Young ones are left alone: another process (the running kiosk) may be writing them now.
        """
        import time

        removed = 0
        limit = time.time() - min_age_s
        for folder, _dirs, files in os.walk(self.images):
            for name in files:
                path = os.path.join(folder, name)
                if name.endswith(TMP_SUFFIX) and os.path.getmtime(path) < limit:
                    os.unlink(path)
                    removed += 1
        return removed

    def _clean_orphans(self, min_age_s=ORPHAN_MIN_AGE_S):
        """Remove case images no row points at (a kill between the image and its row), once not young."""
        import time

        known = {row[0] for row in self._db.execute("SELECT image_path FROM cases")}
        removed = 0
        limit = time.time() - min_age_s
        for folder, _dirs, files in os.walk(self.images):
            for name in files:
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, self.root)
                if (name.endswith(".png") and relative not in known and not os.path.islink(path)
                        and os.path.getmtime(path) < limit):
                    os.unlink(path)
                    removed += 1
        return removed

    def check_space(self, needed_bytes=0):
        """Raise CaseLogError when saving would leave less than ``min_free_mb`` free."""
        available = free_mb(self.root)
        if available - needed_bytes / (1024.0 * 1024.0) < self.min_free_mb:
            raise CaseLogError("Disk nearly full ({:.0f} MB free, {:.0f} MB kept free): case not saved. "
                               "Fix: export "
                               "cases with `medkiosk cases export` and free "
                               "space".format(available, self.min_free_mb))

    def save(self, image_bgr, result, module, bundle_id=None, bundle_version=None, bundle_sha256=None,
             backend=None, precision=None, created=None, patient_ref=None):
        """Save one case; return its CaseRecord. ``result``: a JSON-serialisable dict; ``patient_ref``:
        an optional reference (``clean_reference``)."""
        if self._db is None:
            raise CaseLogError("case log is not open. Fix: use CaseLog as a context manager")
        patient_ref = clean_reference(patient_ref)
        data = _png_bytes(image_bgr)
        self.check_space(len(data))
        created = created or utc_now()
        uid = "{}-{}".format(created.replace(":", "").replace("-", "")[:15], uuid.uuid4().hex[:10])
        day_dir = os.path.join(self.images, created[:10].replace("-", ""))
        relative = os.path.relpath(os.path.join(day_dir, uid + ".png"), self.root)
        result_json = json.dumps(result, sort_keys=True)
        summary = result_summary(result)
        try:
            private_dir(day_dir)
            write_file_atomic(os.path.join(self.root, relative), data)
        except OSError as exc:
            raise CaseLogError("case image could not be written ({}). Fix: check free space and that {} is "
                               "writable".format(exc.strerror, self.root)) from exc
        values = {"uid": uid, "created_utc": created, "module": module, "bundle_id": bundle_id,
                  "bundle_version": bundle_version, "bundle_sha256": bundle_sha256, "backend": backend,
                  "precision": precision, "image_path": relative,
                  "image_sha256": hashlib.sha256(data).hexdigest(),
                  "result_json": result_json, "patient_ref": patient_ref}
        values.update(summary)
        names = sorted(values)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO cases ({}) VALUES ({})".format(
                    ", ".join(names), ", ".join("?" for _ in names)), [values[n] for n in names])
        except sqlite3.Error as exc:
            os.unlink(os.path.join(self.root, relative))
            raise CaseLogError("case could not be recorded ({}). Fix: check free space; the case log at {} "
                               "is "
                               "unchanged".format(exc, self.db_path)) from exc
        return self.get(uid)

    def get(self, uid):
        row = self._db.execute("SELECT * FROM cases WHERE uid = ?", (uid,)).fetchone()
        return CaseRecord(row, self.root) if row else None

    def cases(self, since=None, new_only=False):
        """All cases (oldest first), optionally those created at or after ``since`` (ISO date/time) and
        with ``new_only`` those not exported yet."""
        if self._db is None:
            raise CaseLogError("case log is not open. Fix: use CaseLog as a context manager")
        clauses, params = [], []
        if since:
            clauses.append("created_utc >= ?")
            params.append(since)
        if new_only:
            clauses.append("exported_utc IS NULL")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return [CaseRecord(row, self.root)
                for row in self._db.execute("SELECT * FROM cases" + where + " ORDER BY id", params)]

    def mark_exported(self, uids, when=None):
        """Record that these cases are safely on a stick (``new_only`` exports skip them from now on)."""
        when = when or utc_now()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("UPDATE cases SET exported_utc = ? WHERE uid = ?",
                                     [(when, uid) for uid in uids])
        except sqlite3.Error as exc:
            raise CaseLogError("the exported cases could not be marked ({}). Fix: check free space; they "
                               "will be exported again next time".format(exc)) from exc

    def integrity_check(self):
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def verified_image(self, record):
        """The bytes of a case's image after checking its path stays in the case folder and its sha256."""
        images = os.path.realpath(self.images)
        path = os.path.realpath(os.path.join(self.root, record.image_path))
        if os.path.isabs(record.image_path) or os.path.commonpath([images, path]) != images:
            raise CaseLogError("case {} ({}): its image path {!r} points outside the case folder (the case "
                               "log was altered). Fix: nothing was exported; have the unit checked".format(
                                   record.number, record.uid, record.image_path))
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise CaseLogError("case {} ({}): its image cannot be read ({}). Fix: nothing was exported; have "
                               "the unit checked".format(record.number, record.uid, exc.strerror)) from exc
        if hashlib.sha256(data).hexdigest() != record.image_sha256:
            raise CaseLogError("case {} ({}): its image changed since it was saved (sha256 differs). Fix: "
                               "nothing was exported; have the unit checked".format(
                                   record.number, record.uid))
        return data

    def export(self, destination, since=None, now=None, new_only=False, referral=None):
        """Copy cases (CSV + images, + referral sheets when ``referral`` is given) into a new private
        folder under ``destination``; return (folder, count)."""
        records = self.cases(since, new_only=new_only)
        return self.export_records(destination, records, now=now, referral=referral), len(records)

    def export_records(self, destination, records, now=None, referral=None):
        """Write ``records`` into a new private folder under ``destination``; return its path.

        Written into a temporary folder beside the result and renamed: all or nothing.
        ``referral(record, image_bytes)`` -> PDF bytes adds ``referrals/K-0042.pdf`` for each case.
        """
        if not os.path.isdir(destination):
            raise CaseLogError("export target {} is not a folder. Fix: insert and mount the USB stick, then "
                               "pass its mount point with --to".format(destination))
        stamp = (now or utc_now()).replace(":", "").replace("-", "")[:15]
        return publish_folder(
            destination, EXPORT_PREFIX + stamp, EXPORT_PREFIX,
            lambda tmp: _write_export(tmp, records, self.verified_image, referral),
            refused=lambda exc: CaseLogError(
                "export to {} failed ({}). Fix: check the USB stick is mounted writable and has "
                "space".format(destination, exc.strerror)),
            failed=lambda exc: CaseLogError(
                "export to {} failed ({}); nothing was written. Fix: check the USB stick has space and is "
                "writable".format(destination, exc.strerror)))


def _write_export(folder, records, read_image, referral=None):
    """cases.csv, images/ and referrals/ (0600 files, 0700 folders, each fsynced) into ``folder``."""
    images = os.path.join(folder, IMAGES_DIR)
    os.mkdir(images, 0o700)
    if referral is not None:
        os.mkdir(os.path.join(folder, REFERRALS_DIR), 0o700)
    rows = []
    for record in records:
        name = os.path.basename(record.image_path)
        data = read_image(record)
        write_file_atomic(os.path.join(images, name), data)
        sheet = ""
        if referral is not None:
            sheet = os.path.join(REFERRALS_DIR, record.number + ".pdf")
            write_file_atomic(os.path.join(folder, sheet), referral(record, data))
        top3 = top3_pairs(record.result) + [(None, None)] * 3
        rows.append([record.uid, record.number, record.created_utc, record.module, record.bundle_id,
                     record.backend, top3[0][0], _pct(top3[0][1]), top3[1][0], _pct(top3[1][1]),
                     top3[2][0], _pct(top3[2][1]), record.uncertain, record.out_of_scope, record.quality_ok,
                     os.path.join(IMAGES_DIR, name), record.patient_ref or "", sheet])
    fd = os.open(os.path.join(folder, "cases.csv"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(folder, 0o700)
    fsync_dir(folder)


def _png_bytes(image_bgr):
    """The frame as PNG bytes; CaseLogError when OpenCV refuses it (it returns False for some frames
    and raises for others, an empty one for instance)."""
    cv2 = require("cv2")
    try:
        ok, encoded = cv2.imencode(".png", image_bgr)
    except cv2.error as exc:
        raise CaseLogError(UNENCODABLE) from exc
    if not ok:
        raise CaseLogError(UNENCODABLE)
    return encoded.tobytes()


def _pct(probability):
    return "" if probability is None else "{:.1f}".format(100.0 * float(probability))
