"""Live cameras: CSI (GStreamer / nvarguscamerasrc, JetPack's OpenCV) and USB (V4L2, MJPG).

Both open the device in a worker thread with a timeout (a GStreamer pipeline whose element is
missing can block forever inside OpenCV) and keep a grabber thread that holds only the newest
frame, so the screen never lags reality. A camera that stops delivering raises SourceDisconnected.
"""

import os
import re
import threading
import time

from edge.errors import SourceError
from edge.lazy import require
from edge.sources.base import Source, SourceDisconnected, now

JETPACK_OPENCV_FIX = ("install JetPack's OpenCV (sudo apt install nvidia-opencv) and "
                      "remove pip's opencv-python from this Python, whose OpenCV has no GStreamer; or use a "
                      "USB "
                      "camera with --source v4l2:///dev/video0")


def gstreamer_pipeline(sensor_id=0, width=1280, height=720, fps=30, flip_method=0):
    """The nvarguscamerasrc -> BGR appsink pipeline for a Jetson CSI camera."""
    return ("nvarguscamerasrc sensor-id={sensor} ! "
            "video/x-raw(memory:NVMM),width={w},height={h},framerate={fps}/1 ! "
            "nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
            "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1").format(
                sensor=int(sensor_id), w=int(width), h=int(height), fps=int(fps), flip=int(flip_method))


def opencv_has_gstreamer(build_information):
    """True when ``cv2.getBuildInformation()`` says GStreamer: YES."""
    match = re.search(r"GStreamer:\s*(\w+)", build_information)
    return bool(match) and match.group(1).upper() == "YES"


