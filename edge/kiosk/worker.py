"""The inference worker: one thread that owns every runner and classifies the newest submitted frame.

TensorRT/CUDA contexts are bound to the thread that made them, so runners are opened, used and
closed here only. One job runs and one waits: ``submit`` replaces a waiting job (live: the newest
frame wins, stale ones are dropped) or, with ``queue_s``, waits until the worker has taken it
(files: nothing is skipped).
"""

import threading
import time

from edge.errors import MedkioskError
from edge.kiosk.modules import suggest_in_slots


class Job(object):
    """One frame handed to the inference thread; ``prepared`` when the display thread prepared it.

    ``located``: the per-frame localisation result (the loop's "locate" step), carried with the
    frame so that the overlay draws the result with the region it was computed on.
    """

    def __init__(self, seq, frame, stamp, slot, frozen, prepared=None, generation=0, name=None, located=None):
        self.seq = seq
        self.frame = frame
        self.stamp = stamp
        self.slot = slot
        self.frozen = frozen
        self.prepared = prepared
        self.generation = generation
        self.name = name
        self.located = located


class Outcome(object):
    def __init__(self, job, prediction=None, error=None, slot_failed=False):
        self.job = job
        self.prediction = prediction
        self.error = error
        self.slot_failed = slot_failed
        self.finished = time.monotonic()


def runner_info(classifier):
    runner = classifier.runner
    provider = runner.provider or ""
    notices = list(classifier.notices())
    on_cpu = "CPU" in provider.upper()
    return {"name": runner.name, "precision": runner.precision, "provider": provider, "notices": notices,
            "on_cpu": on_cpu, "describe": runner.describe()}


class InferenceWorker(object):
    """One thread that owns the runners and classifies the newest submitted frame.

    The last few outcomes are kept by sequence number, so a pipelined caller can wait for a
    particular frame's result while the next one is already being inferred.
    """

    KEEP_OUTCOMES = 4

    def __init__(self, open_classifier, slots=()):
        self.open_classifier = open_classifier
        self.slots = list(slots)  # every module: a refused image is offered to the others (edge.suggest)
        self._cond = threading.Condition()
        self._pending = None
        self._outcomes = {}  # seq -> Outcome, the last KEEP_OUTCOMES
        self._latest = 0  # seq of the newest outcome
        self._taken = 0
        self._stop = False
        self.busy_since = None  # when the current job started (loading its runner included)
        self.phase = None  # "loading" a runner or "inferring"
        self.phase_since = None
        self.dropped = 0
        self.classifiers = {}
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def submit(self, job, queue_s=None):
        """Hand ``job`` over and return True. A job still waiting is replaced (live: only the newest
        frame matters); with ``queue_s`` it waits up to that long for the worker to take the waiting
        job instead, and returns False (``job`` not handed over) if it did not."""
        with self._cond:
            if queue_s is not None:
                deadline = time.monotonic() + queue_s
                while self._pending is not None and not self._stop:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._pending is not None:
                self.dropped += 1
            self._pending = job
            self._cond.notify_all()
            return True

    def take(self):
        """The newest outcome not yet taken, or None."""
        with self._cond:
            return self._take_locked()

    def _take_locked(self):
        outcome = self._outcomes.get(self._latest)
        if outcome is None or self._latest <= self._taken:
            return None
        self._taken = self._latest
        return outcome

    def wait_any(self, timeout):
        """Wait up to ``timeout`` s for an outcome not yet taken and take it (None if none came):
        the live display wakes the moment a result lands instead of at the next camera frame."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest <= self._taken and not self._stop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._take_locked()

    def wait_for(self, seq, timeout):
        """Wait until the job ``seq`` is done; return its outcome, or None on timeout or stop, or when
        a later job finished without it (jobs run in order, so it was replaced and never will)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while seq not in self._outcomes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop or self._latest > seq:
                    return None
                self._cond.wait(remaining)
            self._taken = max(self._taken, seq)
            return self._outcomes[seq]

    def gone(self, seq):
        """True when job ``seq`` will never have an outcome to wait for (replaced, or long taken)."""
        with self._cond:
            return seq not in self._outcomes and self._latest > seq

    @property
    def idle(self):
        with self._cond:
            return self._pending is None and self.busy_since is None

    def stop(self, timeout=5.0):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _classifier(self, slot):
        classifier = self.classifiers.get(slot.module_id)
        if classifier is None:
            classifier = self.open_classifier(slot)
            self.classifiers[slot.module_id] = classifier
            slot.runner_info = runner_info(classifier)
            # Openers may return any object with classify(); those without a preparer are classified whole.
            make_preparer = getattr(classifier, "preparer", None)
            slot.preparer = make_preparer(depth=2) if make_preparer is not None else None
        return classifier

    def _run(self):
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    job, self._pending = self._pending, None
                    self.busy_since = time.monotonic()
                outcome = self._process(job)
                with self._cond:
                    self._outcomes[job.seq] = outcome
                    self._latest = job.seq
                    for old in [seq for seq in self._outcomes if seq <= job.seq - self.KEEP_OUTCOMES]:
                        del self._outcomes[old]
                    self.busy_since = None
                    self.phase = self.phase_since = None
                    self._cond.notify_all()
        finally:
            for classifier in self.classifiers.values():
                classifier.__exit__(None, None, None)
            self.classifiers = {}

    def _set_phase(self, phase):
        self.phase, self.phase_since = phase, time.monotonic()

    def _process(self, job):
        if job.slot.module_id not in self.classifiers:
            self._set_phase("loading")
        try:
            classifier = self._classifier(job.slot)
        except MedkioskError as exc:
            return Outcome(job, error="{}: {}".format(job.slot.module_id, exc), slot_failed=True)
        self._set_phase("inferring")
        try:
            if job.prepared is not None:
                prediction = classifier.infer_prepared(job.prepared)
            elif job.located is not None:  # live: located once, for the outline and the classifier
                prediction = classifier.classify(job.frame, localisation=job.located)
            else:
                prediction = classifier.classify(job.frame)
            suggest_in_slots(prediction, job.frame, job.slot, self.slots, self._classifier, job.prepared)
            return Outcome(job, prediction=prediction)
        except Exception as exc:  # reported to the loop, which counts it and stops after too many
            return Outcome(job, error="{}: {}: {}".format(job.slot.module_id, type(exc).__name__, exc))
