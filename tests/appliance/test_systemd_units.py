"""The systemd units: `systemd-analyze verify` and `security --offline` on the real files, and the
commands they run parsed by the real medkiosk CLI parsers, so a renamed option breaks a test here
and not a Jetson at boot.

No Jetson here: verify runs against a throw-away root holding this host's stock units and
stand-in executables at /opt/medkiosk/... (systemd checks that ExecStart= binaries exist; the
venv only exists on the device).
"""

import os
import re
import shlex
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_DIR = os.path.join(REPO, "systemd")
UNITS = ("medkiosk.service", "medkiosk-engines.service", "medkiosk-display.service",
         "medkiosk-clocks.service", "medkiosk-serve.service")
SANDBOXED = ("medkiosk.service", "medkiosk-engines.service", "medkiosk-serve.service")
MAX_EXPOSURE = 3.0
HOST_UNITS = "/usr/lib/systemd/system"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install -y systemd)")


def read_unit(name):
    """[(section, key, value)] in file order; repeated keys stay separate, as systemd reads them."""
    entries, section = [], None
    with open(os.path.join(UNIT_DIR, name)) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _eq, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
    return entries


def values(name, key, section="Service"):
    return [value for sec, k, value in read_unit(name) if sec == section and k == key]


def one(name, key, section="Service"):
    found = values(name, key, section)
    assert len(found) == 1, "{}: {}= set {} times".format(name, key, len(found))
    return found[0]


