"""Shared helpers of the kiosk tests: the real exported bundle (ONNX Runtime, CPU; without it, as on a
JetPack 4.6 Nano, the TensorRT backend on the stand-ins: tests/edge/tensorrt_tests/standin_backend.py),
real images and videos.

Screens go to a headless sink (PNG folder) and are checked region by region (edge.overlay.Layout).
"""

import glob
import io
import os
import threading
import time

import cv2
import numpy as np

from edge.caselog import CaseLog
from edge.kiosk import Kiosk
from edge.outputs import ImageDirSink, KeyScript, NullSink
from edge.overlay import Layout
from edge.sources import open_source
from tests.edge.kiosk_media import CaptureFactory, write_video
from tests.edge.tensorrt_tests.standin_backend import opener_for_tests

SIZE = (800, 480)
LAYOUT = Layout(SIZE)
QUALITY = {"blur_threshold": 60, "dark_threshold": 40, "bright_threshold": 220}
YELLOW, AMBER, RED, BLUE, BAR = (0, 220, 255), (0, 160, 255), (40, 40, 220), (200, 120, 20), (80, 200, 80)


def has_colour(image, bgr, minimum=300, tolerance=40):
    distance = np.abs(image.astype(int) - np.array(bgr)).sum(axis=2)
    return int((distance < tolerance).sum()) >= minimum


def frames_in(folder):
    return [cv2.imread(path) for path in sorted(glob.glob(os.path.join(str(folder), "frame_*.png")))]


class KeysAfterResult(KeyScript):
    """Scripted keys that start once a result is on screen, not after a fixed number of frames (the
    first result waits for the runner to load and its golden images to be checked: seconds on a
    loaded machine). Until then each screen gets no key (counted in ``waited``; at most
    ``timeout_s``, then the test fails); the loop stops after the script's last key, so the run has
    ``waited + len(tokens)`` screens and the script's n-th key follows screen ``waited + n``."""

    def __init__(self, spec, timeout_s=120.0):
        super().__init__(spec)
        self.kiosk = None
        self.waited = 0
        self.timeout_s = timeout_s
        self._deadline = None

    def next_key(self):
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout_s
        if self._next == 0 and self.kiosk.current_result() is None:
            assert time.monotonic() < self._deadline, "no result within {:.0f} s".format(self.timeout_s)
            self.waited += 1
            return None
        key = super().next_key()
        if self.exhausted:
            self.kiosk.stop()
        return key


def run_kiosk(tmp_path, source, slots, keys=None, sink=None, start=0, **kwargs):
    """The kiosk over ``source`` into PNG screens; ``keys``: a KeyScript spec or a KeysAfterResult."""
    sink = sink or ImageDirSink(str(tmp_path / "frames"))
    stdout = io.StringIO()
    kwargs.setdefault("caselog_factory", lambda: CaseLog(str(tmp_path / "state"), min_free_mb=0))
    kwargs.setdefault("open_classifier", opener_for_tests(QUALITY))
    script = keys if isinstance(keys, KeyScript) else KeyScript(keys) if keys else None
    kiosk = Kiosk(source, sink, slots, start=start, stdout=stdout, size=SIZE, keys=script, **kwargs)
    for hook in (script, sink):  # the ones that watch the kiosk (KeysAfterResult, UntilBack)
        if hasattr(hook, "kiosk"):
            hook.kiosk = kiosk
    with source, sink:
        status = kiosk.run()
    assert status == 0
    return kiosk, stdout.getvalue().splitlines(), frames_in(tmp_path / "frames")


