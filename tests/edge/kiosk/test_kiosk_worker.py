"""The inference worker on the real bundle's classifier: queued, replaced and awaited jobs, and the
prepare thread that prepares live frames just in time for the inference thread."""

import threading
import time

import numpy as np

from edge.classify import FramePreparer
from edge.kiosk import InferenceWorker, Job
from edge.kiosk.worker import Estimate
from edge.quality import QualityThresholds
from tests.edge.kiosk.kiosk_helpers import QUALITY, gated_opener
from tests.edge.tensorrt_tests.standin_backend import opener_for_tests


def test_worker_keeps_each_queued_frames_own_outcome(slot):
    """The pipeline's contract with the inference thread, on the real bundle's classifier:
    queued jobs are never dropped and each is awaited by its own sequence number; an unqueued
    submit replaces a waiting job (live), and waiting for a replaced job returns at once."""
    gate = threading.Event()
    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 120, 200, 90)]
    worker = InferenceWorker(gated_opener(gate)).start()
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
        # Files hand over frames prepared by the display thread: they wait in the queue as they are.
        prepare = FramePreparer(slot.bundle, QualityThresholds.from_mapping(QUALITY).for_bundle(slot.bundle),
                                depth=4)

        def prepared(seq, image):
            return Job(seq, image, seq, slot, False, prepared=prepare(image))

        gate.clear()
        worker.submit(prepared(4, images[3]))  # runs (blocked at the gate)
        time.sleep(0.2)
        worker.submit(prepared(5, images[0]))  # waits...
        # A queued submit gives up (False, nothing replaced) while the worker stays busy: the kiosk
        # then checks for a stalled inference instead of blocking for ever.
        assert worker.submit(prepared(7, images[2]), queue_s=0.1) is False and worker.dropped == 0
        worker.submit(prepared(6, images[1]))  # ...and is replaced (live: newest frame only)
        gate.set()
        assert worker.wait_for(6, 20.0).job.seq == 6 and worker.dropped == 1
        assert worker.wait_for(5, 0.01) is None and worker.gone(5)
    finally:
        gate.set()
        worker.stop()


def test_live_frames_are_prepared_on_the_prepare_thread_newest_only(slot):
    """Live frames (unprepared) behind a busy inference: the prepare thread prepares only the newest
    waiting frame, the inference thread only infers (infer_prepared), and the result is the one
    classify gives for that very frame (same preparation and quality gate)."""
    gate = threading.Event()
    calls = []
    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 60, 90, 120, 150, 180)]
    worker = InferenceWorker(gated_opener(gate, calls)).start()
    try:
        gate.set()
        assert worker.submit(Job(1, images[0], 1, slot, False), queue_s=10.0)  # loads the runner
        assert worker.wait_for(1, 60.0).error is None
        gate.clear()
        worker.submit(Job(2, images[1], 2, slot, False, live=True))  # prepared at once (worker idle)...
        time.sleep(0.3)  # ... and inferred (blocked at the gate)
        for seq in (3, 4, 5, 6):  # the camera goes on: each replaces the one waiting
            worker.submit(Job(seq, images[seq - 1], seq, slot, False, live=True))
        gate.set()
        last = worker.wait_for(6, 20.0)
        assert last is not None and last.error is None, last and last.error
        assert worker.dropped == 3 and worker.wait_for(3, 0.01) is None and worker.gone(5)
        # Frame 6 was prepared by the prepare thread and inferred without preparing again.
        assert calls[1:] == [("prepared", "inference")] * 2, calls
        assert round(last.prediction.quality.brightness) == 180
        with opener_for_tests(QUALITY)(slot) as classifier:
            expected = classifier.classify(images[5])
        np.testing.assert_allclose(last.prediction.probabilities, expected.probabilities, atol=1e-6)
        assert last.prediction.quality.to_dict() == expected.quality.to_dict()
    finally:
        gate.set()
        worker.stop()


def test_a_live_frame_is_prepared_just_before_inference_needs_it(slot):
    """With the inference and preparation times known, the waiting frame is prepared only when the
    job running is about to end (not as soon as it arrives): a frame posted meanwhile replaces it
    unprepared, so the frame inferred next is the newest."""
    gate = threading.Event()
    prepared_at = []
    opener = gated_opener(gate)

    def open_timed(module_slot):
        classifier = opener(module_slot)
        make = classifier.preparer

        def preparer(depth=2):
            prepare = make(depth=depth)

            def timed(image, localisation=None):
                prepared_at.append((threading.current_thread().name, time.monotonic(), int(image[0, 0, 0])))
                return prepare(image, localisation=localisation)

            return timed

        classifier.preparer = preparer
        return classifier

    worker = InferenceWorker(open_timed).start()
    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 60, 90)]
    try:
        gate.set()
        worker.submit(Job(1, images[0], 1, slot, False), queue_s=10.0)
        assert worker.wait_for(1, 60.0).error is None
        gate.clear()
        worker.submit(Job(2, images[0], 2, slot, False, live=True))
        time.sleep(0.2)  # job 2: prepared at once (the worker was idle) and blocked at the gate
        worker.infer_time.seconds, worker.prepare_time.seconds = 0.6, 0.1  # "inference takes 0.6 s"
        worker.prepare_time.deviation = 0.0
        started = worker.busy_since
        worker.submit(Job(3, images[1], 3, slot, False, live=True))  # due at started + 0.6 - 0.1 - margin
        time.sleep(0.1)
        assert [grey for _name, _at, grey in prepared_at].count(60) == 0, "prepared long before it is due"
        worker.submit(Job(4, images[2], 4, slot, False, live=True))  # replaces 3 before it was ever prepared
        time.sleep(0.6)
        gate.set()
        assert worker.wait_for(4, 20.0).error is None and worker.gone(3)
        name, at, grey = prepared_at[-1]
        assert (name, grey) == ("prepare", 90)
        due = started + 0.6 - 0.1 - worker.PREPARE_MARGIN_S
        assert due - 0.02 <= at < due + 1.0, (at - started)  # never early; late only by the wake-up
        assert [g for _n, _a, g in prepared_at].count(60) == 0  # the replaced frame was never prepared
    finally:
        gate.set()
        worker.stop()


