"""Job numbering and the depth-1 file pipeline.

Files and image folders are not live: every frame is classified and drawn with its own result,
nothing is skipped. The display thread reads and prepares frame N+1 (decode, preprocess, quality
gate) and queues it behind frame N before it draws N, so inference runs back to back while the
display thread decodes and draws. ``FilePipeline`` holds that state: the job in flight (submitted,
not yet drawn), the stamp of the last frame submitted, and the generation a key bumps when it
makes the frame in flight obsolete. Live mode uses the same numbering (``new_job``).
"""

from edge.kiosk.worker import Job


class FilePipeline(object):
    """The depth-1 pipeline's state and its waits; ``keepalive()`` runs while it waits (watchdog,
    stall check: it raises to end the run) and ``stopped()`` says the loop was asked to stop."""

    QUEUE_POLL_S = 0.2

    def __init__(self, keepalive, stopped):
        self.keepalive = keepalive
        self.stopped = stopped
        self.seq = 0
        self.generation = 0  # bumped when a key makes the frame in flight obsolete
        self.inflight = None  # the job submitted but not yet drawn
        self.submitted_stamp = None

    def is_new(self, stamp):
        return stamp != self.submitted_stamp

    def new_job(self, frame, stamp, slot, frozen, prepared=None, name=None, located=None, live=False,
                locate=None):
        """Number a job for ``frame`` and remember it as the last submitted one."""
        self.seq += 1
        self.submitted_stamp = stamp
        return Job(self.seq, frame, stamp, slot, frozen, prepared=prepared, generation=self.generation,
                   name=name, located=located, live=live, locate=locate)

    def current(self, job):
        """False when a key made ``job`` obsolete after it was submitted."""
        return job.generation == self.generation

    def resubmit(self):
        """The frame on screen is classified again (a new module, freeze or image)."""
        self.submitted_stamp = None

    def drop(self):
        """A key changed what is shown: the frame in flight is not drawn and its result is ignored."""
        self.inflight = None
        self.generation += 1

    def push(self, worker, job):
        """Queue ``job`` behind the frame in flight; return that earlier job (to be drawn now) or None."""
        earlier, self.inflight = self.inflight, job
        self._queue(worker, job)  # behind the earlier frame: inference never waits for the display
        return earlier

    def take_inflight(self):
        job, self.inflight = self.inflight, None
        return job

    def _queue(self, worker, job):
        """Submit without dropping the job waiting before it; a hung inference ends the run meanwhile."""
        while not worker.submit(job, queue_s=self.QUEUE_POLL_S):
            if self.stopped():
                return
            self.keepalive()

    def wait(self, worker, seq):
        """The outcome of job ``seq`` once it is done; None if it never will be or the loop stops."""
        while not self.stopped():
            self.keepalive()
            outcome = worker.wait_for(seq, self.QUEUE_POLL_S)
            if outcome is not None:
                return outcome
            if worker.gone(seq):
                return None
            self.keepalive()
        return None
