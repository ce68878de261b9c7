"""edge.sdnotify on a real unix datagram socket (a path and an abstract '@' name)."""

import os
import socket
import uuid

import pytest

from edge.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def _received(sock):
    return sock.recv(4096).decode("utf-8")


def test_ready_status_stopping_on_a_path_socket(listener):
    path, sock = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("showing chest")
    assert _received(sock) == "READY=1\nSTATUS=showing chest"
    assert notifier.status("camera disconnected - reconnecting")
    assert _received(sock) == "STATUS=camera disconnected - reconnecting"
    assert not notifier.status("camera disconnected - reconnecting")  # unchanged: not resent
    assert notifier.stopping("bye")
    assert _received(sock) == "STOPPING=1\nSTATUS=bye"
    assert notifier.sent == 3


def test_abstract_socket():
    name = "medkiosk-test-" + uuid.uuid4().hex
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).ready()
        assert _received(sock) == "READY=1"
    finally:
        sock.close()


def test_watchdog_pings_at_half_the_interval(listener):
    path, sock = listener
    now = [100.0]
    notifier = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                                 "WATCHDOG_PID": str(os.getpid())}, clock=lambda: now[0])
    assert notifier.watchdog_interval == 2.0
    assert notifier.watchdog()
    assert _received(sock) == "WATCHDOG=1"
    now[0] += 0.5
    assert not notifier.watchdog()  # too soon
    now[0] += 0.6
    assert notifier.watchdog()
    assert _received(sock) == "WATCHDOG=1"


def test_no_socket_no_watchdog_for_another_pid(listener):
    path, _sock = listener
    assert not Notifier(environ={}).ready()
    assert not Notifier(environ={}).enabled
    other = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None and not other.watchdog()


def test_a_vanished_socket_is_counted_not_fatal(tmp_path):
    import io

    stream = io.StringIO()
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, stream=stream)
    assert not notifier.ready()
    assert not notifier.status("x")
    assert notifier.failures == 2
    assert stream.getvalue().count("sd_notify") == 1
