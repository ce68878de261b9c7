"""The kiosk's E key: the new cases (never exported yet) onto the USB stick, with their referral sheets.

The kiosk runs unprivileged (``NoNewPrivileges=yes``: no sudo) and the stick is mounted read-only,
so the work is split in two:

1. Here, as the kiosk user: the new cases (``CaseLog.cases(new_only=True)``) are written, complete
   and private (CSV, images, one referral PDF each), into the outbox under the state folder
   (``CaseLog.export_records``: temporary folder, fsync, rename).
2. The one privileged step: a request ``EXPORT <folder name>`` to the root helper
   (``systemd/medkiosk-usb-export``, started per connection by ``medkiosk-usb-export.socket``). It
   remounts the stick read-write, copies the folder into a hidden temporary folder, syncs, renames it
   to a name not used yet, syncs and remounts read-only; it answers ``OK <name>`` or
   ``FAIL <code> <message>``.

Only after ``OK`` are the cases marked exported (the next E skips them); the outbox copy is removed
either way. Every failure is one UsbExportError line (shown on screen and written to the journal).

Capture mode's photos (E in capture mode, ``medkiosk capture export --usb``) take the same path with
``EXPORT medkiosk-capture-<module>-<time>`` (``edge.capture_usb``: ``clear_outbox``, ``check_room``,
``send``).

One export at a time per outbox (``UsbExporter.locked``: ``flock`` on the outbox folder itself, held
from clearing the leftovers to the helper's answer): the kiosk's E and a technician's ``medkiosk
cases|capture export --usb`` share the outbox, and each starts by clearing it, which would delete the
other's staged folder while the helper copies it (the helper's own lock only serialises the stick).
The second is refused (code ``busy``) and nothing of the first is touched.

How the request reaches the helper is a trigger named in the config (``usb_export``):
``socket:/run/medkiosk-usb-export.sock`` on the unit; ``command:/path/to/helper`` runs the helper
directly (a PC, the tests).
"""

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import subprocess

from edge.errors import MedkioskError
from edge.i18n import N_, _
from edge.private_files import private_dir

DEFAULT_TRIGGER = "socket:/run/medkiosk-usb-export.sock"
OUTBOX_DIR = "usb-outbox"
REPLY_TIMEOUT_S = 600.0
# Room the outbox needs per case beyond its image: the referral sheet and the CSV row, with margin
# (the sheet of a 1280x720 frame measured 0.19 MB: docs/technician.md).
SHEET_ALLOWANCE_BYTES = 1024 * 1024
SAFE_TO_REMOVE = N_("Safe to remove the USB stick - {} case(s) exported to {}")
NOTHING_NEW = N_("No new cases to export")


class UsbExportError(MedkioskError):
    """The new cases could not be put on the USB stick; nothing was marked exported."""

    def __init__(self, message, code="failed"):
        super().__init__(message)
        self.code = code


def parse_reply(reply):
    """The helper's one-line answer -> the folder name on the stick; FAIL -> UsbExportError."""
    line = (reply or "").strip()
    word, _sep, rest = line.partition(" ")
    if word == "OK" and rest:
        return rest
    if word == "FAIL":
        code, _sep, message = rest.partition(" ")
        raise UsbExportError(message or code, code=code or "failed")
    raise UsbExportError("the USB export helper gave no answer ({!r}). Fix: see journalctl -u "
                         "'medkiosk-usb-export@*'; re-run jetson_setup.sh --steps units".format(line[:80]),
                         code="refused")


class SocketTrigger(object):
    """Ask the root helper through its socket (``medkiosk-usb-export.socket``, group medkiosk)."""

    def __init__(self, path, timeout_s=REPLY_TIMEOUT_S):
        self.path = path
        self.timeout_s = timeout_s

    def request(self, line):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
            sock.sendall((line + "\n").encode("ascii"))
            reply = sock.makefile("rb").readline(4096).decode("utf-8", "replace")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise UsbExportError("USB export is not installed on this unit ({}). Fix: re-run sudo "
                                 "./jetson_setup.sh --steps units".format(exc.strerror),
                                 code="refused") from exc
        except PermissionError as exc:
            raise UsbExportError("USB export refused: the kiosk may not use {}. Fix: the kiosk must run as "
                                 "user medkiosk (re-run jetson_setup.sh)".format(self.path),
                                 code="refused") from exc
        except socket.timeout as exc:
            raise UsbExportError("USB export gave no answer within {:.0f} s. Fix: take the stick out, put it "
                                 "back and press E again".format(self.timeout_s), code="failed") from exc
        except OSError as exc:
            raise UsbExportError("USB export failed ({}). Fix: press E again".format(exc.strerror),
                                 code="failed") from exc
        finally:
            sock.close()
        return reply


