"""A live source that comes back by itself after its camera disappears."""

import threading
import time

from edge.errors import SourceError
from edge.sources.base import Source, SourceDisconnected, now

DEFAULT_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


class ReconnectingSource(Source):
    """Wraps a factory of live sources; on SourceDisconnected it reopens in the background.

    While disconnected, ``read()`` returns ``(False, None, t)`` after a short pause (so the caller's
    loop keeps drawing "camera disconnected - reconnecting" and pinging the watchdog) and
    ``disconnected`` is True. Errors that are not disconnections (no GStreamer, bad URI) are raised.
    """

    live = True

    def __init__(self, factory, backoff=DEFAULT_BACKOFF, idle_s=0.05, sleep=time.sleep):
        super().__init__()
        self.factory = factory
        self.backoff = tuple(float(b) for b in backoff)
        self.idle_s = float(idle_s)
        self.sleep = sleep
        self.reconnects = 0
        self.disconnects = 0
        self.attempts = 0
        self.last_error = None
        self._inner = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = None
        self._described = None

    def describe(self):
        inner = self._inner
        if inner is not None:
            return inner.describe()
        return self._described or "camera"

    @property
    def fps(self):
        inner = self._inner
        return inner.fps if inner is not None else None

    def _open_inner(self):
        source = self.factory()
        self._described = source.describe()
        source.open()
        return source

    def open(self):
        self._closed.clear()
        try:
            self._inner = self._open_inner()
        except SourceDisconnected as exc:
            self._mark_disconnected(exc)
        return self

    def _mark_disconnected(self, exc):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.disconnected = True
            self.disconnects += 1
            self.last_error = str(exc)
            self._thread = threading.Thread(target=self._reconnect, name="reconnect camera", daemon=True)
            self._thread.start()

    def _reconnect(self):
        step = 0
        while not self._closed.is_set():
            self.sleep(self.backoff[min(step, len(self.backoff) - 1)])
            if self._closed.is_set():
                return
            self.attempts += 1
            try:
                source = self._open_inner()
            except SourceError as exc:  # not there yet: wait longer and try again
                self.last_error = str(exc)
                step += 1
                continue
            if self._closed.is_set():
                source.close()
                return
            self._inner = source
            self.reconnects += 1
            self.disconnected = False
            return

    def read(self):
        inner = self._inner
        if inner is None or self.disconnected:
            self.sleep(self.idle_s)
            return False, None, now()
        try:
            ok, frame, stamp = inner.read()
        except SourceDisconnected as exc:
            self._inner = None
            inner.close()
            self._mark_disconnected(exc)
            return False, None, now()
        if ok:
            self.frames_read += 1
        return ok, frame, stamp

    def close(self):
        self._closed.set()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()
