"""The loop's health: failed frames counted, too many in a row or a stalled inference end the run.

Under systemd (``Restart=always``) ending the run with a non-zero status is the recovery: the
kiosk restarts with fresh runners.
"""

import time

from edge.errors import MedkioskError

LOAD_TIMEOUT_S = 300.0  # deserialising a TensorRT engine on a Jetson Nano can take a while


class KioskFailure(MedkioskError):
    """The loop cannot go on (too many consecutive failures, inference stalled): exit non-zero."""

    exit_code = 3


class Health(object):
    """Failure counts and the stall check; ``log`` writes one journal line."""

    def __init__(self, log, max_consecutive_failures=30, inference_timeout_s=30.0):
        self.log = log
        self.max_consecutive = int(max_consecutive_failures)
        self.inference_timeout_s = float(inference_timeout_s)
        self.failures = 0
        self.consecutive = 0
        self.last_error = None

    def fail(self, text):
        """Count one failed frame; too many in a row end the run."""
        self.failures += 1
        self.consecutive += 1
        self.last_error = text
        if self.consecutive <= 3 or self.consecutive % 10 == 0:
            self.log("frame error {} in a row: {}".format(self.consecutive, text))
        if self.consecutive >= self.max_consecutive:
            raise KioskFailure("{} consecutive frame failures, last: {}. Fix: see the errors above; systemd "
                               "restarts the kiosk".format(self.consecutive, text))

    def ok(self):
        self.consecutive = 0

    def check_stall(self, worker):
        """A hung inference (or runner load) ends the run, so systemd restarts the kiosk."""
        phase, since = worker.phase, worker.phase_since
        if phase is None or since is None:
            return
        inferring = phase == "inferring"
        limit = self.inference_timeout_s if inferring else max(LOAD_TIMEOUT_S, self.inference_timeout_s)
        if time.monotonic() - since > limit:
            what = "inference" if inferring else "loading the model"
            raise KioskFailure("{} stalled for more than {:g} s. Fix: check the backend (run `medkiosk "
                               "selftest`); systemd restarts the kiosk".format(what, limit))
