"""The inference worker: one thread that owns every runner and classifies the newest submitted frame.

TensorRT/CUDA contexts are bound to the thread that made them, so runners are opened, used and
closed here only. One job runs and one waits: ``submit`` replaces a waiting job (live: the newest
frame wins, stale ones are dropped) or, with ``queue_s``, waits until the worker has taken it
(files: nothing is skipped).

Live frames arrive unprepared (the camera delivers far more frames than are classified). A second
thread, ``prepare``, prepares the newest waiting frame (locate, rectify, normalise, resize, quality
gate: ``edge.classify.FramePreparer``, the same steps as ``medkiosk classify``) *just before* the
inference thread will need it: it starts when the job running is expected to end in about one
preparation (running estimates of both; a preparation's with its spread), so inference runs back to
back while the frame it takes is as new as it can be, and only frames that will be classified are
ever prepared (and, for an X-ray module, located: ``Job.locate``). Jobs already prepared (files, by
the display thread) and jobs whose runner is not loaded yet (no preparer: classified whole) go
straight to the inference thread.
"""

import threading
import time

from edge.errors import MedkioskError
from edge.kiosk.modules import suggest_in_slots
from edge.kiosk.priority import CoreSplit


class Job(object):
    """One frame handed to the inference thread; ``prepared`` when the display thread prepared it.

    ``live``: a camera frame, prepared by the worker's prepare thread (files are prepared by the
    display thread, or classified whole before their runner is loaded). ``locate``: the loop's
    "locate" step for a live X-ray frame, run by the prepare thread only on the frames it prepares;
    its result, ``located``, is handed to the classifier and becomes the live outline
    (``InferenceWorker.newest_outline``).
    """

    def __init__(self, seq, frame, stamp, slot, frozen, prepared=None, generation=0, name=None, located=None,
                 live=False, locate=None):
        self.seq = seq
        self.frame = frame
        self.stamp = stamp
        self.slot = slot
        self.frozen = frozen
        self.prepared = prepared
        self.generation = generation
        self.name = name
        self.located = located
        self.live = live
        self.locate = locate
        self.prepare_error = None  # set by the prepare thread when this frame could not be prepared


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


class Estimate(object):
    """A running estimate of a duration in seconds (exponential moving average; None until measured)
    and of its spread (moving mean absolute deviation), as TCP estimates its round trips."""

    WEIGHT = 0.3
    SPREADS = 2.0  # upper(): the mean plus this many mean deviations

    def __init__(self):
        self.seconds = None
        self.deviation = 0.0

    def add(self, seconds):
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.deviation += self.WEIGHT * (abs(seconds - self.seconds) - self.deviation)
            self.seconds += self.WEIGHT * (seconds - self.seconds)

    def upper(self):
        """A duration rarely exceeded: the mean plus SPREADS mean deviations (None until measured)."""
        return None if self.seconds is None else self.seconds + self.SPREADS * self.deviation


