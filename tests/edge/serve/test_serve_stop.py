"""Stopping the LAN service is bounded: SIGTERM with keep-alive HTTPS connections and an upload in flight
ends a real `medkiosk serve` within the grace, and a worker that never finishes cannot keep the process
alive (cheroot's ThreadPool.stop joins it with no timeout: a load run once did not exit after SIGTERM).

The stuck worker is a real cheroot server with a WSGI app that blocks until the test releases it (the
service's own routes always finish, so they cannot make one on demand). Python 3.6 compatible.
"""

import http.client
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.edge.serve.serve_helpers import PEDIATRIC, ROOT, Server, env, multipart, read, real_xray

pytest.importorskip("flask", reason="pip install 'medkiosk[serve]'")
pytest.importorskip("cheroot", reason="pip install 'medkiosk[serve]'")

from edge.serve.server import GRACE_SECONDS, STOP_TIMED_OUT, server_workers, stop_within  # noqa: E402

# what the stop may take beyond the grace on a loaded 2-core machine (the poll for the signal, the
# forced close, the interpreter's exit); the old code took at least cheroot's 5 s grace here
STOP_SLACK = 2.5


def _keep_alive(server, token):
    """An HTTPS connection that has had one answer and stays open (HTTP/1.1 keep-alive)."""
    connection = server.connection()
    connection.request("GET", "/api/v1/health", headers={"Authorization": "Bearer " + token})
    response = connection.getresponse()
    response.read()
    assert response.status == 200 and not response.will_close
    return connection


def _upload_in_flight(server, token):
    """A classify upload whose body is half sent: its worker thread waits for the rest."""
    body, kind = multipart({"module": "auto"}, {"image": ("upload.png", read(real_xray()))})
    connection = server.connection()
    connection.putrequest("POST", "/api/v1/classify")
    for name, value in (("Authorization", "Bearer " + token), ("Content-Type", kind),
                        ("Content-Length", str(len(body)))):
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(body[:len(body) // 2])
    return connection


def _closed_by_peer(sock):
    """True when reading gives end-of-file (Python 3.6 with OpenSSL 3 reports it as an SSLError)."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ssl.SSLError as exc:
        return "EOF" in str(exc).upper()


@pytest.mark.skipif(not os.path.isdir(PEDIATRIC), reason="../shared/data is not beside the checkout")
def test_sigterm_with_keep_alive_connections_and_an_upload_in_flight_exits_within_the_grace(tmp_path):
    server = Server(tmp_path, rate_per_minute="6000").start()
    try:
        token = server.token()
        held = [_keep_alive(server, token) for _ in range(3)]
        held.append(_upload_in_flight(server, token))
        time.sleep(1.0)  # the upload's worker is reading its body
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=60)
        elapsed = time.monotonic() - started
        log = server.log()
        assert elapsed < GRACE_SECONDS + STOP_SLACK, "stopped after {:.1f} s:\n{}".format(elapsed, log)
        assert code == 0, log
        assert "stopping (signal {})".format(int(signal.SIGTERM)) in log and "medkiosk.serve: stopped" in log
        for connection in held[:3]:  # the idle keep-alive connections were closed by the service
            assert _closed_by_peer(connection.sock)
        for connection in held:
            connection.close()
    finally:
        server.stop()


class _StuckApp(object):
    """A WSGI app whose every request waits until ``release`` is set."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, environ, start_response):
        self.entered.set()
        self.release.wait(60)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


def _request(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # the server may shut the socket: only the stop is under test
    finally:
        connection.close()


def test_stop_within_gives_up_on_a_worker_that_never_finishes():
    from cheroot import wsgi

    app = _StuckApp()
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=1, shutdown_timeout=0.5)
    server.prepare()
    loop = threading.Thread(target=server.serve)
    loop.daemon = True
    loop.start()
    client = threading.Thread(target=_request, args=(server.bind_addr[1],))
    client.daemon = True
    client.start()
    try:
        assert app.entered.wait(30)
        started = time.monotonic()
        running = stop_within(server, 1.5)
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 1.5 + STOP_SLACK
        assert len(running) == 1 and running[0].startswith("CP Server"), running
    finally:
        app.release.set()
    client.join(30)
    assert not client.is_alive()


def test_the_workers_of_a_running_server_are_found_through_cheroots_public_names():
    """``stop_within`` names the workers still running from ``server_workers``: cheroot's
    ``WorkerThread`` class and its ``server`` attribute. If a cheroot release renames either, this
    fails (and the stuck-worker test above would name the stopper instead of the worker)."""
    from cheroot import wsgi

    servers = [wsgi.Server(("127.0.0.1", 0), _StuckApp(), numthreads=count, shutdown_timeout=0.5)
               for count in (2, 3)]
    loops = []
    for server in servers:
        server.prepare()
        loops.append(threading.Thread(target=server.serve, daemon=True))
        loops[-1].start()
    try:
        found = [server_workers(server) for server in servers]
        assert [len(workers) for workers in found] == [2, 3]  # each its own, none of the other's
        assert all(thread.name.startswith("CP Server") and thread.is_alive() for thread in sum(found, []))
    finally:
        for server in servers:
            assert stop_within(server, 10) == []
    assert server_workers(servers[0]) == [] and server_workers(servers[1]) == []


STUCK_SERVICE = textwrap.dedent("""
    import logging, os, signal, sys, threading, time
    from cheroot import wsgi
    from edge.serve import server as serving
    from tests.edge.serve.test_serve_stop import _StuckApp, _request

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    serving.STOP_SECONDS = 1
    app = _StuckApp()
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=1, shutdown_timeout=0.5)
    server.prepare()
    client = threading.Thread(target=_request, args=(server.bind_addr[1],))
    client.daemon = True
    client.start()

    def terminate():  # SIGTERM, then an impatient Ctrl-C while the stop runs: only recorded
        app.entered.wait(30)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=terminate).start()
    serving.hard_exit(serving._serve_and_stop(server, None))
""")


def test_a_stop_that_times_out_ends_the_process_with_one_journal_line_and_its_exit_code():
    """A second signal during the stop changes nothing; the stuck worker does not hold the exit."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", STUCK_SERVICE], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, env=env(), cwd=ROOT)
    try:
        out = process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("still running 60 s after SIGTERM:\n" + process.communicate()[0]) from None
    elapsed = time.monotonic() - started
    assert process.returncode == STOP_TIMED_OUT, out
    lines = [line for line in out.splitlines() if "stop timed out" in line]
    assert len(lines) == 1, out
    assert "CP Server" in lines[0] and "still busy 1 s after the stop began" in lines[0]
    assert "(exit code {})".format(STOP_TIMED_OUT) in lines[0]
    assert elapsed < 30, out  # the stuck (non-daemon) worker would otherwise hold the process for 60 s
