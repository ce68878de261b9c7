"""The depth-1 file pipeline: every video frame drawn with its own result, inference overlapping drawing,
and its refusal paths (a frame that cannot be prepared, a failed or hung inference)."""

import threading

import numpy as np
import pytest

from edge.kiosk import Kiosk, KioskFailure
from edge.outputs import KeyScript, NullSink
from edge.sources import open_source
from tests.edge.kiosk.kiosk_helpers import (
    QUALITY,
    SIZE,
    class_video,
    classified,
    gated_opener,
    hooked_opener,
    recorded_video_run,
)
from tests.edge.kiosk_media import read_video
from tests.edge.tensorrt_tests.standin_backend import opener_for_tests


def test_video_frames_are_drawn_with_their_own_results(tmp_path, slot, synth_images):
    """Pipelined file mode (frame N+1 inferred while N is drawn) never pairs a frame with another's result."""
    kiosk, sink, path = recorded_video_run(tmp_path, slot, synth_images, keys=KeyScript("WAIT4,SPACE"),
                                            max_frames=9)
    decoded = read_video(path)
    shown = [frame for frame, _probabilities in sink.shown]
    # Frames 1-5 in order, then SPACE froze the frame on screen (the 5th), not the one read ahead.
    assert len(shown) == 9
    for index in range(5):
        assert np.array_equal(shown[index], decoded[index]), "frame {} out of order".format(index + 1)
    for frame in shown[5:]:
        assert np.array_equal(frame, decoded[4])
    expected = classified(slot, shown)
    drawn = [(index, probabilities) for index, (_frame, probabilities) in enumerate(sink.shown)
             if probabilities is not None]
    assert [index for index, _ in drawn] == list(range(9))  # the frozen image waits for its own result too
    for index, probabilities in drawn:
        assert np.allclose(probabilities, expected[index], atol=1e-5), \
            "screen {}: another frame's result".format(index + 1)
    assert len({tuple(np.round(p, 3)) for _, p in drawn[:5]}) > 1  # the clip really changes class
    assert kiosk.failures == 0


def test_video_inference_overlaps_drawing(tmp_path, slot, synth_images):
    """Frame N+1 is prepared and handed to the inference thread before frame N is drawn."""
    started = []
    lock = threading.Condition()

    def record(how):
        with lock:
            started.append((how, threading.current_thread().name))
            lock.notify_all()

    class OverlapSink(NullSink):
        def __init__(self):
            super().__init__()
            self.overlapped = []

        def write(self, canvas):
            super().write(canvas)
            # Drawing frame k: the inference of frame k+1 must already be under way (the last frame has
            # none after it). A sequential loop reads k+1 only after this write, so it would time out.
            wanted = self.frames + 1
            with lock:
                lock.wait_for(lambda: len(started) >= wanted, timeout=10.0)
                self.overlapped.append(len(started) >= wanted)

    path = class_video(tmp_path, synth_images)
    count = len(read_video(path))
    sink = OverlapSink()
    kiosk = Kiosk(open_source("file://" + path), sink, [slot], size=SIZE,
                  open_classifier=hooked_opener(record))
    with kiosk.source, sink:
        assert kiosk.run() == 0
    assert kiosk.frames == count and len(started) == count
    assert sink.overlapped[:-1] == [True] * (count - 1), sink.overlapped
    # Once the runner is loaded, frames arrive prepared by the display thread; before that (while the
    # first frame loads the model) the worker prepares them itself.
    assert [how for how, _thread in started[2:]] == ["prepared"] * (count - 2)
    assert {thread for _how, thread in started} == {"inference"}

def test_a_hung_inference_behind_a_queued_frame_still_ends_therun_kiosk(tmp_path, slot, synth_images):
    """Pipelined video, a key drops the frame in flight, then that inference hangs (a stand-in: the
    real classifier, made to block from its second call on, as a wedged GPU would): the loop must
    not wait for ever to queue the next frame behind it, but report the stall for systemd."""
    release = threading.Event()
    calls = []

    def hang_from_the_second(_how):
        calls.append(1)
        if len(calls) >= 2:
            release.wait(30)

    path = class_video(tmp_path, synth_images)
    kiosk = Kiosk(open_source("file://" + path), NullSink(), [slot], size=SIZE, keys=KeyScript("M"),
                  open_classifier=hooked_opener(hang_from_the_second), inference_timeout_s=0.5)
    try:
        with kiosk.source, pytest.raises(KioskFailure, match="inference stalled for more than 0.5 s"):
            kiosk.run()
    finally:
        release.set()
    assert kiosk.frames == 1 and len(calls) == 2