class InferenceWorker(object):
    """One thread that owns the runners and classifies the newest submitted frame, and one that
    prepares live frames just in time for it (see the module docstring).

    The last few outcomes are kept by sequence number, so a pipelined caller can wait for a
    particular frame's result while the next one is already being inferred.
    """

    KEEP_OUTCOMES = 4
    PREPARE_MARGIN_S = 0.002  # a live frame is ready this long before the job running should end

    def __init__(self, open_classifier, slots=(), cores=None):
        self.open_classifier = open_classifier
        self.cores = cores if cores is not None else CoreSplit(enabled=False)  # where its threads run
        self.slots = list(slots)  # every module: a refused image is offered to the others (edge.suggest)
        self._cond = threading.Condition()
        self._pending = None  # the newest job submitted, not yet taken
        self._ready = None  # a live job prepared by the prepare thread, for the inference thread
        self._preparing = False
        self._outline = None  # the newest live job located by the prepare thread
        self._outcomes = {}  # seq -> Outcome, the last KEEP_OUTCOMES
        self._latest = 0  # seq of the newest outcome
        self._taken = 0
        self._stop = False
        self.busy_since = None  # when the current job started (loading its runner included)
        self.phase = None  # "loading" a runner or "inferring"
        self.phase_since = None
        self.dropped = 0
        self.classifiers = {}
        self.preparers = {}  # module id -> the prepare thread's FramePreparer (its own buffer ring)
        self.infer_time = Estimate()
        self.prepare_time = Estimate()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._prepare_thread = threading.Thread(target=self._prepare_loop, name="prepare", daemon=True)

    def start(self):
        self._thread.start()
        self._prepare_thread.start()
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
            return (self._pending is None and self._ready is None and not self._preparing
                    and self.busy_since is None)

    def stop(self, timeout=5.0):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in (self._prepare_thread, self._thread):
            if thread.is_alive():
                thread.join(timeout)

    def _classifier(self, slot):
        classifier = self.classifiers.get(slot.module_id)
        if classifier is None:
            self.cores.before_open()
            classifier = self.open_classifier(slot)
            self.classifiers[slot.module_id] = classifier
            slot.runner_info = runner_info(classifier)
            self.cores.after_open(slot.runner_info["on_cpu"])
            # Openers may return any object with classify(); those without a preparer are classified whole.
            make_preparer = getattr(classifier, "preparer", None)
            slot.preparer = make_preparer(depth=2) if make_preparer is not None else None
            with self._cond:  # the prepare thread's own ring: one job inferred, one prepared
                self.preparers[slot.module_id] = make_preparer(depth=2) if make_preparer is not None else None
                self._cond.notify_all()
        return classifier

    # ---- the inference thread ----
    def _needs_preparing(self, job):
        """(lock held) True for a live job the prepare thread must prepare before it is inferred."""
        return job.live and job.prepared is None and self.preparers.get(job.slot.module_id) is not None

    def _next_job_locked(self):
        """(lock held) The prepared live job, else a waiting job that needs no preparing, else None."""
        if self._ready is not None:
            job, self._ready = self._ready, None
            return job
        if self._pending is not None and not self._needs_preparing(self._pending):
            job, self._pending = self._pending, None
            return job
        return None

    def _run(self):
        try:
            while True:
                with self._cond:
                    job = self._next_job_locked()
                    while job is None and not self._stop:
                        self._cond.wait()
                        job = self._next_job_locked()
                    if self._stop:
                        return
                    started = self.busy_since = time.monotonic()
                    # Wake a queued submit (files: the next frame is handed over while this one runs,
                    # never after it) and the prepare thread (it times the next live frame from now).
                    self._cond.notify_all()
                outcome = self._process(job)
                if job.prepared is not None and outcome.error is None:
                    self.infer_time.add(outcome.finished - started)
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

    # ---- the prepare thread ----
    def _prepare_due_locked(self):
        """(lock held) Seconds until the waiting live job should be prepared (<= 0: now), or None when
        there is nothing to prepare (no such job, or one is prepared already)."""
        job = self._pending
        if job is None or self._ready is not None or not self._needs_preparing(job):
            return None
        # A preparation that takes longer than usual (locating varies) must not leave inference idle.
        started, infer_s, prepare_s = self.busy_since, self.infer_time.seconds, self.prepare_time.upper()
        if started is None or infer_s is None or prepare_s is None:
            return 0.0
        return started + infer_s - prepare_s - self.PREPARE_MARGIN_S - time.monotonic()

    def _prepare_loop(self):
        while True:
            with self._cond:
                due = self._prepare_due_locked()
                while (due is None or due > 0) and not self._stop:
                    self._cond.wait(due)
                    due = self._prepare_due_locked()
                if self._stop:
                    return
                job, self._pending = self._pending, None
                preparer = self.preparers[job.slot.module_id]
                self._preparing = True
            self.cores.place_loop_thread((job.slot.runner_info or {}).get("on_cpu"))
            started = time.monotonic()
            try:
                if job.locate is not None:
                    job.located = job.locate(job.frame)
                job.prepared = preparer(job.frame, localisation=job.located)
            except Exception as exc:  # reported in order by the inference thread, counted like a failure
                job.prepare_error = "{}: preparing the frame: {}: {}".format(job.slot.module_id,
                                                                             type(exc).__name__, exc)
            else:
                self.prepare_time.add(time.monotonic() - started)
            with self._cond:
                self._preparing = False
                self._ready = job
                self._cond.notify_all()
            self._keep_outline(job)

    def _keep_outline(self, job):
        """A live job just located: the newest outline (a later one is never replaced by an earlier)."""
        if job.located is None or job.prepare_error is not None:
            return
        with self._cond:
            if self._outline is None or self._outline.seq < job.seq:
                self._outline = job

    def newest_outline(self):
        """The newest live job the prepare thread located (its ``located`` is the outline), or None."""
        with self._cond:
            return self._outline

    def _set_phase(self, phase):
        self.phase, self.phase_since = phase, time.monotonic()

    def _process(self, job):
        if job.slot.module_id not in self.classifiers:
            self._set_phase("loading")
        try:
            classifier = self._classifier(job.slot)
        except MedkioskError as exc:
            return Outcome(job, error="{}: {}".format(job.slot.module_id, exc), slot_failed=True)
        if job.prepare_error is not None:
            return Outcome(job, error=job.prepare_error)
        self._set_phase("inferring")
        try:
            if job.prepared is not None:
                prediction = classifier.infer_prepared(job.prepared)
            else:  # classified whole (its runner was loading when it was posted)
                if job.locate is not None and job.located is None:
                    job.located = job.locate(job.frame)
                    self._keep_outline(job)
                located = job.located
                prediction = (classifier.classify(job.frame, localisation=located) if located is not None
                              else classifier.classify(job.frame))
            suggest_in_slots(prediction, job.frame, job.slot, self.slots, self._classifier, job.prepared)
            return Outcome(job, prediction=prediction)
        except Exception as exc:  # reported to the loop, which counts it and stops after too many
            return Outcome(job, error="{}: {}: {}".format(job.slot.module_id, type(exc).__name__, exc))
