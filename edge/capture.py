"""Labelled photos for training a module (the skin module): consent first, stored privately on the
unit, exported in the layout ``medkiosk train`` reads.

A capture session is one person photographed (the subject). It starts only when consent was given
(the person or their guardian, ENTER on the kiosk's consent screen); the consent, its time, who
captured and the device are written with every photo. No name is ever stored: the subject is a
random id (``S20261203T114012-3fa9c2``), the only link between photos of one person.

Layout under ``state_dir`` (folders 0700, files 0600, every file written atomically and fsynced)::

    capture/<module>/<subject>/consent.json            the consent of this session
    capture/<module>/<subject>/<subject>_001.png       a photo
    capture/<module>/<subject>/<subject>_001.json      its record (label, times, consent, quality, sha256)
    capture/<module>/exported.json                     the capture index: photos on a USB stick

A photo counts once its record exists (image first, then record); an image without a record (a
crash between the two) and ``.tmp`` leftovers are removed at the next open once older than a minute.
Photos stay on the unit after an export; ``purge`` deletes only those the index records as on a
stick (the root helper's OK received: ``edge.capture_usb``), record first, then image.

``export`` writes ``medkiosk-capture-<module>-<stamp>/`` under the destination: one folder per label
(``fungal_infection/``: matched to the class "Fungal infection" by the trainer), ``capture.csv`` (the
records) and ``README.txt`` (the training commands). The subject id starts every file name, so
``medkiosk data split --patient-pattern SUBJECT_PATTERN`` keeps one person's photos in one split.
It is written into a private temporary folder on the destination and renamed: all or nothing.
"""

import csv
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import uuid

from edge import __version__
from edge.caselog import free_mb, utc_now
from edge.errors import ConfigError, MedkioskError
from edge.i18n import _
from edge.lazy import require
from edge.private_files import (
    TMP_SUFFIX,
    fsync_dir,
    private_dir,
    publish_folder,
    tighten_tree,
    write_file_atomic,
    write_private,
)

CAPTURE_DIR = "capture"
CONSENT_FILE = "consent.json"
EXPORT_PREFIX = "medkiosk-capture-"
MANIFEST_NAME = "capture.csv"
EXPORTED_INDEX = "exported.json"  # the capture index: which photos the root helper put on a stick
MAX_EXPORT_NAMES = 5  # the last stick folders a photo went to, kept in the index
README_NAME = "README.txt"
ORPHAN_MIN_AGE_S = 60.0
# The statement the person (or guardian) agreed to; its id is recorded with every photo.
CONSENT_STATEMENT = "capture-consent-1"
SUBJECT_PATTERN = r"^(?P<patient>S\d{8}T\d{6}-[0-9a-f]{6})_"
_SUBJECT_ID = re.compile(r"^S\d{8}T\d{6}-[0-9a-f]{6}$")
_LABEL = re.compile(r"^\w[\w .()+-]*$")
MAX_LABEL = 60
MAX_CAPTURED_BY = 40
MANIFEST_COLUMNS = ["file", "label", "subject", "captured_utc", "consent", "consent_utc", "consent_statement",
                    "captured_by", "device", "module", "quality_ok", "quality", "sharpness", "brightness",
                    "width", "height", "sha256"]
DEFAULT_LABELS = "Acne, Scabies, Psoriasis, Vitiligo, Warts, Fungal infection, Leprosy"


class CaptureError(MedkioskError):
    """A photo cannot be stored or exported (no consent, disk full, destination not writable, tampering)."""


def label_folder(label):
    """The export folder of a label: lower case, spaces as ``_`` (the trainer matches it to the class)."""
    return "_".join(label.lower().split())