def test_a_live_frame_that_cannot_be_prepared_is_reported_in_order(slot):
    """A preparation failure on the prepare thread comes back as that frame's outcome (an error, no
    prediction), not as an exception in a thread nobody watches."""
    opener = opener_for_tests(QUALITY)
    worker = InferenceWorker(opener).start()
    try:
        worker.submit(Job(1, np.full((120, 160, 3), 90, np.uint8), 1, slot, False), queue_s=10.0)
        assert worker.wait_for(1, 60.0).error is None
        worker.submit(Job(2, np.zeros((0, 0, 3), np.uint8), 2, slot, False, live=True))  # an empty frame
        outcome = worker.wait_for(2, 20.0)
        assert outcome.prediction is None and "preparing the frame" in outcome.error, outcome.error
    finally:
        worker.stop()


def test_estimate_is_a_moving_average():
    estimate = Estimate()
    assert estimate.seconds is None and estimate.upper() is None
    estimate.add(0.010)
    assert estimate.seconds == 0.010 and estimate.upper() == 0.010
    estimate.add(0.020)
    assert abs(estimate.seconds - (0.010 + Estimate.WEIGHT * 0.010)) < 1e-12


def test_estimate_upper_adds_the_spread_of_the_durations():
    """Durations that vary (locating a camera frame) get a margin of two mean deviations; steady ones none."""
    steady, varying = Estimate(), Estimate()
    for _ in range(50):
        steady.add(0.004)
    for value in [0.002, 0.006] * 25:
        varying.add(value)
    assert steady.upper() == 0.004
    assert abs(varying.seconds - 0.004) < 0.001
    # The mean deviation of +-2 ms around the mean settles near 2 ms: upper is about 4 ms above it.
    assert 0.0015 < varying.deviation < 0.0025, varying.deviation
    assert abs(varying.upper() - (varying.seconds + 2 * varying.deviation)) < 1e-12


def test_a_queued_submit_returns_when_the_waiting_job_is_taken_not_when_it_ends(slot):
    """Files: the display thread hands frame N+2 over the moment the worker starts N+1, so inference
    never waits for the display thread to wake (the worker used to wake it only when N+1 ended)."""
    gates = {2: threading.Event(), 3: threading.Event()}
    opener = opener_for_tests(QUALITY)

    def gated(module_slot):
        classifier = opener(module_slot)
        classify = classifier.classify

        def slow(image):
            gate = gates.get(int(image[0, 0, 0]))
            if gate is not None:
                gate.wait(10)
            return classify(image)

        classifier.classify = slow
        return classifier

    worker = InferenceWorker(gated)
    # The race, made certain: the woken display thread checks the queue before the worker takes job 3
    # (what a loaded machine's scheduler does), so only a wake-up at the take can hand job 4 over.
    take, raced = worker._next_job_locked, []

    def display_first():
        waiting = worker._pending
        if waiting is not None and waiting.seq == 3 and not raced:
            raced.append(1)
            worker._cond.wait(0.3)
        return take()

    worker._next_job_locked = display_first
    worker.start()
    images = [np.full((120, 160, 3), value, np.uint8) for value in (1, 2, 3)]
    try:
        assert worker.submit(Job(1, images[0], 1, slot, False), queue_s=10.0)
        assert worker.wait_for(1, 60.0).error is None
        worker.submit(Job(2, images[1], 2, slot, False))  # runs, held at its gate
        time.sleep(0.1)
        worker.submit(Job(3, images[2], 3, slot, False))  # waits behind it, held at its gate once taken
        handed = []
        queued = threading.Thread(target=lambda: handed.append(
            (worker.submit(Job(4, images[0], 4, slot, False), queue_s=5.0), time.monotonic())))
        queued.start()
        time.sleep(0.2)
        released = time.monotonic()
        gates[2].set()  # job 2 ends, job 3 is taken (and held): job 4 must be handed over now
        queued.join(10)
        assert handed and handed[0][0] is True and handed[0][1] - released < 1.0, handed
    finally:
        for gate in gates.values():
            gate.set()
        worker.stop()
