"""The inference worker on the real bundle's classifier: queued, replaced and awaited jobs."""

import threading
import time

import numpy as np

from edge.kiosk import InferenceWorker, Job
from tests.edge.kiosk.kiosk_helpers import gated_opener


def test_worker_keeps_each_queued_frames_own_outcome(slot):
    """The pipeline's contract with the inference thread, on the real bundle's classifier:
    queued jobs are never dropped and each is awaited by its own sequence number; an unqueued
    submit replaces a waiting job (live), and waiting for a replaced job returns at once."""
    gate = threading.Event()
    gated = gated_opener(gate)

    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 120, 200, 90)]
    worker = InferenceWorker(gated).start()
    try:
        opening = threading.Timer(0.5, gate.set)
        opening.start()
        for seq, image in enumerate(images[:3], start=1):
            # The 3rd waits for the 2nd to be taken (the gate opens at 0.5 s).
            assert worker.submit(Job(seq, image, seq, slot, False), queue_s=10.0)
        outcomes = [worker.wait_for(seq, 20.0) for seq in (1, 2, 3)]
        assert [outcome.job.seq for outcome in outcomes] == [1, 2, 3] and worker.dropped == 0
        # Each outcome is its own frame's: the quality gate measured that frame's grey level.
        assert [round(o.prediction.quality.brightness) for o in outcomes] == [30, 120, 200]
        gate.clear()
        worker.submit(Job(4, images[3], 4, slot, False))  # runs (blocked at the gate)
        time.sleep(0.2)
        worker.submit(Job(5, images[0], 5, slot, False))  # waits...
        # A queued submit gives up (False, nothing replaced) while the worker stays busy: the kiosk
        # then checks for a stalled inference instead of blocking for ever.
        assert worker.submit(Job(7, images[2], 7, slot, False), queue_s=0.1) is False and worker.dropped == 0
        worker.submit(Job(6, images[1], 6, slot, False))  # ...and is replaced (live: newest frame only)
        gate.set()
        assert worker.wait_for(6, 20.0).job.seq == 6 and worker.dropped == 1
        assert worker.wait_for(5, 0.01) is None and worker.gone(5)
    finally:
        gate.set()
        worker.stop()
