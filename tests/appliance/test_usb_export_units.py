"""The E key's systemd pieces: medkiosk-usb-export.socket and medkiosk-usb-export@.service, checked with
`systemd-analyze verify` and `security --offline` on the real files, and against what the kiosk and
jetson_setup.sh expect (socket path, group, helper path). The helper itself runs for real in
tests/edge/test_usb_export.py; systemd cannot run here (no init in this container).
"""

import os
import re
import shutil
import subprocess

import pytest

from edge.config import SCHEMA
from edge.usb_export import DEFAULT_TRIGGER
from tests.appliance.test_systemd_units import HOST_UNITS, UNIT_DIR, exposure, one, values

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCKET, SERVICE = "medkiosk-usb-export.socket", "medkiosk-usb-export@.service"
# Measured with systemd 252 (docs/technician.md): a root helper that must remount in the host's mount
# namespace cannot have the namespace-based settings; every other one is on.
MAX_EXPOSURE = 3.3


def test_socket_is_the_kiosks_and_only_its_group_may_connect():
    assert one(SOCKET, "ListenStream", section="Socket") == DEFAULT_TRIGGER.split(":", 1)[1]
    assert SCHEMA["kiosk"]["usb_export"][0] == DEFAULT_TRIGGER
    assert one(SOCKET, "Accept", section="Socket") == "yes"
    assert one(SOCKET, "SocketMode", section="Socket") == "0660"
    assert one(SOCKET, "SocketUser", section="Socket") == "root"
    assert one(SOCKET, "SocketGroup", section="Socket") == one("medkiosk.service", "Group") == "medkiosk"
    assert one(SOCKET, "WantedBy", section="Install") == "sockets.target"


def test_service_runs_the_installed_helper_on_the_connection():
    with open(os.path.join(REPO, "jetson_setup.sh")) as handle:
        setup = handle.read()
    libexec = re.search(r'^LIBEXEC="\$PREFIX/(\S+)"', setup, re.M).group(1)
    prefix = re.search(r"^PREFIX=(\S+)", setup, re.M).group(1)
    assert one(SERVICE, "ExecStart") == "{}/{}/medkiosk-usb-export".format(prefix, libexec)
    installed = 'install_file "$PROJECT_DIR/systemd/medkiosk-usb-export" "$LIBEXEC/medkiosk-usb-export" 0755'
    assert installed in setup
    assert (one(SERVICE, "StandardInput"), one(SERVICE, "StandardOutput")) == ("socket", "socket")
    assert one(SERVICE, "StandardError") == "journal"
    # It must act on the host's mount namespace: none of the settings that would give it its own.
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateMounts", "ReadWritePaths",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc"):
        assert not values(SERVICE, key), key
    assert set(one(SERVICE, "CapabilityBoundingSet").split()) == {
        "CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER"}
    assert one(SERVICE, "NoNewPrivileges") == "yes" and one(SERVICE, "PrivateNetwork") == "yes"
    assert "@mount" not in one(SERVICE, "SystemCallFilter")


def test_exceptions_are_documented():
    with open(os.path.join(REPO, "docs", "technician.md")) as handle:
        docs = handle.read()
    section = docs.split("### The units' sandbox", 1)[1].split("\n## ", 1)[0]
    for setting in ("User=", "ProtectSystem=", "CapabilityBoundingSet=", "@mount"):
        rows = [line for line in section.splitlines()
                if line.startswith("| `{}`".format(SERVICE)) and setting in line]
        assert rows, "{} {} is not explained in docs/technician.md".format(SERVICE, setting)


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory):
    if shutil.which("systemd-analyze") is None or not os.path.isdir(HOST_UNITS):
        pytest.skip("systemd-analyze or {} missing (apt-get install -y systemd)".format(HOST_UNITS))
    root = tmp_path_factory.mktemp("verify-root")
    shutil.copytree(HOST_UNITS, str(root / HOST_UNITS.lstrip("/")), symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in (SOCKET, SERVICE):
        shutil.copy(os.path.join(UNIT_DIR, name), str(root / "etc/systemd/system" / name))
    helper = root / one(SERVICE, "ExecStart").lstrip("/")
    helper.parent.mkdir(parents=True)
    shutil.copy(os.path.join(UNIT_DIR, "medkiosk-usb-export"), str(helper))
    return root


@pytest.mark.parametrize("name", [SOCKET, "medkiosk-usb-export@0.service"])
def test_systemd_analyze_verify_is_silent(verify_root, name):
    result = subprocess.run(["systemd-analyze", "verify", "--root=" + str(verify_root),
                             "/etc/systemd/system/" + name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "", "warnings: " + result.stdout


def test_security_exposure(tmp_path):
    help_text = subprocess.run(["systemd-analyze", "--help"], stdout=subprocess.PIPE, text=True).stdout \
        if shutil.which("systemd-analyze") else ""
    if "--offline" not in help_text:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    instance = tmp_path / "medkiosk-usb-export@0.service"
    shutil.copy(os.path.join(UNIT_DIR, SERVICE), str(instance))
    level, report = exposure(str(instance))
    assert level <= MAX_EXPOSURE, report
    plain = tmp_path / "plain@0.service"
    plain.write_text("[Service]\nExecStart={}\n".format(one(SERVICE, "ExecStart")))
    assert exposure(str(plain))[0] > 9.0  # the same command unsandboxed: the parser reads real output