def parse_labels(value, key="[capture] labels"):
    """A label list from config text (commas or new lines) or a list; each must make a safe folder name."""
    if isinstance(value, (list, tuple)):
        items = [str(item).strip() for item in value]
    else:
        items = [part.strip() for part in str(value).replace("\n", ",").split(",")]
    items = [item for item in items if item]
    if len(items) < 2:
        raise ConfigError("config {}: needs at least 2 labels, got {}. Fix: list the module's classes, "
                          "e.g. labels = {}".format(key, items, DEFAULT_LABELS))
    for item in items:
        if len(item) > MAX_LABEL or not _LABEL.match(item):
            raise ConfigError("config {}: label {!r} cannot be a folder name. Fix: use letters, digits, "
                              "spaces and . ( ) + - only (at most {} characters)".format(
                                  key, item, MAX_LABEL))
    folders = [label_folder(item) for item in items]
    if len(set(folders)) != len(folders):
        raise ConfigError("config {}: two labels make the same folder ({}). Fix: list each class "
                          "once".format(key, ", ".join(items)))
    return items


def parse_captured_by(value, key="[capture] captured_by"):
    """Who captures (a staff id, never a patient's name): empty, or one short line."""
    text = str(value or "").strip()
    if len(text) > MAX_CAPTURED_BY or not text.isprintable():
        raise ConfigError("config {}: {!r} is not a short staff id. Fix: set a staff id of at most {} "
                          "printable characters (never a patient's name)".format(key, text, MAX_CAPTURED_BY))
    return text


def read_labels_file(path):
    """Labels, one per line (``#`` comments and blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].strip() for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config [capture] labels_file {}: cannot be read ({}). Fix: point it at a UTF-8 "
                          "text file with one label per line".format(path, exc)) from exc
    return parse_labels([line for line in lines if line], "[capture] labels_file {}".format(path))


def loose_paths(root):
    """[(path, mode)] under ``root`` (itself included) more open than 0700 (folders) or 0600 (files);
    links are skipped. An OSError when a folder cannot be read (never silently skipped)."""
    def refuse(exc):
        raise exc

    found = []
    for folder, _dirs, files in os.walk(root, onerror=refuse):
        mode = stat.S_IMODE(os.lstat(folder).st_mode)
        if mode & 0o077:
            found.append((folder, mode))
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o077:
                found.append((os.path.join(folder, name), stat.S_IMODE(info.st_mode)))
    return found


def new_subject_id(now=None):
    """A random id for one person's session: ``S<UTC date>T<time>-<6 hex>``; no name, no number."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return "S{}-{}".format(now.strftime("%Y%m%dT%H%M%S"), uuid.uuid4().hex[:6])


def device_name():
    return socket.gethostname()


class CaptureSettings(object):
    """The ``[capture]`` config: on/off, the module, its labels, who captures, where exports go."""

    def __init__(self, state_dir, labels, module="skin", captured_by="", export_dir="/media/usb",
                 enabled=True, min_free_mb=200, quality=None):
        self.state_dir = str(state_dir)
        self.labels = parse_labels(labels)
        self.module = module
        self.captured_by = parse_captured_by(captured_by)
        self.export_dir = str(export_dir)  # unused: E exports through the root helper (edge.capture_usb)
        self.enabled = bool(enabled)
        self.min_free_mb = float(min_free_mb)
        self.quality = quality  # edge.quality.QualityThresholds (None: its defaults)

    @classmethod
    def from_config(cls, config):
        from edge.quality import QualityThresholds

        capture, kiosk = config.capture, config.kiosk
        labels = capture["labels"]
        if capture["enabled"] and capture["labels_file"]:
            labels = read_labels_file(capture["labels_file"])
        return cls(kiosk["state_dir"], labels, module=capture["module"], captured_by=capture["captured_by"],
                   export_dir=capture["export_dir"], enabled=capture["enabled"],
                   min_free_mb=kiosk["min_free_mb"], quality=QualityThresholds.from_mapping(config.quality))

    def problem(self):
        """Why capture mode cannot start, with the fix; None when it can."""
        if not self.enabled:
            return _("Capture mode is off. Fix: a technician sets [capture] enabled = yes in the config")
        if not self.captured_by:
            return _("Capture mode needs a staff id. Fix: set [capture] captured_by in the config")
        return None


