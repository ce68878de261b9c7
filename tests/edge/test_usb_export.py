"""edge.usb_export and the root helper systemd/medkiosk-usb-export, together, against a real stick
stand-in (tests/edge/usb_stick.py: ext4 on a loop device, mounted read-only, really remounted by the
helper). Real X-rays in a real case log, real referral PDFs, the helper run as a real process, and
through a real unix socket as systemd's Accept=yes socket unit would run it. Nothing is faked; the
only stand-ins are ext4 for FAT (no vfat module in this kernel) and the socket server in the test for
systemd's socket unit (tests/appliance checks the units themselves).
"""

import csv
import fcntl
import os
import shutil
import socket
import stat
import subprocess
import threading

import cv2
import pytest

from edge.caselog import CaseLog
from edge.usb_export import (
    CommandTrigger,
    SocketTrigger,
    UsbExporter,
    UsbExportError,
    kiosk_referral,
    open_trigger,
    parse_reply,
)
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
RESULT = {"top3": [{"name": "Pleural effusion", "probability": 0.81}], "uncertain": False,
          "out_of_scope": False, "quality": {"ok": True}, "state": "ok"}


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class Unit(object):
    """The state folder, its case log and an exporter whose helper works on ``stick``."""

    def __init__(self, tmp_path, stick_mountpoint, trigger=None):
        self.state = str(tmp_path / "state")
        self.outbox = os.path.join(self.state, "usb-outbox")
        self.lock = str(tmp_path / "export.lock")
        self.env = helper_env(stick_mountpoint, self.outbox, self.lock)
        self.trigger = trigger or CommandTrigger(HELPER, env=self.env)
        self.exporter = UsbExporter(self.outbox, self.trigger, referral=kiosk_referral())

    def log(self):
        return CaseLog(self.state, min_free_mb=0)

    def save(self, image, reference=None, created=None):
        with self.log() as log:
            return log.save(image, RESULT, "chest", bundle_id="chest@1.0.0+abc", patient_ref=reference,
                            created=created)

    def export(self, now=None):
        with self.log() as log:
            return self.exporter.export_new(log, now=now)

    def new_cases(self):
        with self.log() as log:
            return [c.number for c in log.cases(new_only=True)]


@pytest.fixture
def stick(tmp_path):
    made = Stick(tmp_path / "stick")
    yield made
    made.close()


@pytest.fixture
def xray(real_xray):
    return cv2.imread(real_xray)


def test_helper_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    subprocess.check_call(["shellcheck", "-x", HELPER])
    subprocess.check_call(["bash", "-n", HELPER])


