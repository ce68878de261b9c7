"""The display's pace in live mode (``edge.kiosk.screen.DisplayPacer``): a camera faster than the screen
refreshes has every frame posted for inference but not every frame drawn; a result is drawn at once.

The pacer's rules run on a fake clock (no sleeps); the loop tests use the fake camera of the other
kiosk tests (no camera on CI) and the real test bundle.
"""

import io
import time

from edge.kiosk import Kiosk
from edge.kiosk.screen import DisplayPacer
from edge.outputs import NullSink
from tests.edge.kiosk.kiosk_helpers import SIZE, fake_camera, hooked_opener


class FakeClock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _camera(pacer, clock, camera_fps, seconds, result_seq=1):
    """Frames at ``camera_fps`` for ``seconds`` with one result throughout; the times of those drawn."""
    drawn = []
    start = clock.now
    for index in range(int(camera_fps * seconds)):
        clock.now = start + index / float(camera_fps)
        if pacer.due(result_seq):
            pacer.drawn(result_seq)
            drawn.append(clock.now)
    return drawn


def test_a_camera_at_twice_the_display_rate_fills_every_slot_once():
    clock = FakeClock()
    pacer = DisplayPacer(60, clock=clock)
    drawn = _camera(pacer, clock, 120, 1.0)
    assert len(drawn) == 60, len(drawn)  # every other frame: 60 screens, not 120 (nor 40)
    assert pacer.skipped == 60


def test_a_camera_between_one_and_two_display_slots_is_drawn_at_most_at_the_display_rate():
    clock = FakeClock()
    pacer = DisplayPacer(60, clock=clock)
    drawn = _camera(pacer, clock, 90, 2.0)
    assert 45 * 2 <= len(drawn) <= 60 * 2, len(drawn)
    gaps = [b - a for a, b in zip(drawn, drawn[1:])]
    assert min(gaps) >= 1.0 / 90 - 1e-9


def test_a_camera_slower_than_the_display_has_every_frame_drawn():
    clock = FakeClock()
    pacer = DisplayPacer(60, clock=clock)
    assert len(_camera(pacer, clock, 30, 1.0)) == 30 and pacer.skipped == 0
    clock2 = FakeClock()
    exact = DisplayPacer(60, clock=clock2)
    assert len(_camera(exact, clock2, 60, 1.0)) == 60  # the display's own rate: no frame dropped


def test_a_new_result_is_drawn_at_once_and_the_next_frame_only_screen_a_slot_later():
    clock = FakeClock()
    pacer = DisplayPacer(10, clock=clock)  # slots 0.1 s apart
    assert pacer.due(1)
    pacer.drawn(1)
    clock.now += 0.01
    assert not pacer.due(1)  # same result, the slot has not come
    assert pacer.due(2)  # a result landed: at once, 0.01 s after the last screen
    pacer.drawn(2)
    clock.now += 0.1 * (1 - DisplayPacer.EARLY) - 0.001
    assert not pacer.due(2)  # a frame-only screen waits a slot from the result's screen
    clock.now += 0.002
    assert pacer.due(2)


def test_the_early_margin_is_a_quarter_slot():
    clock = FakeClock()
    pacer = DisplayPacer(10, clock=clock)
    pacer.drawn(1)
    clock.now += 0.075 - 1e-6
    assert not pacer.due(1)
    clock.now += 2e-6
    assert pacer.due(1)


def test_a_loop_that_fell_behind_restarts_the_grid_from_now():
    clock = FakeClock()
    pacer = DisplayPacer(10, clock=clock)
    pacer.drawn(1)
    clock.now += 0.5  # five slots late (a slow screen)
    assert pacer.due(1)
    pacer.drawn(1)
    clock.now += 0.05
    assert not pacer.due(1)  # not a burst of catch-up screens
    clock.now += 0.05
    assert pacer.due(1)


def test_no_display_rate_draws_every_frame():
    clock = FakeClock()
    pacer = DisplayPacer(0, clock=clock)
    assert len(_camera(pacer, clock, 240, 0.5)) == 120 and pacer.skipped == 0


class TimedSink(NullSink):
    """Records, for every screen written, when it was written and the result drawn on it."""

    def __init__(self):
        super().__init__()
        self.kiosk = None
        self.screens = []

    def write(self, canvas):
        super().write(canvas)
        self.screens.append((time.monotonic(), self.kiosk.screen.result_seq))


def _paced_run(slot, synth_images, display_fps, infer_s, max_frames, period):
    """The kiosk on a fake camera delivering a frame every ``period`` s, inference slowed to ``infer_s``."""
    source, _factory = fake_camera(synth_images, period=period)
    sink = TimedSink()
    kiosk = Kiosk(source, sink, [slot], size=SIZE, stderr=io.StringIO(), max_frames=max_frames,
                  open_classifier=hooked_opener(lambda _how: time.sleep(infer_s)), display_fps=display_fps)
    sink.kiosk = kiosk
    with source, sink:
        assert kiosk.run() == 0
    assert kiosk.failures == 0, kiosk.last_error
    return kiosk, sink.screens


def test_a_fast_camera_is_posted_every_frame_but_drawn_at_the_display_rate(slot, synth_images):
    """A 250 fps camera, a 20 Hz display and slow inference (0.15 s): the screens between results come
    at most at the display's rate and camera frames went undrawn (the old loop drew every one)."""
    kiosk, screens = _paced_run(slot, synth_images, display_fps=20, infer_s=0.15, max_frames=24,
                                period=0.004)
    seconds = screens[-1][0] - screens[0][0]
    frame_only = sum(1 for before, after in zip(screens, screens[1:]) if before[1] == after[1])
    assert kiosk.pacer.skipped > 0, "every camera frame was drawn: the display is not paced"
    assert frame_only <= seconds * 20 * 1.25 + 2, (frame_only, seconds, kiosk.pacer.skipped)
    assert kiosk.worker.dropped > 0  # and every frame was still posted: stale ones replaced


def test_a_result_is_drawn_without_waiting_for_the_display_slot(slot, synth_images):
    """A 1 Hz display and fast results (inference 0.05 s, a frame every 0.01 s): each new result is on
    screen at once, so twelve screens take far less than the twelve seconds that slots alone would."""
    _kiosk, screens = _paced_run(slot, synth_images, display_fps=1, infer_s=0.05, max_frames=12,
                                 period=0.01)
    seconds = screens[-1][0] - screens[0][0]
    results = [seq for _stamp, seq in screens if seq is not None]
    assert seconds < 6.0, seconds
    assert len(set(results)) >= 8, screens  # nearly every screen after the first result shows a new one