def exec_args(name, key="ExecStart"):
    return shlex.split(one(name, key))


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory):
    if not os.path.isdir(HOST_UNITS):
        pytest.skip("no {} on this host to resolve targets against".format(HOST_UNITS))
    root = tmp_path_factory.mktemp("verify-root")
    shutil.copytree(HOST_UNITS, str(root / HOST_UNITS.lstrip("/")), symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy(os.path.join(UNIT_DIR, name), str(root / "etc/systemd/system" / name))
        for key in ("ExecStart", "ExecStartPost"):
            for command in values(name, key):
                binary = root / shlex.split(command)[0].lstrip("/")
                binary.parent.mkdir(parents=True, exist_ok=True)
                binary.write_text("#!/bin/sh\n# stand-in: the real one exists only on the device\n")
                binary.chmod(0o755)
    return root


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_is_silent(verify_root, name):
    result = subprocess.run(["systemd-analyze", "verify", "--root=" + str(verify_root),
                             "/etc/systemd/system/" + name],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "", "warnings: " + result.stdout


@needs_analyze
def test_verify_catches_a_bad_unit(verify_root):
    """The check above can fail: a unit with an unknown key and a missing binary is reported."""
    bad = verify_root / "etc/systemd/system/medkiosk-bad.service"
    bad.write_text("[Service]\nExecStart=/opt/medkiosk/venv/bin/missing\nWatchdogSecs=5\n")
    result = subprocess.run(["systemd-analyze", "verify", "--root=" + str(verify_root),
                             "/etc/systemd/system/medkiosk-bad.service"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "Unknown key" in result.stdout and "WatchdogSecs" in result.stdout
    assert result.returncode != 0


def _offline_security_supported():
    if shutil.which("systemd-analyze") is None:
        return False
    result = subprocess.run(["systemd-analyze", "--help"], stdout=subprocess.PIPE, text=True)
    return "--offline" in result.stdout


def exposure(path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) ", result.stdout)
    assert match, result.stdout[-2000:]
    return float(match.group(1)), result.stdout


@pytest.mark.skipif(not _offline_security_supported(),
                    reason="systemd-analyze security --offline needs systemd >= 250 "
                           "(apt-get install -y systemd)")
@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_at_most_3(name, tmp_path):
    level, report = exposure(os.path.join(UNIT_DIR, name))
    assert level <= MAX_EXPOSURE, report
    # The parser reads what systemd prints: an unhardened copy of the same unit scores far worse.
    plain = tmp_path / name
    user = "User=medkiosk\n" if name in SANDBOXED else ""
    plain.write_text("[Service]\nExecStart={}\n{}".format(one(name, "ExecStart"), user))
    assert exposure(str(plain))[0] > 7.0


# Settings the root units cannot have: each must be explained in the technician guide's table.
ROOT_UNIT_EXCEPTIONS = {
    "medkiosk-display.service": ("User=", "PrivateTmp=", "PrivateNetwork=", "PrivateDevices=",
                                 "PrivateUsers=", "MemoryDenyWriteExecute=", "CapabilityBoundingSet=",
                                 "ProcSubset="),
    "medkiosk-clocks.service": ("User=", "ProtectKernelTunables=", "PrivateUsers=",
                                "CapabilityBoundingSet=", "ProcSubset="),
}


@pytest.mark.parametrize("name", sorted(ROOT_UNIT_EXCEPTIONS))
def test_root_units_exceptions_are_documented(name):
    with open(os.path.join(REPO, "docs", "technician.md")) as handle:
        docs = handle.read()
    section = docs.split("### The units' sandbox", 1)[1].split("\n## ", 1)[0]
    for setting in ROOT_UNIT_EXCEPTIONS[name]:
        rows = [line for line in section.splitlines()
                if line.startswith("| `{}`".format(name)) and "`" + setting in line]
        assert rows, "{} {} is not explained in docs/technician.md".format(name, setting)
    for key in ("User", "PrivateTmp", "PrivateNetwork", "PrivateDevices", "ProtectKernelTunables"):
        if key + "=" in ROOT_UNIT_EXCEPTIONS[name]:
            assert not values(name, key), "{} sets {}= but the guide says it cannot".format(name, key)


def test_kiosk_unit_contract():
    name = "medkiosk.service"
    assert one(name, "Type") == "notify"
    assert one(name, "Restart") == "always"
    assert re.match(r"^\d+s$", one(name, "WatchdogSec"))
    assert re.match(r"^\d+s$", one(name, "RestartSec"))
    assert one(name, "StartLimitIntervalSec", section="Unit") == "0"
    assert one(name, "User") == "medkiosk"
    for unit in ("medkiosk-display.service", "nvargus-daemon.service", "medkiosk-engines.service"):
        assert unit in one(name, "After", section="Unit").split()
        assert unit in one(name, "Wants", section="Unit").split()
    environment = dict(value.split("=", 1) for value in values(name, "Environment"))
    assert environment["DISPLAY"] == ":0"
    for key, expected in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("PrivateNetwork", "yes"), ("DevicePolicy", "closed"),
                          ("ReadWritePaths", "/var/lib/medkiosk"), ("RestrictAddressFamilies", "AF_UNIX"),
                          ("CapabilityBoundingSet", ""), ("UMask", "0077")):
        assert one(name, key) == expected, key
    binds = one(name, "BindReadOnlyPaths").split()
    assert "/tmp/.X11-unix" in binds and "-/tmp/nvscsock" in binds
    devices = [value.split()[0] for value in values(name, "DeviceAllow")]
    for node in ("/dev/nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl", "/dev/nvidia0",
                 "char-video4linux"):
        assert node in devices, node


def test_display_cookie_is_where_the_kiosk_looks():
    """XAUTHORITY in the kiosk unit = the file medkiosk-display writes, in the display unit's
    RuntimeDirectory; the kiosk's DISPLAY is the one the helper starts."""
    environment = dict(value.split("=", 1) for value in values("medkiosk.service", "Environment"))
    with open(os.path.join(UNIT_DIR, "medkiosk-display")) as handle:
        helper = handle.read()
    auth_dir = re.search(r'AUTH_DIR="\$\{MEDKIOSK_AUTH_DIR:-([^}]+)\}"', helper).group(1)
    display = re.search(r'DISPLAY_NAME="\$\{MEDKIOSK_DISPLAY:-([^}]+)\}"', helper).group(1)
    assert environment["XAUTHORITY"] == auth_dir + "/Xauthority"
    assert environment["DISPLAY"] == display
    assert "/run/" + one("medkiosk-display.service", "RuntimeDirectory") == auth_dir
    for flag in ("-nocursor", "-dpms", "-nolisten tcp", "-s 0", "-noreset"):
        assert flag in helper, flag


def test_display_helper_reports_a_missing_x_server():
    helper = os.path.join(UNIT_DIR, "medkiosk-display")
    env = dict(os.environ, MEDKIOSK_DISPLAY=":97", MEDKIOSK_X_WAIT="1", MEDKIOSK_AUTH_DIR="/nonexistent")
    result = subprocess.run(["bash", helper, "wait"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=30)
    assert result.returncode == 1
    assert "X on :97 not ready after 1s" in result.stdout
    bad = subprocess.run(["bash", helper, "restart"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    assert bad.returncode == 1 and "usage" in bad.stdout


def test_engines_unit_gpu_nodes_match_the_kiosk():
    kiosk = set(values("medkiosk.service", "DeviceAllow"))
    engines = set(values("medkiosk-engines.service", "DeviceAllow"))
    gpu = {entry for entry in kiosk if "video4linux" not in entry and "drm" not in entry}
    assert engines == gpu
    assert one("medkiosk-engines.service", "Type") == "oneshot"
    assert "medkiosk.service" in one("medkiosk-engines.service", "Before", section="Unit").split()


def test_exec_lines_parse_with_the_real_cli():
    """ExecStart= of both units is accepted by the medkiosk parsers the device will run."""
    from edge.cli import build_parser
    from export.cli import build_parser as export_parser

    kiosk = exec_args("medkiosk.service")
    assert kiosk[0] == "/opt/medkiosk/venv/bin/medkiosk"
    args = build_parser().parse_args(kiosk[1:])
    assert args.command == "run" and args.config == "/etc/medkiosk/medkiosk.conf"

    engines = exec_args("medkiosk-engines.service")
    assert engines[0] == "/opt/medkiosk/venv/bin/medkiosk"
    args = export_parser().parse_args(engines[1:])
    assert args.export_command == "engines"
    assert (args.models, args.cache, args.precision) == (
        "/opt/medkiosk/models", "/var/lib/medkiosk/engines", "fp16")


def test_shipped_config_is_valid_and_complete():
    from edge.config import SCHEMA, load_config

    path = os.path.join(REPO, "config", "medkiosk.conf")
    config = load_config(path)
    assert config.kiosk["state_dir"] == "/var/lib/medkiosk"
    assert config.kiosk["engine_cache"] == "/var/lib/medkiosk/engines"
    assert config.kiosk["models_dir"] == "/opt/medkiosk/models"
    with open(path) as handle:
        text = handle.read()
    for section, keys in SCHEMA.items():
        assert "[{}]".format(section) in text
        for key in keys:
            assert re.search(r"^{} =( |$)".format(re.escape(key)), text, re.M), "{}.{}".format(section, key)


def test_setup_script_installs_every_unit():
    with open(os.path.join(REPO, "jetson_setup.sh")) as handle:
        script = handle.read()
    listed = re.search(r"^ALL_UNITS=\(([^)]*)\)", script, re.M).group(1).split()
    listed += re.search(r"^TEMPLATE_UNITS=\(([^)]*)\)", script, re.M).group(1).split()
    shipped = sorted(name for name in os.listdir(UNIT_DIR) if name.endswith((".service", ".socket")))
    # The USB export's socket and per-connection service: tests/appliance/test_usb_export_units.py
    usb_export = ("medkiosk-usb-export.socket", "medkiosk-usb-export@.service")
    assert sorted(listed) == shipped == sorted(UNITS + usb_export)


@pytest.mark.skipif(not _offline_security_supported(),
                    reason="systemd-analyze security --offline needs systemd >= 250 "
                           "(apt-get install -y systemd)")
def test_technician_guide_quotes_the_measured_exposure():
    with open(os.path.join(REPO, "docs", "technician.md")) as handle:
        docs = handle.read()
    quoted = re.search(r"rates it \*\*(\d+\.\d) \(SAFE\)\*\*", docs)
    assert quoted, "docs/technician.md no longer quotes the exposure"
    assert float(quoted.group(1)) == exposure(os.path.join(UNIT_DIR, "medkiosk.service"))[0]
