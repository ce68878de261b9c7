"""systemd's sd_notify protocol without a dependency: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket) and, with
``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``). Outside systemd every call is a no-op.
"""

import os
import socket
import sys
import time


class Notifier(object):
    """Sends sd_notify datagrams; pings the watchdog at half its interval."""

    def __init__(self, environ=None, clock=time.monotonic, stream=None):
        environ = os.environ if environ is None else environ
        self.address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(environ)
        self.clock = clock
        self.stream = stream or sys.stderr
        self.failures = 0
        self.sent = 0
        self._last_ping = None
        self._last_status = None

    @property
    def enabled(self):
        return self.address is not None

    def notify(self, *assignments):
        """Send ``KEY=value`` lines in one datagram; return True if sent."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
            sock.sendall(message)
        except OSError as exc:
            # systemd going away must not stop the kiosk; count it and say it once.
            self.failures += 1
            if self.failures == 1:
                self.stream.write("medkiosk: sd_notify to {!r} failed: {}\n".format(self.address, exc))
            return False
        finally:
            sock.close()
        self.sent += 1
        return True

    def ready(self, status=None):
        lines = ["READY=1"]
        if status:
            lines.append("STATUS=" + status)
            self._last_status = status
        return self.notify(*lines)

    def status(self, text):
        """Send STATUS= when the text changed."""
        if text == self._last_status:
            return False
        self._last_status = text
        return self.notify("STATUS=" + text)

    def stopping(self, status=None):
        lines = ["STOPPING=1"]
        if status:
            lines.append("STATUS=" + status)
        return self.notify(*lines)

    def watchdog(self, force=False):
        """Send WATCHDOG=1 when half the watchdog interval has passed since the last ping."""
        if self.address is None or self.watchdog_interval is None:
            return False
        now = self.clock()
        if not force and self._last_ping is not None and now - self._last_ping < self.watchdog_interval / 2.0:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")


def _socket_address(value):
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(environ):
    """Seconds between required pings, or None when no watchdog is set for this process."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
