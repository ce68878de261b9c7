"""What the display thread shows: the frame and its result, the frozen image, messages, the frame clock
and the display's pace (``DisplayPacer``)."""

import time

MESSAGE_SECONDS = 3.0


class Screen(object):
    """The frame on screen (with its file name and localisation) and the result drawn over it."""

    def __init__(self):
        self.frame = None
        self.stamp = None
        self.name = None  # a still image's file name (headless result lines)
        self.located = None  # the "locate" step's result for this frame (None: the whole frame)
        self.outline_state = None  # edge.locate.OutlineTracker's state for the live outline
        self.result = None
        self.result_stamp = None
        self.result_seq = None

    def show(self, frame, stamp, name=None, located=None):
        self.frame, self.stamp, self.name, self.located = frame, stamp, name, located

    def set_result(self, prediction, job):
        self.result, self.result_stamp, self.result_seq = prediction, job.stamp, job.seq


class Freeze(object):
    """SPACE / F: one image held on screen and classified once (per module)."""

    def __init__(self):
        self.active = False
        self.frame = None
        self.stamp = None
        self.name = None  # the held image's file name (a USB image, a folder's image), shown on screen

    def hold(self, image, name=None):
        self.active, self.frame, self.stamp, self.name = True, image, time.monotonic(), name

    def release(self):
        self.active, self.frame, self.name = False, None, None

    def restamp(self):
        """Classify the frozen image again (another module)."""
        self.stamp = time.monotonic()


class Messages(object):
    """One short message at a time, shown for MESSAGE_SECONDS."""

    def __init__(self):
        self._message = None
        self.last = None  # the last message said, even once it is no longer shown

    def say(self, text):
        self.last = text
        self._message = (text, time.monotonic() + MESSAGE_SECONDS)

    def current(self):
        if self._message is None:
            return None
        text, until = self._message
        if time.monotonic() < until:
            return text
        self._message = None
        return None


class FrameClock(object):
    """Displayed frames per second (smoothed), pacing, how long drawing a frame takes and how often
    the camera really delivers one."""

    def __init__(self):
        self.fps = None
        self.last_tick = None
        self.draw_s = 0.0  # smoothed time to draw and write one screen
        self.camera_interval = None  # smoothed seconds between the stamps of consecutive camera frames
        self._last_stamp = None

    def camera_frame(self, stamp):
        """Note a live frame's capture stamp (a camera's real rate may differ from what it reports)."""
        if self._last_stamp is not None and stamp > self._last_stamp:
            interval = stamp - self._last_stamp
            self.camera_interval = interval if self.camera_interval is None else (
                0.8 * self.camera_interval + 0.2 * interval)
        self._last_stamp = stamp

    def next_frame_due(self, stamp, source_fps):
        """When the frame after the one stamped ``stamp`` is expected."""
        interval = self.camera_interval or 1.0 / (source_fps or 15.0)
        return stamp + interval

    def tick(self, draw_s=None):
        now = time.monotonic()
        if self.last_tick is not None:
            interval = now - self.last_tick
            if interval > 0:
                fps = 1.0 / interval
                self.fps = fps if self.fps is None else 0.9 * self.fps + 0.1 * fps
        self.last_tick = now
        if draw_s is not None:
            self.draw_s = draw_s if not self.draw_s else 0.8 * self.draw_s + 0.2 * draw_s

    def pace(self, source_fps):
        """Sleep so that the loop does not redraw faster than the source's frame rate."""
        if self.last_tick is None:
            return
        remaining = self.last_tick + 1.0 / (source_fps or 15.0) - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


class DisplayPacer(object):
    """Live: a camera frame is drawn only when the display's next slot has come (at most ``fps``
    screens a second: a screen shows no more), a new result at once, whatever the slot.

    Slots are ``1 / fps`` apart on a steady grid; a frame up to a quarter of a slot early is drawn in
    it (a camera at twice the display's rate then fills every slot, not every other one). ``fps`` 0 or None:
    every frame is drawn. ``clock`` is ``time.monotonic`` (tests give a fake one).
    """

    EARLY = 0.25  # of a slot: a frame this early is drawn in the coming slot

    def __init__(self, fps=60.0, clock=time.monotonic):
        self.interval = 1.0 / fps if fps else 0.0
        self.clock = clock
        self.next_slot = None
        self.drawn_seq = None  # the result on the last screen drawn (its job's sequence number)
        self.skipped = 0  # camera frames not drawn (the display's slot had not come)

    def due(self, result_seq):
        """True when a screen should be drawn now: a new result, or the display's slot has come."""
        if result_seq != self.drawn_seq or self.next_slot is None:
            return True
        if self.clock() >= self.next_slot - self.EARLY * self.interval:
            return True
        self.skipped += 1
        return False

    def drawn(self, result_seq):
        """A screen was drawn now with the result ``result_seq``: when the next slot is.

        Drawn in its slot: the next one is a slot on, on the grid (or a slot from now when the loop
        fell more than a slot behind). Drawn early, for a result: the next frame-only screen is a
        whole slot later (results landing meanwhile are still drawn at once).
        """
        now = self.clock()
        self.drawn_seq = result_seq
        if self.next_slot is not None and now >= self.next_slot - self.EARLY * self.interval:
            self.next_slot += self.interval
            if self.next_slot <= now:
                self.next_slot = now + self.interval
        else:
            self.next_slot = now + self.interval