class CommandTrigger(object):
    """Run the helper directly (``command:PATH``): a PC or a test, where no socket unit exists."""

    def __init__(self, path, timeout_s=REPLY_TIMEOUT_S, env=None):
        self.path = path
        self.timeout_s = timeout_s
        self.env = env

    def request(self, line):
        try:
            # stdout/stderr=PIPE, not capture_output: Python 3.6 on the Nano
            done = subprocess.run([self.path], input=(line + "\n").encode("ascii"),  # noqa: UP022
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=self.timeout_s,
                                  env=self.env)
        except OSError as exc:
            raise UsbExportError("USB export helper {} cannot run ({}). Fix: set usb_export in the config to "
                                 "the installed helper".format(self.path, exc.strerror),
                                 code="refused") from exc
        except subprocess.TimeoutExpired as exc:
            raise UsbExportError("USB export gave no answer within {:.0f} s. Fix: press E again".format(
                self.timeout_s), code="failed") from exc
        return done.stdout.decode("utf-8", "replace").splitlines()[0] if done.stdout else ""


# scheme -> trigger class taking the rest of the spec
TRIGGERS = {"socket": SocketTrigger, "command": CommandTrigger}


def open_trigger(spec):
    """``socket:/run/...sock`` or ``command:/path/helper`` -> a trigger with ``request(line)``."""
    scheme, _sep, rest = str(spec or "").partition(":")
    if scheme not in TRIGGERS or not rest:
        from edge.errors import ConfigError

        raise ConfigError("usb_export = {!r} is not understood. Fix: socket:/run/medkiosk-usb-export.sock "
                          "(the unit) or command:/path/to/medkiosk-usb-export".format(spec))
    return TRIGGERS[scheme](rest)


class ExportDone(object):
    """What one E press did: how many cases, the folder name on the stick (None when nothing new)."""

    def __init__(self, count, name):
        self.count = count
        self.name = name

    def message(self):
        if not self.count:
            return _(NOTHING_NEW)
        return _(SAFE_TO_REMOVE).format(self.count, self.name)


def kiosk_referral(input_specs=None, heatmaps=None):
    """``referral(record, image_bytes)`` -> PDF bytes for the export; ``input_specs``: bundle id ->
    its input spec (what the model analysed when the crop was not saved)."""
    specs = dict(input_specs or {})

    def make(record, data):
        from edge.lazy import require
        from edge.referral import referral_for_record

        np, cv2 = require("numpy"), require("cv2")
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), 1)
        heatmap = heatmaps(record) if heatmaps is not None else None
        return referral_for_record(record, image, specs.get(record.bundle_id), heatmap)

    return make


class UsbExporter(object):
    """Stage the new cases in ``outbox`` and have ``trigger`` put them on the stick."""

    def __init__(self, outbox, trigger, referral=None):
        self.outbox = str(outbox)
        self.trigger = trigger
        self.referral = referral

    @contextlib.contextmanager
    def locked(self):
        """Hold the outbox for one export (see the module's docstring); UsbExportError ``busy`` when
        another process holds it. The lock goes with the process: a killed export leaves none."""
        try:
            private_dir(self.outbox)
            fd = os.open(self.outbox, os.O_RDONLY)
        except OSError as exc:
            raise UsbExportError("cannot prepare the export in {} ({}). Fix: check free space on the "
                                 "unit".format(self.outbox, exc.strerror)) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise UsbExportError("an export is already running (its outbox {} is in use). Fix: wait for "
                                     "'Safe to remove the USB stick', then export again".format(self.outbox),
                                     code="busy") from exc
            yield self
        finally:
            os.close(fd)

    def clear_outbox(self, prefix=""):
        """Leftovers of an export cut short (a power cut): the outbox only ever holds the current one.
        ``prefix``: only the leftovers of one kind of export (its folders and hidden temporary ones)."""
        private_dir(self.outbox)
        for name in os.listdir(self.outbox):
            if not name.startswith(prefix) and not name.startswith("." + prefix):
                continue
            path = os.path.join(self.outbox, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def _check_room(self, records):
        self.check_room(sum(os.path.getsize(record.image) + SHEET_ALLOWANCE_BYTES for record in records))

    def check_room(self, needed):
        """The outbox is on the unit's own disk: refuse before writing when ``needed`` bytes cannot fit."""
        stats = os.statvfs(self.outbox)
        free = stats.f_bavail * stats.f_frsize
        if free < needed:
            raise UsbExportError("the unit's disk is too full to prepare the export ({:.0f} MB free, "
                                 "{:.0f} MB needed). Fix: have the technician free space on the unit".format(
                                     free / 1048576.0, needed / 1048576.0), code="unit-full")

    def export_new(self, caselog, now=None):
        """Export the cases not exported yet; return ExportDone. Raises UsbExportError or CaseLogError."""
        records = caselog.cases(new_only=True)
        if not records:
            return ExportDone(0, None)
        with self.locked():
            try:
                self.clear_outbox()
                self._check_room(records)
            except OSError as exc:
                raise UsbExportError("cannot prepare the export in {} ({}). Fix: check free space on the "
                                     "unit".format(self.outbox, exc.strerror)) from exc
            staged = caselog.export_records(self.outbox, records, now=now, referral=self.referral)
            name = self.send(staged)
            caselog.mark_exported([record.uid for record in records])  # before another export may start
        return ExportDone(len(records), name)

    def send(self, staged):
        """Have the root helper copy ``staged`` (a complete folder in the outbox) to the stick; return
        its name there. The outbox copy is removed either way; UsbExportError when it was not copied."""
        try:
            return parse_reply(self.trigger.request("EXPORT " + os.path.basename(staged)))
        finally:
            shutil.rmtree(staged, ignore_errors=True)
