"""Rate limits, client-network refusal, and the config checks of `medkiosk serve`, on real processes.

A second server with a small rate limit (5 a minute) and only 127.0.0.1 allowed; requests from
127.0.0.3 (still loopback) stand in for a laptop outside the allowed networks.
"""

import json
import os

import pytest

from tests.edge.serve.serve_helpers import (
    PEDIATRIC,
    bearer,
    classify,
    medkiosk,
    read,
    real_xray,
    server_fixture,
    write_config,
)

pytest.importorskip("flask", reason="pip install 'medkiosk[serve]'")
pytest.importorskip("cheroot", reason="pip install 'medkiosk[serve]'")

RATE = 5


strict = server_fixture("strict", rate_per_minute=RATE, allow="127.0.0.1/32")


@pytest.mark.skipif(not os.path.isdir(PEDIATRIC), reason="../shared/data is not beside the checkout")
def test_a_burst_above_the_rate_limit_is_429_and_nothing_saved(strict):
    token = strict.token("burst")
    data = read(real_xray())
    statuses = [classify(strict, token, data)[0] for _ in range(RATE)]
    assert statuses == [200] * RATE
    before = strict.cases_on_disk()
    status, headers, body = classify(strict, token, data)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1 and "Fix: wait" in body["error"]["message"]
    result_ids = []
    for _ in range(3):
        status, _headers, body = strict.request("POST", "/api/v1/cases", json.dumps({"result_id": "x"}),
                                                bearer(token, **{"Content-Type": "application/json"}))
        result_ids.append(status)
    assert result_ids == [429] * 3
    assert strict.cases_on_disk() == before
    # The limit is per device: another device is not held back by this one.
    other = strict.token("other")
    assert strict.request("GET", "/api/v1/health", headers=bearer(other))[0] == 200


def test_wrong_tokens_are_rate_limited_per_address(strict):
    statuses = [strict.request("GET", "/api/v1/health", headers=bearer("guess{}".format(i)))[0]
                for i in range(RATE + 8)]
    assert statuses[0] == 401 and statuses[-1] == 429


def test_an_address_outside_the_allowed_networks_is_refused(strict):
    status, _headers, body = strict.request("GET", "/", source="127.0.0.3")
    assert status == 403 and body["error"]["code"] == "address_refused"
    status, _headers, body = strict.request("POST", "/api/v1/pair", json.dumps({"code": "123456"}),
                                            {"Content-Type": "application/json"}, source="127.0.0.3")
    assert status == 403


@pytest.mark.parametrize("setting, value, message", [
    ("bind", "0.0.0.0", "listens on every interface"),
    ("bind", "kiosk.local", "is not an IP address"),
    ("allow", "8.8.8.0/24", "is not a local network range"),
    ("allow", "192.168.0.0/33", "is not a network"),
    ("enabled", "no", "the LAN service is off"),
])
def test_unsafe_or_off_config_is_one_line_and_exit_2(tmp_path, setting, value, message):
    config = write_config(str(tmp_path), **{setting: value})
    result = medkiosk("serve", "--config", config, "--port", "0")
    assert result.returncode == 2
    assert message in result.stderr and "Fix:" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_shipped_config_keeps_the_service_off_and_local():
    from edge.config import load_config
    from edge.serve.settings import ServeSettings

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    settings = ServeSettings(load_config(os.path.join(root, "config", "medkiosk.conf")))
    assert settings.enabled is False and settings.tls is True
    assert str(settings.bind) == "127.0.0.1"
    assert all(network.is_private for network in settings.allow)


def test_plain_http_to_the_tls_port_gets_no_answer(strict):
    import http.client

    connection = http.client.HTTPConnection(strict.host, strict.port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("GET", "/api/v1/health")
            response = connection.getresponse()
            assert response.status == 400  # cheroot's "plain HTTP to an HTTPS port" reply, never data
            raise http.client.HTTPException("refused")
    finally:
        connection.close()
