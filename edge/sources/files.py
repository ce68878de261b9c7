"""Sources read on demand: a video file, and a folder of images (e.g. a USB stick) watched for new files."""

import os

from edge.errors import ImageError, SourceError
from edge.lazy import require
from edge.preprocess import is_image_file, load_image
from edge.sources.base import Source, now

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")


class VideoFileSource(Source):
    """Frames of a video file in order; ``loop`` restarts it at the end (demos)."""

    def __init__(self, path, loop=False):
        super().__init__()
        self.path = str(path)
        self.uri = "file://" + self.path
        self.loop = bool(loop)
        self._capture = None
        self._fps = None

    def open(self):
        if not os.path.isfile(self.path):
            raise SourceError("video {}: no such file. Fix: check the path given to "
                              "--source".format(self.path))
        cv2 = require("cv2")
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise SourceError("video {}: OpenCV cannot open it (unsupported codec or not a video). Fix: "
                              "convert it to MJPG .avi or H.264 .mp4".format(self.path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        self._fps = fps if fps and fps > 0 else None
        self._capture = capture
        self.finished = False
        return self

    @property
    def fps(self):
        return self._fps

    def read(self):
        if self._capture is None:
            raise SourceError("video {}: read before open. Fix: use it as a context "
                              "manager".format(self.path))
        ok, frame = self._capture.read()
        if not ok and self.loop and self.frames_read:
            self._capture.set(require("cv2").CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok:
            self.finished = True
            return False, None, now()
        self.frames_read += 1
        return True, frame, now()

    def close(self):
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ImageFolderSource(Source):
    """Still images from a folder (or one image file).

    ``read()`` returns the current image with the time it was loaded, so a consumer sees a new
    timestamp only when the image changes. The folder is rescanned at most every ``poll_s``
    seconds; an image that appears after opening (copied onto the USB stick) is shown at once.
    ``next_image()`` (key F) steps through all images in name order. A file that cannot be read
    yet (still being copied) is retried at the next scan instead of being shown broken.
    """

    steps_images = True

    def __init__(self, path, poll_s=1.0, clock=now):
        super().__init__()
        self.path = str(path)
        self.uri = "file://" + self.path
        self.poll_s = float(poll_s)
        self.clock = clock
        self.notice = None
        self.skipped = 0
        self._files = []
        self._known = set()
        self._index = -1
        self._image = None
        self._stamp = None
        self._last_scan = None

    @property
    def single_file(self):
        return os.path.isfile(self.path)

    @property
    def current_path(self):
        if 0 <= self._index < len(self._files):
            return self._files[self._index]
        return None

    def describe(self):
        current = self.current_path
        return "{} ({})".format(self.uri, os.path.basename(current)) if current else self.uri

    def open(self):
        if not os.path.exists(self.path):
            raise SourceError("image folder {}: does not exist. Fix: insert the USB stick (is it mounted?) "
                              "or pass an existing folder with --source".format(self.path))
        self._scan()
        self._known = set(self._files)
        if self._files:
            self._show_from(0)
        else:
            self.notice = "No images in {} yet - copy .png/.jpg files there".format(self.path)
        return self

    def _list(self):
        if self.single_file:
            return [self.path] if is_image_file(self.path) else []
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise SourceError("image folder {}: cannot be listed ({}). Fix: re-insert the USB stick".format(
                self.path, exc.strerror)) from exc
        return sorted(os.path.join(self.path, name) for name in names
                      if not name.startswith(".") and is_image_file(name)
                      and os.path.isfile(os.path.join(self.path, name)))

    def _scan(self):
        self._last_scan = self.clock()
        current = self.current_path
        self._files = self._list()
        self._index = self._files.index(current) if current in self._files else -1
        return [path for path in self._files if path not in self._known]

    def _load(self, index):
        path = self._files[index]
        try:
            image = load_image(path)
        except ImageError as exc:
            return None, str(exc)
        return image, None

    def _show_from(self, start, step=1):
        """Show the first readable image at or after ``start`` (wrapping); return its path or None."""
        count = len(self._files)
        skipped = None
        for offset in range(count):
            index = (start + step * offset) % count
            image, problem = self._load(index)
            if image is not None:
                self._index = index
                self._image = image
                self._stamp = self.clock()
                self.notice = skipped
                return self._files[index]
            self.skipped += 1
            skipped = "Skipped unreadable image: {}".format(problem)
        self.notice = skipped
        return None

    def _check_new(self):
        if self._last_scan is not None and self.clock() - self._last_scan < self.poll_s:
            return
        for path in self._scan():
            index = self._files.index(path)
            image, _problem = self._load(index)
            if image is None:
                continue  # probably still being copied: not marked known, retried at the next scan
            self._known.add(path)
            self._index = index
            self._image = image
            self._stamp = self.clock()
            self.notice = "New image: {}".format(os.path.basename(path))

    def read(self):
        self._check_new()
        if self._image is None:
            return False, None, self.clock()
        self.frames_read += 1
        return True, self._image, self._stamp

    def next_image(self):
        """Show the next image (wrapping around); return its path, or None when there is none."""
        self._scan()
        self._known.update(self._files)
        if not self._files:
            self.notice = "No images in {}".format(self.path)
            return None
        return self._show_from(self._index + 1)