def test_a_frame_that_cannot_be_prepared_is_counted_and_never_shows_another_frames_result(
        tmp_path, slot, synth_images):
    """Preparing one video frame fails (injected): it is counted, and no screen pairs a frame with a
    result that is not its own."""
    opener = opener_for_tests(QUALITY)
    prepared = []

    def open_failing(module_slot):
        classifier = opener(module_slot)
        make_preparer = classifier.preparer

        def preparer(depth=2):
            prepare = make_preparer(depth)

            def call(image):
                prepared.append(1)
                if len(prepared) in (2, 4):
                    raise ValueError("injected: frame cannot be prepared")
                return prepare(image)

            return call

        classifier.preparer = preparer
        return classifier

    kiosk, sink, path = recorded_video_run(tmp_path, slot, synth_images, open_classifier=open_failing)
    assert kiosk.failures == 2 and "injected" in kiosk.last_error
    assert len(sink.shown) == len(read_video(path)) - 2  # the two frames that failed are skipped
    expected = classified(slot, [frame for frame, _probabilities in sink.shown])
    for (_frame, probabilities), own in zip(sink.shown, expected):
        assert probabilities is not None
        assert np.allclose(probabilities, own, atol=1e-5)


def test_a_failed_inference_leaves_its_frame_without_a_result(tmp_path, slot, synth_images):
    """One video frame's inference raises (injected): that frame is drawn as still analysing, not
    under the previous frame's result; the failure is counted."""
    calls = []

    def fail_the_third(_how):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected: inference failed")

    kiosk, sink, path = recorded_video_run(tmp_path, slot, synth_images,
                                            open_classifier=hooked_opener(fail_the_third))
    assert kiosk.failures == 1 and "injected" in kiosk.last_error
    assert [probabilities is None for _frame, probabilities in sink.shown] == [
        index == 2 for index in range(len(read_video(path)))]


def test_file_pipeline_numbers_queues_and_drops_jobs(slot):
    """FilePipeline on its own with the real worker and classifier: a job queued behind the one in
    flight is never dropped, each is awaited by its own number, a key drop makes the job in flight
    obsolete, and a stall check raising while it waits to queue ends the wait."""
    from edge.kiosk import FilePipeline, InferenceWorker

    gate = threading.Event()
    gated = gated_opener(gate)

    stalls = []

    def keepalive():
        stalls.append(1)
        if len(stalls) == 3:  # the third check while waiting finds the inference stalled
            raise KioskFailure("stalled (injected)")

    pipeline = FilePipeline(keepalive, lambda: False)
    worker = InferenceWorker(gated).start()
    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 120, 200)]
    try:
        first = pipeline.new_job(images[0], 1.0, slot, False)
        assert pipeline.push(worker, first) is None and not pipeline.is_new(1.0) and pipeline.is_new(2.0)
        second = pipeline.new_job(images[1], 2.0, slot, False)
        assert pipeline.push(worker, second) is first  # queued behind it: the first is drawn now
        third = pipeline.new_job(images[2], 3.0, slot, False)
        with pytest.raises(KioskFailure, match="injected"):
            pipeline.push(worker, third)  # the worker is busy and the second waits: keepalive runs
        assert len(stalls) == 3 and worker.dropped == 0 and pipeline.inflight is third
        gate.set()
        outcome = pipeline.wait(worker, second.seq)
        assert outcome.job is second and round(outcome.prediction.quality.brightness) == 120
        assert pipeline.current(second)
        pipeline.drop()
        assert not pipeline.current(second) and pipeline.inflight is None
        pipeline.resubmit()
        assert pipeline.is_new(3.0)
    finally:
        gate.set()
        worker.stop()