def _json_bytes(data):
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256_of(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class Session(object):
    """One person's photos: the subject id, the consent record, and how many of each label so far."""

    def __init__(self, subject, folder, consent):
        self.subject = subject
        self.folder = folder
        self.consent = consent
        self.photos = 0
        self.per_label = {}


class CaptureStore(object):
    """The unit's private store of labelled photos of one module; ``open()`` before use."""

    def __init__(self, state_dir, module, min_free_mb=200):
        if not re.match(r"^[\w.-]+$", str(module)) or str(module).startswith("."):
            raise ConfigError("config [capture] module {!r}: not a module id. Fix: e.g. module = skin".format(
                module))
        self.module = str(module)
        self.root = os.path.join(str(state_dir), CAPTURE_DIR, self.module)
        self.min_free_mb = float(min_free_mb)
        self.cleaned = 0

    def open(self):
        try:
            private_dir(os.path.dirname(os.path.dirname(self.root)))
            private_dir(os.path.dirname(self.root))
            private_dir(self.root)
            tighten_tree(os.path.dirname(self.root))  # every module's photos, as the case log does its own
            self.cleaned = self._clean()
        except OSError as exc:
            raise CaptureError("capture store {}: cannot be created ({}). Fix: make the state folder "
                               "writable by the kiosk user, or set [kiosk] state_dir".format(
                                   self.root, exc.strerror)) from exc
        return self

    def _subjects(self):
        return sorted(name for name in os.listdir(self.root)
                      if _SUBJECT_ID.match(name) and os.path.isdir(os.path.join(self.root, name)))

    def _clean(self, min_age_s=ORPHAN_MIN_AGE_S):
        """Remove ``.tmp`` leftovers and photos without a record, once older than ``min_age_s``."""
        import time

        limit, removed = time.time() - min_age_s, 0
        for name in os.listdir(self.root):  # a write of the capture index cut short
            path = os.path.join(self.root, name)
            if name.endswith(TMP_SUFFIX) and os.path.isfile(path) and os.path.getmtime(path) < limit:
                os.unlink(path)
                removed += 1
        for subject in self._subjects():
            folder = os.path.join(self.root, subject)
            names = set(os.listdir(folder))
            for name in sorted(names):
                path = os.path.join(folder, name)
                orphan = name.endswith(".png") and name[:-4] + ".json" not in names
                if (orphan or name.endswith(TMP_SUFFIX)) and os.path.getmtime(path) < limit:
                    os.unlink(path)
                    removed += 1
        return removed

    def start_session(self, consent_given, captured_by, device=None, now=None):
        """A new subject, its consent recorded; refused (CaptureError, nothing written) without consent."""
        if consent_given is not True:
            raise CaptureError("no consent was given: nothing is stored. Fix: photograph only a person who "
                               "(or whose guardian) consented on the consent screen")
        captured_by = parse_captured_by(captured_by)
        if not captured_by:
            raise CaptureError("who captures is not set. Fix: set [capture] captured_by (a staff id)")
        subject = new_subject_id()
        consent = {"given": True, "recorded_utc": now or utc_now(), "statement": CONSENT_STATEMENT,
                   "captured_by": captured_by, "device": device or device_name(), "module": self.module,
                   "subject": subject, "medkiosk": __version__}
        folder = os.path.join(self.root, subject)
        try:
            os.mkdir(folder, 0o700)
            write_file_atomic(os.path.join(folder, CONSENT_FILE), _json_bytes(consent))
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise CaptureError("the consent could not be recorded ({}): nothing stored. Fix: check free "
                               "space and that {} is writable".format(exc.strerror, self.root)) from exc
        return Session(subject, folder, consent)

    def end_session(self, session):
        """Close a session; one without a photo leaves nothing behind (its consent record is removed)."""
        if session.photos == 0 and os.path.isdir(session.folder):
            shutil.rmtree(session.folder)
            fsync_dir(self.root)

    def save(self, session, image_bgr, label, quality=None, now=None):
        """Store one photo of ``session`` labelled ``label``; return its record (a dict)."""
        if session is None or not os.path.isfile(os.path.join(session.folder, CONSENT_FILE)):
            raise CaptureError("no consent recorded for this photo: not stored. Fix: start with the consent "
                               "screen (key C)")
        cv2 = require("cv2")
        ok, encoded = cv2.imencode(".png", image_bgr)
        if not ok:
            raise CaptureError("the camera frame could not be encoded as PNG. Fix: check the camera")
        data = encoded.tobytes()
        available = free_mb(self.root)
        if available - len(data) / (1024.0 * 1024.0) < self.min_free_mb:
            raise CaptureError("Disk nearly full ({:.0f} MB free, {:.0f} MB kept free): photo not stored. "
                               "Fix: export the photos (key E) and free space".format(available,
                                                                                     self.min_free_mb))
        name = "{}_{:03d}".format(session.subject, session.photos + 1)
        record = {"file": name + ".png", "label": label, "subject": session.subject, "module": self.module,
                  "captured_utc": now or utc_now(), "captured_by": session.consent["captured_by"],
                  "device": session.consent["device"], "consent": dict(session.consent),
                  "quality": quality.to_dict() if quality is not None else None,
                  "width": int(image_bgr.shape[1]), "height": int(image_bgr.shape[0]),
                  "sha256": hashlib.sha256(data).hexdigest(), "medkiosk": __version__}
        image_path = os.path.join(session.folder, name + ".png")
        try:
            write_file_atomic(image_path, data)
            write_file_atomic(os.path.join(session.folder, name + ".json"), _json_bytes(record))
        except OSError as exc:
            if os.path.exists(image_path):
                os.unlink(image_path)
            raise CaptureError("photo not stored ({}). Fix: check free space and that {} is writable".format(
                exc.strerror, self.root)) from exc
        session.photos += 1
        session.per_label[label] = session.per_label.get(label, 0) + 1
        return record

    def records(self):
        """Every stored photo's record (a dict with ``path`` added), by subject then file."""
        records = []
        for subject in self._subjects():
            folder = os.path.join(self.root, subject)
            for name in sorted(os.listdir(folder)):
                if name.endswith(".json") and name != CONSENT_FILE:
                    records.append(self._record(folder, name))
        return records

    def _record(self, folder, name):
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            record["path"] = os.path.join(folder, record["file"])
            if record["file"] != name[:-5] + ".png" or not (record.get("consent") or {}).get("given"):
                raise ValueError("it does not describe {} with consent given".format(name[:-5] + ".png"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CaptureError("capture record {} is damaged ({}). Fix: move its subject folder out of {}; "
                               "nothing was exported".format(path, exc, self.root)) from exc
        return record

    def counts(self):
        """{label: number of stored photos}."""
        counts = {}
        for record in self.records():
            counts[record["label"]] = counts.get(record["label"], 0) + 1
        return counts

    def export(self, destination, labels=(), now=None):
        """Copy every photo, by label folder, into a new private folder under ``destination`` (a
        technician's folder: ``medkiosk capture export --to``); return (folder, photos). ``labels``: the
        module's classes (an empty folder for each not yet photographed, so the trainer finds every
        class). All or nothing. Not recorded as exported: only a copy on the stick counts (``export_usb``)."""
        destination = str(destination)
        if not os.path.isdir(destination):
            raise CaptureError("export target {} is not a folder. Fix: pass an existing folder with --to, "
                               "or --usb for the unit's USB stick".format(destination))
        records = self.records()
        if not records:
            raise CaptureError("no photos to export for module {}. Fix: capture photos first (key C in "
                               "the kiosk)".format(self.module))
        folder = self.publish(
            destination, records, labels, now,
            refused=lambda exc: CaptureError(
                "export to {} failed: not writable ({}). Fix: pass a writable folder with --to, or --usb for "
                "the unit's USB stick".format(destination, exc.strerror)),
            failed=lambda exc: CaptureError(
                "export to {} failed ({}); nothing was written. Fix: check the folder has space and is "
                "writable".format(destination, exc.strerror)))
        return folder, len(records)

    def publish(self, destination, records, labels, now, refused, failed):
        """``medkiosk-capture-<module>-<time>`` with ``records`` under ``destination``, all or nothing;
        its path. ``refused``/``failed``: OSError -> the caller's error (private_files.publish_folder)."""
        stamp = (now or utc_now()).replace(":", "").replace("-", "")[:15]
        return publish_folder(destination, "{}{}-{}".format(EXPORT_PREFIX, self.module, stamp), EXPORT_PREFIX,
                              lambda tmp: _write_export(tmp, records, list(labels), self.module),
                              refused=refused, failed=failed)

    # ---- photos exported to a USB stick, and their purge ----
    @property
    def index_path(self):
        return os.path.join(self.root, EXPORTED_INDEX)

    def exported(self):
        """{"<subject>/<file>": {"sha256", "first_utc", "last_utc", "to"}}: photos the root helper put
        on a USB stick (its OK received), from the capture index."""
        try:
            with open(self.index_path, encoding="utf-8") as handle:
                photos = json.load(handle)["photos"]
            for entry in photos.values():  # each: a sha256 and a time it first went to a stick
                if not isinstance(entry.get("sha256"), str):
                    raise ValueError("a photo without its sha256")
                _utc(entry["first_utc"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CaptureError("capture index {} is damaged ({}). Fix: move it aside; its photos then count "
                               "as not exported until exported again (nothing was deleted)".format(
                                   self.index_path, exc)) from exc
        return photos

    def mark_exported(self, records, name, now=None):
        """Record ``records`` as on the stick in folder ``name``: one atomic write of the capture index
        (entries of photos deleted since are dropped)."""
        now = now or utc_now()
        index = self._live(self.exported())
        for record in records:
            entry = index.get(_photo_key(record))
            if entry is None or entry.get("sha256") != record["sha256"]:
                entry = {"sha256": record["sha256"], "first_utc": now, "to": []}
            entry["last_utc"] = now
            entry["to"] = (list(entry.get("to") or []) + [name])[-MAX_EXPORT_NAMES:]
            index[_photo_key(record)] = entry
        self._write_index(index)

    def _live(self, index):
        present = {_photo_key(record) for record in self.records()}
        return {key: entry for key, entry in index.items() if key in present}

    def _write_index(self, index):
        write_file_atomic(self.index_path, _json_bytes({"schema": 1, "module": self.module, "photos": index}))

    def purgeable(self, older_than_days=None, now=None):
        """Records of the photos on a stick, first exported at least ``older_than_days`` days before
        ``now`` (any time when None), and still the photo that went there: its record's sha256 and its
        bytes' are the index's (a photo changed since is not the one on the stick: kept)."""
        index = self.exported()
        limit = None
        if older_than_days is not None:
            limit = _utc(now or utc_now()) - datetime.timedelta(days=float(older_than_days))
        chosen = []
        for record in self.records():
            entry = index.get(_photo_key(record))
            if entry is None or entry["sha256"] != record["sha256"]:
                continue
            if (limit is None or _utc(entry["first_utc"]) <= limit) and _unchanged(record["path"], entry):
                chosen.append(record)
        return chosen

    def purge(self, records):
        """Delete the photos of ``records`` (each: its record, then its image, so a cut leaves at most an
        image without a record, removed at the next open), a person's folder with its consent record
        once no photo is left, then the index without them (atomically); return how many."""
        folders, deleted = set(), 0
        try:
            for record in records:
                folder = os.path.dirname(record["path"])
                os.unlink(os.path.join(folder, record["file"][:-4] + ".json"))
                os.unlink(record["path"])
                folders.add(folder)
                deleted += 1
            for folder in sorted(folders):
                if any(n.endswith(".json") and n != CONSENT_FILE for n in os.listdir(folder)):
                    fsync_dir(folder)
                else:
                    shutil.rmtree(folder)
            fsync_dir(self.root)
            self._write_index(self._live(self.exported()))
        except OSError as exc:
            raise CaptureError("purge stopped after {} photo(s) ({}: {}). Fix: check that {} is writable by "
                               "the kiosk user and run the purge again".format(
                                   deleted, exc.strerror, exc.filename, self.root)) from exc
        return deleted


def _unchanged(path, entry):
    """Whether the photo at ``path`` is still the one the index says went to a stick."""
    try:
        return _sha256_of(path) == entry["sha256"]
    except OSError:  # gone meanwhile: nothing to delete
        return False


def _photo_key(record):
    return "{}/{}".format(record["subject"], record["file"])


def _utc(text):
    """A naive UTC datetime from the ISO time the store writes (``2026-12-03T10:00:00+00:00``)."""
    return datetime.datetime.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S")


def parse_days(text):
    """``--older-than DAYS``: a number of days, 0 or more."""
    try:
        days = float(text)
    except (TypeError, ValueError):
        days = -1.0
    if not 0 <= days <= 36500:
        raise CaptureError("--older-than {!r} is not a number of days. Fix: e.g. --older-than 30 (photos "
                           "first exported 30 or more days ago)".format(text))
    return days


def _verified(record):
    """The photo's bytes after checking them against the sha256 in its record."""
    with open(record["path"], "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise CaptureError("photo {} changed since it was captured (sha256 differs). Fix: nothing was "
                           "exported; move its subject folder aside and have the unit checked".format(
                               record["path"]))
    return data


def _manifest_row(record, relative):
    quality = record.get("quality") or {}
    consent = record["consent"]
    return [relative, record["label"], record["subject"], record["captured_utc"], "given",
            consent["recorded_utc"], consent["statement"], record["captured_by"], record["device"],
            record["module"], int(bool(quality.get("ok", True))), quality.get("message", ""),
            quality.get("sharpness", ""), quality.get("brightness", ""), record["width"], record["height"],
            record["sha256"]]


README = """Labelled photos exported by medkiosk {version} (module {module}), {count} photo(s) of
{subjects} person(s), every one with recorded consent (capture.csv).

One folder per class; the subject id (a random id, no name) starts each file name. Keep one
person's photos in one split:

  medkiosk data split --module {module} --data THIS_FOLDER --out split.json \\
      --patient-pattern '{pattern}'
  medkiosk train --module {module} --data THIS_FOLDER --split-file split.json --out runs/{module}

These photos are patient data: keep them on an encrypted, access-controlled disk, never in git,
and use them only for the purpose the people photographed consented to.
"""


def _write_export(folder, records, labels, module):
    """Class folders with the photos, capture.csv and README.txt (0600 files, 0700 folders, fsynced)."""
    import io

    for label in labels + [record["label"] for record in records]:
        path = os.path.join(folder, label_folder(label))
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
    rows = []
    for record in records:
        relative = "{}/{}".format(label_folder(record["label"]), record["file"])
        write_file_atomic(os.path.join(folder, *relative.split("/")), _verified(record))
        rows.append(_manifest_row(record, relative))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    write_private(os.path.join(folder, MANIFEST_NAME), text.getvalue().encode("utf-8"))
    readme = README.format(version=__version__, module=module, count=len(records), pattern=SUBJECT_PATTERN,
                           subjects=len({record["subject"] for record in records}))
    write_private(os.path.join(folder, README_NAME), readme.encode("utf-8"))
    os.chmod(folder, 0o700)
    for name in os.listdir(folder):
        if os.path.isdir(os.path.join(folder, name)):
            fsync_dir(os.path.join(folder, name))
    fsync_dir(folder)