class UntilBack(ImageDirSink):
    """Screens to PNGs; stops the kiosk ``extra`` screens after the first result drawn after the
    "camera disconnected" banner, the real end of a disconnect test (reconnecting and the next
    inference take seconds on a loaded machine, not a fixed number of screens); after ``timeout_s``
    it stops anyway and the test's assertions fail. ``gaps``: seconds between consecutive screens
    neither of which shows the banner (the loop's own pace, not the wait for the camera)."""

    def __init__(self, folder, extra=5, timeout_s=120.0):
        super().__init__(folder)
        self.kiosk = None
        self.extra = extra
        self.timeout_s = timeout_s
        self.gaps = []
        self._red = False
        self._back = None
        self._last = self._deadline = None

    def write(self, canvas):
        super().write(canvas)
        now, red = time.monotonic(), has_colour(LAYOUT.banner.crop(canvas), RED, minimum=1000)
        if self._last is not None and not red and not self._last[1]:
            self.gaps.append(now - self._last[0])
        self._last = (now, red)
        self._deadline = self._deadline or now + self.timeout_s
        if red:
            self._red, self._back = True, None
        elif self._red and self._back is None and has_colour(LAYOUT.top3.crop(canvas), BAR, minimum=50):
            self._back = 0
        if self._back is not None:
            self._back += 1
        if (self._back or 0) > self.extra or now > self._deadline:
            self.kiosk.stop()


class RecordingSink(NullSink):
    """Records, for every screen written, the frame the kiosk drew and the result it drew with it."""

    def __init__(self):
        super().__init__()
        self.kiosk = None
        self.shown = []

    def write(self, canvas):
        super().write(canvas)
        result = self.kiosk.current_result()
        probabilities = None if result is None else list(result.probabilities)
        self.shown.append((self.kiosk.screen.frame.copy(), probabilities))


def class_video(tmp_path, synth_images):
    images = [cv2.imread(paths[index]) for index in range(2) for paths in synth_images.values()]
    path = str(tmp_path / "clip.avi")
    write_video(path, images, frames_per_image=1)
    return path


def hooked_opener(before):
    """The real opener, with ``before(how)`` called ahead of each classification the inference thread
    makes: "whole" (classify, the worker prepares) or "prepared" (infer_prepared). Failures and hangs
    are injected through it."""
    opener = opener_for_tests(QUALITY)

    def open_hooked(module_slot):
        classifier = opener(module_slot)
        for name, how in (("classify", "whole"), ("infer_prepared", "prepared")):
            method = getattr(classifier, name)

            def hooked(item, method=method, how=how):
                before(how)
                return method(item)

            setattr(classifier, name, hooked)
        return classifier

    return open_hooked


def gated_opener(gate, calls=None):
    """The real opener, each classification (whole or prepared) first waiting (at most 10 s) for
    ``gate`` (a threading.Event) and recorded in ``calls`` as (how, thread name): a test holds the
    inference thread busy while it queues, replaces or drops jobs."""
    opener = opener_for_tests(QUALITY)

    def gated(module_slot):
        classifier = opener(module_slot)
        for name, how in (("classify", "whole"), ("infer_prepared", "prepared")):
            method = getattr(classifier, name)

            def slow(item, method=method, how=how, **kwargs):
                gate.wait(10)
                if calls is not None:
                    calls.append((how, threading.current_thread().name))
                return method(item, **kwargs)

            setattr(classifier, name, slow)
        return classifier

    return gated


def recorded_video_run(tmp_path, slot, synth_images, open_classifier=None, **kwargs):
    """The kiosk over a clip changing class every frame, into a RecordingSink: (kiosk, sink, video path)."""
    path = class_video(tmp_path, synth_images)
    sink = RecordingSink()
    kiosk = Kiosk(open_source("file://" + path), sink, [slot], size=SIZE, stderr=io.StringIO(),
                  open_classifier=open_classifier or opener_for_tests(QUALITY), **kwargs)
    sink.kiosk = kiosk
    with kiosk.source, sink:
        assert kiosk.run() == 0
    return kiosk, sink, path


def classified(slot, frames):
    """Each frame's probabilities from a classifier of its own, outside the kiosk."""
    classifier = opener_for_tests(QUALITY, golden=False)(slot)
    try:
        return [classifier.classify(frame).probabilities for frame in frames]
    finally:
        classifier.__exit__(None, None, None)


def fake_camera(synth_images, fail_after=None, fail_first=0, period=0.03):
    # Fake camera (no V4L2 device on CI) behind the real V4L2 source, grabber and reconnection.
    frames = [cv2.imread(paths[0]) for paths in synth_images.values()]
    factory = CaptureFactory(frames, fail_after=fail_after, fail_first=fail_first, period=period)
    return open_source("v4l2:///dev/fake", capture_factory=factory, backoff=(0.1,), idle_s=0.02,
                       frame_timeout_s=1.0, max_read_failures=2), factory