@needs_stick
def test_new_cases_go_to_the_stick_private_with_their_sheets_then_read_only(tmp_path, stick, xray):
    unit = Unit(tmp_path, stick.mountpoint)
    unit.save(xray, reference="4521", created="2026-12-03T09:00:00+00:00")
    unit.save(xray[::2, ::2].copy(), created="2026-12-03T09:05:00+00:00")
    assert stick.read_only()
    done = unit.export(now="2026-12-03T10:00:00+00:00")
    assert (done.count, done.name) == (2, "medkiosk-cases-20261203T100000")
    assert done.message() == "Safe to remove the USB stick - 2 case(s) exported to " + done.name
    assert stick.read_only() and stick.entries() == [done.name]  # nothing else, no temporary folder
    folder = os.path.join(stick.mountpoint, done.name)
    with open(os.path.join(folder, "cases.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["number"], r["patient_ref"], r["referral"]) for r in rows] == [
        ("K-0001", "4521", "referrals/K-0001.pdf"), ("K-0002", "", "referrals/K-0002.pdf")]
    for parent, _dirs, files in os.walk(folder):
        assert _mode(parent) == 0o700
        assert all(_mode(os.path.join(parent, name)) == 0o600 for name in files)
    if shutil.which("pdftotext"):
        text = subprocess.check_output(["pdftotext", os.path.join(folder, "referrals", "K-0001.pdf"), "-"])
        assert b"4521" in text and b"K-0001" in text and b"Decision support only" in text
    assert unit.new_cases() == [] and os.listdir(unit.outbox) == []
    # Nothing new: nothing written. A new case: a second folder, the first untouched.
    assert unit.export().count == 0 and unit.export().message() == "No new cases to export"
    unit.save(xray, created="2026-12-03T10:30:00+00:00")
    again = unit.export(now="2026-12-03T10:00:00+00:00")  # same stamp: a name not used yet
    assert (again.count, again.name) == (1, "medkiosk-cases-20261203T100000-2")
    assert stick.entries() == [done.name, again.name] and stick.read_only()


@needs_stick
def test_no_stick_is_one_clear_line_and_nothing_is_marked(tmp_path, xray):
    (tmp_path / "usb").mkdir()  # the mount point with nothing mounted on it
    unit = Unit(tmp_path, str(tmp_path / "usb"))
    unit.save(xray)
    with pytest.raises(UsbExportError, match=r"^No USB stick found\. Fix: insert the USB stick") as info:
        unit.export()
    assert info.value.code == "no-stick" and unit.new_cases() == ["K-0001"]
    assert os.listdir(unit.outbox) == [] and os.listdir(str(tmp_path / "usb")) == []


@needs_stick
def test_a_full_stick_is_refused_before_writing(tmp_path, xray):
    stick = Stick(tmp_path / "stick", size_mb=8, fill_kb_left=64)
    try:
        unit = Unit(tmp_path, stick.mountpoint)
        unit.save(xray)
        unit.save(xray)
        full = r"^USB stick full \(\d+ KB free, \d+ KB needed\)\. Fix"
        with pytest.raises(UsbExportError, match=full) as info:
            unit.export()
        assert info.value.code == "full" and unit.new_cases() == ["K-0001", "K-0002"]
        assert stick.entries() == ["holiday.mp4"] and stick.read_only()
    finally:
        stick.close()


@needs_stick
def test_running_out_mid_copy_leaves_nothing_on_the_stick(tmp_path, xray):
    """Space enough by the numbers, but too few inodes: cp fails half-way with ENOSPC."""
    stick = Stick(tmp_path / "stick", size_mb=8, inodes=16)
    try:
        unit = Unit(tmp_path, stick.mountpoint)
        for index in range(4):
            unit.save(xray, created="2026-12-03T09:0{}:00+00:00".format(index))
        with pytest.raises(UsbExportError, match=r"^USB stick full: nothing was exported\. Fix") as info:
            unit.export()
        assert info.value.code == "full" and len(unit.new_cases()) == 4
        assert stick.entries() == [] and stick.read_only()  # the half-copied folder is gone
    finally:
        stick.close()


@needs_stick
def test_a_write_protected_stick_is_named(tmp_path, xray):
    stick = Stick(tmp_path / "stick", write_protected=True)
    try:
        unit = Unit(tmp_path, stick.mountpoint)
        unit.save(xray)
        with pytest.raises(UsbExportError, match=r"^USB stick is write-protected or damaged\. Fix: slide"):
            unit.export()
        assert unit.new_cases() == ["K-0001"] and stick.read_only() and stick.entries() == []
    finally:
        stick.close()


def _ask(env, line):
    helper = subprocess.Popen([HELPER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
    out, err = helper.communicate(line, timeout=60)
    return helper.returncode, out, err


@needs_stick
def test_the_helper_refuses_anything_but_a_prepared_export(tmp_path, stick):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    env = helper_env(stick.mountpoint, str(outbox), str(tmp_path / "lock"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "cases.csv").write_text("x")
    os.symlink(str(tmp_path / "elsewhere"), str(outbox / "medkiosk-cases-20261203T100000"))
    for request, reason in (("HELLO\n", "unknown request"), ("EXPORT ../../etc\n", "bad export name"),
                            ("EXPORT medkiosk-cases-20261203T100000 x\n", "bad export name"),
                            ("EXPORT medkiosk-cases-20261203T090000\n", "no prepared export"),
                            ("EXPORT medkiosk-cases-20261203T100000\n", "no prepared export"),
                            ("", "unknown request")):
        status, out, err = _ask(env, request)
        assert status == 1 and out.startswith("FAIL refused ") and reason in out, (request, out)
        assert err.strip() == "medkiosk-usb-export: " + out.strip()  # the same line in the journal
    assert stick.entries() == [] and stick.read_only()


@needs_stick
def test_a_file_system_that_cannot_be_remounted_is_refused(tmp_path, stick, xray):
    """On the unit only FAT32/exFAT/ext sticks are exported to (FUSE ones cannot be made writable in
    place); here the list is narrowed so that this ext4 stick stands for an NTFS one."""
    unit = Unit(tmp_path, stick.mountpoint)
    unit.env["MEDKIOSK_USB_FSTYPES"] = "vfat exfat"
    unit.save(xray)
    with pytest.raises(UsbExportError, match=r"^the USB stick's file system \(ext4\) is not supported\. "
                                             r"Fix: use a stick formatted FAT32$") as info:
        unit.export()
    assert info.value.code == "refused" and unit.new_cases() == ["K-0001"]
    assert stick.entries() == [] and stick.read_only()


@needs_stick
def test_one_export_at_a_time(tmp_path, stick, xray):
    unit = Unit(tmp_path, stick.mountpoint)
    unit.save(xray)
    with open(unit.lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UsbExportError, match="an export is already running") as info:
            unit.export()
    assert info.value.code == "busy" and unit.new_cases() == ["K-0001"]
    assert unit.export().count == 1


class SocketUnit(object):
    """What medkiosk-usb-export.socket (Accept=yes) does: one helper per connection, the connection
    as its stdin and stdout."""

    def __init__(self, path, env):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(2)
        self.env = env
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        connection, _address = self.server.accept()
        with connection:
            subprocess.run([HELPER], stdin=connection.fileno(), stdout=connection.fileno(), env=self.env,
                           stderr=subprocess.DEVNULL, timeout=60)

    def close(self):
        self.thread.join(10)
        self.server.close()


@needs_stick
def test_through_the_socket_as_the_unit_runs_it(tmp_path, stick, xray):
    path = str(tmp_path / "usb-export.sock")
    unit = Unit(tmp_path, stick.mountpoint, trigger=SocketTrigger(path, timeout_s=60))
    server = SocketUnit(path, unit.env)
    try:
        unit.save(xray, reference="88")
        done = unit.export(now="2026-12-03T11:00:00+00:00")
    finally:
        server.close()
    assert (done.count, done.name) == (1, "medkiosk-cases-20261203T110000")
    assert stick.entries() == [done.name] and stick.read_only() and unit.new_cases() == []


def test_a_missing_socket_means_not_installed(tmp_path):
    missing = r"USB export is not installed on this unit .*--steps units"
    with pytest.raises(UsbExportError, match=missing) as info:
        SocketTrigger(str(tmp_path / "absent.sock")).request("EXPORT x")
    assert info.value.code == "refused"
    with pytest.raises(UsbExportError, match="cannot run"):
        CommandTrigger(str(tmp_path / "absent-helper")).request("EXPORT x")


def test_replies_and_trigger_specs():
    assert parse_reply("OK medkiosk-cases-20261203T100000\n") == "medkiosk-cases-20261203T100000"
    with pytest.raises(UsbExportError, match="^No USB stick found. Fix: x$") as info:
        parse_reply("FAIL no-stick No USB stick found. Fix: x")
    assert info.value.code == "no-stick"
    for garbage in ("", "OK", "maybe"):
        with pytest.raises(UsbExportError, match="gave no answer"):
            parse_reply(garbage)
    assert isinstance(open_trigger("socket:/run/x.sock"), SocketTrigger)
    assert open_trigger("command:/opt/helper").path == "/opt/helper"
    from edge.errors import ConfigError

    for bad in ("", "socket:", "sudo:/bin/sh", "/run/x.sock"):
        with pytest.raises(ConfigError, match="usb_export = .* is not understood. Fix"):
            open_trigger(bad)


@needs_stick
def test_cases_export_usb_does_what_e_does(tmp_path, stick, xray, capsys):
    """``medkiosk cases export --usb``: the same exporter, the helper named in the config."""
    from edge.cli import main

    unit = Unit(tmp_path, stick.mountpoint)
    unit.save(xray, reference="5")
    config = tmp_path / "medkiosk.conf"
    config.write_text("[kiosk]\nstate_dir = {}\nusb_export = command:{}\n".format(unit.state, HELPER))
    old = dict(os.environ)
    os.environ.update(unit.env)
    try:
        assert main(["cases", "export", "--usb", "--config", str(config)]) == 0
        first = capsys.readouterr().out
        assert main(["cases", "--config", str(config), "export", "--usb"]) == 0
        second = capsys.readouterr().out
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert first.startswith("Safe to remove the USB stick - 1 case(s) exported to medkiosk-cases-")
    assert second == "No new cases to export\n"
    assert len(stick.entries()) == 1 and stick.read_only() and unit.new_cases() == []


def test_the_screen_line_of_each_failure():
    from edge.kiosk.export_job import failure_line

    for code, message, line in (
            ("full", "USB stick full (10 KB free, 900 KB needed). Fix: x",
             "USB stick full - nothing was exported"),
            ("no-stick", "No USB stick found. Fix: insert it", "No USB stick found"),
            ("read-only", "USB stick is write-protected. Fix: y", "USB stick is write-protected or damaged"),
            ("unit-full", "the unit's disk is too full to prepare the export (1 MB free). Fix: z",
             "The unit's disk is too full to prepare the export"),
            ("refused", "the file system (ntfs) is not supported. Fix: FAT32",
             "the file system (ntfs) is not supported")):
        assert failure_line(UsbExportError(message, code=code)) == line


@pytest.mark.parametrize("value, ok", [
    ("socket:/run/medkiosk-usb-export.sock", True),
    ("command:/opt/medkiosk/libexec/medkiosk-usb-export", True),
    ("sudo:/bin/sh", False), ("socket:relative.sock", False), ("/run/x.sock", False), ("socket:", False)])
def test_the_config_checks_usb_export_at_start(tmp_path, value, ok):
    from edge.config import load_config
    from edge.errors import ConfigError

    path = tmp_path / "medkiosk.conf"
    path.write_text("[kiosk]\nusb_export = {}\n".format(value))
    if ok:
        assert load_config(str(path)).kiosk["usb_export"] == value
        return
    with pytest.raises(ConfigError, match=r"config \[kiosk\] usb_export: .* is not understood\. Fix: set "
                                          r"usb_export = socket:/run/medkiosk-usb-export.sock"):
        load_config(str(path))


def test_an_unexpected_error_in_the_export_thread_is_said_and_logged(tmp_path):
    from edge.kiosk.export_job import ExportJob
    from edge.kiosk.screen import Messages

    class Broken(object):
        def export_new(self, caselog):
            raise RuntimeError("disk controller vanished")

    logged, messages = [], Messages()
    job = ExportJob(Broken(), lambda: CaseLog(str(tmp_path / "state"), min_free_mb=0), messages,
                    logged.append).start()
    assert job.wait(30) and job.outcome == "failed"
    assert messages.last == "USB export failed - the reason is in the journal"
    assert logged == ["USB export failed: RuntimeError: disk controller vanished. Fix: report this with "
                      "the journal"]


class AnsweringHelper(object):
    """Stands in for the root helper where only the kiosk's side is under test: answers OK."""

    def __init__(self):
        self.asked = []

    def request(self, line):
        self.asked.append(line)
        return "OK " + line.split()[1]


@needs_stick
def test_a_unit_disk_too_full_for_the_outbox_is_refused_before_writing(tmp_path, xray):
    """The state folder on a real 3 MB tmpfs: one case fits the outbox, three do not."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(state)])
    try:
        helper = AnsweringHelper()
        asked = helper.asked
        exporter = UsbExporter(str(state / "usb-outbox"), helper, referral=kiosk_referral())
        with CaseLog(str(state), min_free_mb=0) as log:
            log.save(xray, RESULT, "chest")
            assert exporter.export_new(log).count == 1 and len(asked) == 1  # room for one
            for _ in range(3):
                log.save(xray, RESULT, "chest")
            with pytest.raises(UsbExportError, match=r"^the unit's disk is too full to prepare the export "
                                                     r"\(\d+ MB free, \d+ MB needed\)\. Fix") as info:
                exporter.export_new(log)
            assert info.value.code == "unit-full" and len(asked) == 1
            assert os.listdir(str(state / "usb-outbox")) == [] and len(log.cases(new_only=True)) == 3
    finally:
        subprocess.call(["umount", str(state)])


def test_e_while_another_process_exports_is_refused_and_leaves_its_staged_folder(tmp_path, xray):
    """`medkiosk capture export --usb` from a shell (a real second process holding the outbox, its
    folder staged there for the helper) while E exports the cases: E's clearing of the outbox must not
    delete that folder mid-copy. E is refused as busy, asks no helper and marks nothing; once the other
    process is gone (killed or done), E proceeds."""
    helper = RecordingHelper()
    unit = Unit(tmp_path, str(tmp_path / "usb"), trigger=helper)
    unit.save(xray)
    other = hold_outbox(unit.outbox, "medkiosk-capture-skin-20261203T100000")
    try:
        with pytest.raises(UsbExportError) as info:
            unit.export()
        assert info.value.code == "busy"
        assert str(info.value) == ("an export is already running (its outbox {} is in use). Fix: wait for "
                                   "'Safe to remove the USB stick', then export again".format(unit.outbox))
        assert os.listdir(unit.outbox) == ["medkiosk-capture-skin-20261203T100000"]
        assert helper.requests == [] and unit.new_cases() == ["K-0001"]
    finally:
        other.stdin.close()
        assert other.wait(30) == 0
    with pytest.raises(UsbExportError) as info:
        unit.export()
    assert info.value.code == "no-stick" and len(helper.requests) == 1
    assert helper.requests[0].startswith("EXPORT medkiosk-cases-") and os.listdir(unit.outbox) == []
