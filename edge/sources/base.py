"""The Source interface every frame source implements."""

import time

from edge.errors import SourceError


class SourceDisconnected(SourceError):
    """A live source lost its device (camera unplugged, nvargus died); ReconnectingSource retries."""


class Source(object):
    """A frame source: a context manager whose ``read()`` returns ``(ok, frame_bgr, timestamp)``.

    ``ok`` is False with ``finished`` set at the end of a file; a live source that loses its device
    raises SourceDisconnected. ``live`` sources are grabbed in a thread and only the newest frame is
    kept; the others (files, image folders) are read on demand so no frame is skipped.
    """

    live = False
    steps_images = False  # next_image() works (image folders)
    uri = ""

    def __init__(self):
        self.finished = False
        self.disconnected = False
        self.frames_read = 0

    def open(self):
        return self

    def read(self):
        raise NotImplementedError

    def close(self):
        pass

    def describe(self):
        return self.uri

    def next_image(self):
        """Step to the next image (image folders); other sources have none."""
        raise SourceError("{} has no images to step through. Fix: start with --source "
                          "/media/usb (a folder of images)".format(self.describe()))

    @property
    def fps(self):
        return None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return "<{} {}>".format(type(self).__name__, self.describe())


def now():
    """Timestamp attached to frames (monotonic seconds, comparable across threads)."""
    return time.monotonic()
