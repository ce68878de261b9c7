"""Small media helpers for the kiosk tests (Python 3.6, no torch): videos, blurred frames, fake cameras.

``FakeCapture`` stands in for cv2.VideoCapture on a camera device, which cannot exist on a CI
machine: it plays real frames from a list and can be told to fail (the camera disappearing).
"""

import threading
import time

import cv2
import numpy as np


def write_video(path, images, frames_per_image=3, size=(160, 120), fps=10):
    """Write an MJPG .avi showing each BGR image for ``frames_per_image`` frames; return the frame count."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    count = 0
    for image in images:
        frame = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        for _ in range(frames_per_image):
            writer.write(frame)
            count += 1
    writer.release()
    return count


def read_video(path):
    """Every frame of a video file, decoded by OpenCV as the kiosk's file source decodes it."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()


def blurred(image, size=(320, 240)):
    """A strongly blurred (out of focus) upscaled copy."""
    big = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(big, (0, 0), 12)


def textured(seed=0, size=(240, 320)):
    """A sharp, mid-grey, well exposed random texture (passes the quality gate)."""
    rng = np.random.RandomState(seed)
    return rng.randint(40, 215, size=size + (3,)).astype(np.uint8)


class FakeCapture(object):
    """A fake camera device (cv2.VideoCapture interface) over real frames.

    ``fail_after``: after this many frames every read fails (unplugged) until the capture is
    re-created; ``period``: seconds per frame (a camera paces its frames).
    """

    def __init__(self, frames, fail_after=None, period=0.01, opened=True):
        self.frames = list(frames)
        self.fail_after = fail_after
        self.period = period
        self.opened = opened
        self.reads = 0
        self.released = False
        self.settings = {}

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.settings[prop] = value
        return True

    def read(self):
        time.sleep(self.period)
        if self.fail_after is not None and self.reads >= self.fail_after:
            return False, None
        frame = self.frames[self.reads % len(self.frames)]
        self.reads += 1
        return True, frame

    def release(self):
        self.released = True


class CaptureFactory(object):
    """Makes FakeCaptures: the first ``fail_first`` open attempts fail (camera still missing)."""

    def __init__(self, frames, fail_after=None, fail_first=0, period=0.01):
        self.frames = frames
        self.fail_after = fail_after
        self.fail_first = fail_first
        self.period = period
        self.made = []
        self.lock = threading.Lock()

    def __call__(self, _device):
        with self.lock:
            attempt = len(self.made)
            fail_after = self.fail_after if attempt == 0 else None
            capture = FakeCapture(self.frames, fail_after=fail_after, period=self.period,
                                  opened=not (0 < attempt <= self.fail_first))
            self.made.append(capture)
            return capture