def call_with_timeout(func, timeout_s, what):
    """Run ``func()`` in a daemon thread; return its result or raise SourceError after ``timeout_s``.

    A call that never returns is abandoned (the thread stays blocked inside the driver); that
    is the only way to keep a missing GStreamer element from freezing the kiosk.
    """
    box = {}

    def target():
        try:
            box["result"] = func()
        except Exception as exc:  # handed to the caller below, re-raised there
            box["error"] = exc

    worker = threading.Thread(target=target, name="open " + what, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise SourceError("{} did not open within {:g} s (a GStreamer element missing, or nvargus-daemon "
                          "hung). Fix: check the camera cable, run `sudo systemctl restart nvargus-daemon`, "
                          "and test the pipeline with gst-launch-1.0".format(what, timeout_s))
    if "error" in box:
        raise box["error"]
    return box["result"]


class CaptureCamera(Source):
    """A cv2.VideoCapture-like device read by a grabber thread that keeps only the newest frame."""

    live = True

    def __init__(self, open_timeout_s=10.0, frame_timeout_s=3.0, max_read_failures=5):
        super().__init__()
        self.open_timeout_s = float(open_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.max_read_failures = int(max_read_failures)
        self._capture = None
        self._thread = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._frame = None
        self._stamp = None
        self._seq = 0
        self._returned = 0
        self._failure = None
        self.dropped = 0
        self._fps = None

    def _open_capture(self):
        """Return an opened capture object (runs in the open worker thread)."""
        raise NotImplementedError

    @property
    def fps(self):
        return self._fps

    def open(self):
        capture = call_with_timeout(self._open_capture, self.open_timeout_s, "camera " + self.describe())
        self._capture = capture
        self._stop.clear()
        self._failure = None
        self.disconnected = False
        self._thread = threading.Thread(target=self._grab, name="grab " + self.describe(), daemon=True)
        self._thread.start()
        return self

    def _device_gone(self):
        return False

    def _grab(self):
        failures = 0
        while not self._stop.is_set():
            try:
                ok, frame = self._capture.read()
            except Exception as exc:  # a driver error is a disconnection, reported through read()
                ok, frame = False, None
                failures = self.max_read_failures
                reason = "camera read failed: {}".format(exc)
            else:
                reason = "camera returned no frame {} times".format(self.max_read_failures)
            if ok and frame is not None:
                failures = 0
                with self._cond:
                    if self._seq > self._returned:
                        self.dropped += 1
                    self._frame = frame
                    self._stamp = now()
                    self._seq += 1
                    self._cond.notify_all()
                continue
            failures += 1
            if failures >= self.max_read_failures or self._device_gone():
                with self._cond:
                    self._failure = "{} ({})".format(self.describe(), reason if not self._device_gone()
                                                     else "device unplugged")
                    self.disconnected = True
                    self._cond.notify_all()
                return
            time.sleep(0.01)

    def read(self):
        """Wait for a frame newer than the last one returned; raise SourceDisconnected if none comes."""
        deadline = now() + self.frame_timeout_s
        with self._cond:
            while self._seq <= self._returned and self._failure is None:
                remaining = deadline - now()
                if remaining <= 0:
                    self.disconnected = True
                    self._failure = "{} (no frame for {:g} s)".format(self.describe(), self.frame_timeout_s)
                    break
                self._cond.wait(remaining)
            if self._failure is not None:
                raise SourceDisconnected("camera disconnected: " + self._failure)
            self._returned = self._seq
            self.frames_read += 1
            return True, self._frame, self._stamp

    def close(self):
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        if self._capture is not None and (thread is None or not thread.is_alive()):
            self._capture.release()
        self._capture = None
        self._thread = None


class CsiCamera(CaptureCamera):
    """A Jetson CSI camera through nvarguscamerasrc (needs OpenCV built with GStreamer)."""

    def __init__(self, sensor_id=0, width=1280, height=720, fps=30, flip_method=0, capture_factory=None,
                 build_information=None, **kwargs):
        super().__init__(**kwargs)
        self.sensor_id = int(sensor_id)
        self.pipeline = gstreamer_pipeline(sensor_id, width, height, fps, flip_method)
        self.uri = "csi://{}".format(self.sensor_id)
        self._fps = float(fps)
        self._capture_factory = capture_factory
        self._build_information = build_information

    def open(self):
        if self._capture_factory is None:
            info = self._build_information
            if info is None:
                info = require("cv2").getBuildInformation()
            if not opencv_has_gstreamer(info):
                raise SourceError("csi://{}: this OpenCV has no GStreamer support, so the CSI camera cannot "
                                  "be "
                                  "opened. Fix: {}".format(self.sensor_id, JETPACK_OPENCV_FIX))
        return super().open()

    def _open_capture(self):
        if self._capture_factory is not None:
            capture = self._capture_factory(self.pipeline)
        else:
            cv2 = require("cv2")
            capture = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)
        if not capture.isOpened():
            capture.release()
            raise SourceDisconnected("csi://{}: the camera pipeline did not start. Fix: check the ribbon "
                                     "cable "
                                     "and run `sudo systemctl restart nvargus-daemon`".format(self.sensor_id))
        return capture


class V4l2Camera(CaptureCamera):
    """A USB (UVC) camera via V4L2, asked for MJPG at the chosen size so USB 2 keeps up."""

    def __init__(self, device="/dev/video0", width=1280, height=720, fps=30, capture_factory=None, **kwargs):
        super().__init__(**kwargs)
        self.device = str(device)
        self.uri = "v4l2://" + self.device
        self.width = int(width)
        self.height = int(height)
        self._fps = float(fps)
        self._capture_factory = capture_factory

    def _device_gone(self):
        return self._capture_factory is None and self.device.startswith("/dev/") and not os.path.exists(
            self.device)

    def _open_capture(self):
        if self._device_gone():
            raise SourceDisconnected("{}: no such camera device. Fix: plug in the USB camera (`ls "
                                     "/dev/video*` "
                                     "lists the cameras)".format(self.device))
        if self._capture_factory is not None:
            capture = self._capture_factory(self.device)
        else:
            cv2 = require("cv2")
            capture = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise SourceDisconnected("{}: the camera did not open (busy, or not a capture device). Fix: "
                                     "close "
                                     "other programs using it and check `v4l2-ctl --list-devices`".format(
                                         self.device))
        cv2 = require("cv2")
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, self._fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture
