"""A real USB stick stand-in for the export tests: an ext4 file system in a file, on a loop device,
mounted read-only as the unit's udev rule mounts a stick. The helper script then really remounts it
read-write and back. Needs root and loop devices (a CI container as root has them); skipped with
the reason otherwise. FAT sticks cannot be used here: this kernel has no vfat module.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER = os.path.join(ROOT, "systemd", "medkiosk-usb-export")


def _run(*argv):
    """(status, output) of a command (Popen: these tests also run on Python 3.6)."""
    process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
    output, _err = process.communicate(timeout=120)
    return process.returncode, output


def loop_mounts_possible():
    """(True, "") where this process may make and mount loop devices, else (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root to mount a loop device standing in for the USB stick"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount", "mountpoint", "findmnt", "flock"):
        if shutil.which(tool) is None:
            return False, "{} not installed".format(tool)
    return True, ""


class Stick(object):
    """An ext4 image on a loop device mounted read-only at ``mountpoint``."""

    def __init__(self, folder, size_mb=16, inodes=None, write_protected=False, fill_kb_left=None):
        self.folder = str(folder)
        self.image = os.path.join(self.folder, "stick.img")
        self.mountpoint = os.path.join(self.folder, "usb")
        os.makedirs(self.mountpoint)
        with open(self.image, "wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0"] + (["-N", str(inodes)] if inodes else []) + [self.image]
        self._check(*mkfs)
        self.device = None
        if fill_kb_left is not None:
            self._attach(False)
            self._check("mount", self.device, self.mountpoint)
            self.fill(fill_kb_left)
            self._check("umount", self.mountpoint)
            self._check("losetup", "-d", self.device)
        self._attach(write_protected)
        self._check("mount", "-o", "ro,nosuid,nodev,noexec", self.device, self.mountpoint)

    def _attach(self, read_only):
        flags = ["-r"] if read_only else []
        self.device = self._check(*(["losetup", "-f", "--show"] + flags + [self.image])).strip()

    def _check(self, *argv):
        status, output = _run(*argv)
        if status != 0:
            self.close()
            pytest.skip("{} failed here: {}".format(argv[0], output.strip()[-200:]))
        return output

    def fill(self, kb_left):
        """Leave about ``kb_left`` KB free (a stick nearly full of someone's files)."""
        stats = os.statvfs(self.mountpoint)
        free_kb = stats.f_bavail * stats.f_frsize // 1024
        with open(os.path.join(self.mountpoint, "holiday.mp4"), "wb") as handle:
            handle.write(b"\0" * max(0, (free_kb - kb_left)) * 1024)

    def options(self):
        return _run("findmnt", "-n", "-o", "OPTIONS", "--mountpoint", self.mountpoint)[1].strip()

    def read_only(self):
        return self.options().split(",")[0] == "ro"

    def entries(self):
        return sorted(name for name in os.listdir(self.mountpoint) if name != "lost+found")

    def close(self):
        if os.path.ismount(self.mountpoint):
            _run("umount", self.mountpoint)
        if self.device:
            _run("losetup", "-d", self.device)
            self.device = None


def helper_env(stick_mountpoint, outbox, lock):
    env = dict(os.environ)
    env.update({"MEDKIOSK_USB_MOUNT": stick_mountpoint, "MEDKIOSK_USB_OUTBOX": outbox,
                "MEDKIOSK_USB_LOCK": lock})
    return env


HOLD_OUTBOX = """
import os, sys
from edge.usb_export import UsbExporter
outbox, staged = sys.argv[1:3]
with UsbExporter(outbox, None).locked():
    os.makedirs(os.path.join(outbox, staged, "images"))
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_outbox(outbox, staged):
    """A second process holding ``outbox`` as an export does from clearing it to the helper's answer
    (`medkiosk capture export --usb` from a shell, waiting on the helper), its folder ``staged`` in
    it. Returned once it holds it; close its stdin to let go (the lock goes with the process)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_OUTBOX, outbox, staged], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, universal_newlines=True, cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    assert process.stdout.readline().strip() == "held"
    return process


class RecordingHelper(object):
    """Stands in for the root helper where no stick can be mounted: records each request and answers
    ``reply`` (the real helper is run against a real stick in the tests marked needs_stick)."""

    def __init__(self, reply="FAIL no-stick No USB stick found. Fix: insert the USB stick"):
        self.reply = reply
        self.requests = []

    def request(self, line):
        self.requests.append(line)
        return self.reply
