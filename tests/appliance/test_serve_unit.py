"""systemd/medkiosk-serve.service: sandbox score, reachable networks = the config's, command parses.

`systemd-analyze verify` and the <= 3.0 exposure of this unit run in test_systemd_units.py with the
other units; here, what is particular to the service.
"""

import ipaddress
import os
import shlex

import pytest

from tests.appliance.test_systemd_units import _offline_security_supported, exposure, one, values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = "medkiosk-serve.service"


def test_unit_reaches_only_the_configured_local_networks():
    from edge.config import load_config
    from edge.serve.settings import ServeSettings

    settings = ServeSettings(load_config(os.path.join(ROOT, "config", "medkiosk.conf")))
    assert values(UNIT, "IPAddressDeny") == ["any"]
    allowed = one(UNIT, "IPAddressAllow").split()
    assert allowed[0] == "localhost"
    assert [ipaddress.ip_network(item) for item in allowed[1:]] == [
        n for n in settings.allow if not n.is_loopback]
    assert all(ipaddress.ip_network(item).is_private for item in allowed[1:])


def test_unit_runs_the_real_serve_command_and_yields_to_the_kiosk():
    from edge.cli import build_parser

    args = shlex.split(one(UNIT, "ExecStart"))
    parsed = build_parser().parse_args(args[1:])
    assert parsed.command == "serve" and parsed.action == "run"
    assert parsed.config == "/etc/medkiosk/medkiosk.conf"
    assert int(one(UNIT, "Nice")) > 0 and int(one(UNIT, "CPUWeight")) < 100
    assert 0 < int(one(UNIT, "CPUQuota").rstrip("%")) < 100  # a hard cap under one core (serve_load)
    assert one(UNIT, "Type") == "notify"
    assert values(UNIT, "WantedBy", section="Install") == ["multi-user.target"]


@pytest.mark.skipif(not _offline_security_supported(), reason="systemd-analyze security --offline needs "
                                                                "systemd >= 250 (apt-get install -y systemd)")
def test_exposure_at_most_3_and_worse_without_the_network_limit(tmp_path):
    level, report = exposure(os.path.join(ROOT, "systemd", UNIT))
    assert level <= 3.0, report
    with open(os.path.join(ROOT, "systemd", UNIT)) as handle:
        text = handle.read()
    open_network = tmp_path / UNIT
    open_network.write_text(text.replace("IPAddressDeny=any\n", "").replace("IPAddressAllow=", "#"))
    assert exposure(str(open_network))[0] > level
