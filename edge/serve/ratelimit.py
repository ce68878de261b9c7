"""A token-bucket rate limit per key (a device token's id, or a client address before pairing)."""

import threading
import time

from edge.serve.errors import RateLimited

MAX_KEYS = 4096


class RateLimiter(object):
    """``per_minute`` requests a minute per key, with bursts up to ``per_minute``."""

    def __init__(self, per_minute, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0
        self.clock = clock
        self._buckets = {}
        self._lock = threading.Lock()

    def check(self, key):
        """Take one request from ``key``'s bucket or raise RateLimited saying when to retry."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) > MAX_KEYS:
                self._buckets.clear()
            tokens, stamp = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            if tokens < 1.0:
                wait = int((1.0 - tokens) / self.rate) + 1
                self._buckets[key] = (tokens, now)
                raise RateLimited("too many requests ({:.0f} a minute allowed). Fix: wait {} s and "
                                  "try again".format(self.capacity, wait), retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)
