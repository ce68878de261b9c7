"""Sources read on demand: a video file, and a folder of images (e.g. a USB stick) watched for new files."""

import os

from edge.console import printable, warn
from edge.errors import ImageError, SourceError
from edge.i18n import _
from edge.lazy import require
from edge.preprocess import is_image_file, read_image
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
                              "--source".format(printable(self.path)))
        cv2 = require("cv2")
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise SourceError("video {}: OpenCV cannot open it (unsupported codec or not a video). Fix: "
                              "convert it to MJPG .avi or H.264 .mp4".format(printable(self.path)))
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
                              "manager".format(printable(self.path)))
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
    yet (still being copied) is retried at the next scan instead of being shown broken; once its
    size and time stop changing and it still cannot be read, it is unreadable.

    Every unreadable file is reported once on stderr (the journal) with its escaped name and the
    reason; ``unreadable`` is how many files are unreadable now (for the kiosk's summary line) and
    ``unreadable_files`` maps each one's path to its reason. File names in ``describe()`` and
    ``notice`` are escaped (``edge.console.printable``): a newline in a name cannot forge a log line.
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
        self.unreadable_files = {}
        self.image_note = None  # e.g. "multi-frame DICOM (3 frames): showing ... the first frame only"
        self._pending = {}
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
        uri = printable(self.uri)
        return "{} ({})".format(uri, printable(os.path.basename(current))) if current else uri

    @property
    def unreadable(self):
        """How many files in the folder could not be read (as last tried)."""
        return len(self.unreadable_files)

    def open(self):
        if not os.path.exists(self.path):
            raise SourceError("image folder {}: does not exist. Fix: insert the USB stick (is it mounted?) "
                              "or pass an existing folder with --source".format(printable(self.path)))
        self._scan()
        self._known = set(self._files)
        if self._files:
            self._show_from(0)
        else:
            self.notice = _("No images in {} yet - copy .png/.jpg/.dcm files there").format(
                printable(self.path))
        return self

    def _list(self):
        if self.single_file:
            return [self.path] if is_image_file(self.path) else []
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise SourceError("image folder {}: cannot be listed ({}). Fix: re-insert the USB stick".format(
                printable(self.path), exc.strerror)) from exc
        # Not only regular files: a pipe or a device named *.png is refused by the reader and counted.
        return sorted(os.path.join(self.path, name) for name in names
                      if not name.startswith(".") and is_image_file(name)
                      and not os.path.isdir(os.path.join(self.path, name)))

    def _scan(self):
        self._last_scan = self.clock()
        current = self.current_path
        self._files = self._list()
        self._index = self._files.index(current) if current in self._files else -1
        return [path for path in self._files if path not in self._known]

    def _load(self, index):
        """(image, problem) for the file at ``index``; a file read again is no longer unreadable."""
        path = self._files[index]
        try:
            loaded = read_image(path)
        except ImageError as exc:
            return None, str(exc)
        self.unreadable_files.pop(path, None)
        self._pending.pop(path, None)
        self.image_note = "; ".join(loaded.notes) or None
        if loaded.notes:
            warn("note: {}: {}".format(printable(path), self.image_note))
        return loaded.image, None

    def _mark_unreadable(self, path, problem):
        if self.unreadable_files.get(path) != problem:
            warn("skipped unreadable image: " + problem)
        self.unreadable_files[path] = problem

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
                self.notice = skipped or self.image_note
                return self._files[index]
            self.skipped += 1
            self._mark_unreadable(self._files[index], problem)
            skipped = "Skipped unreadable image: {}".format(problem)
        self.notice = skipped
        return None

    def _check_new(self):
        if self._last_scan is not None and self.clock() - self._last_scan < self.poll_s:
            return
        for path in self._scan():
            index = self._files.index(path)
            image, problem = self._load(index)
            if image is None:
                self._unreadable_or_copying(path, problem)
                continue
            self._known.add(path)
            self._index = index
            self._image = image
            self._stamp = self.clock()
            self.notice = _("New image: {}{}").format(printable(os.path.basename(path)),
                                                   " ({})".format(self.image_note) if self.image_note else "")

    def _unreadable_or_copying(self, path, problem):
        """A new file that cannot be read: retried at the next scan while its size or time changes
        (still being copied); unreadable (reported, no longer retried) once they stay the same."""
        try:
            info = os.stat(path)
            signature = (info.st_size, info.st_mtime)
        except OSError:
            signature = None
        if signature is not None and self._pending.get(path) != signature:
            self._pending[path] = signature
            return
        self._pending.pop(path, None)
        self._known.add(path)
        self._mark_unreadable(path, problem)
        self.notice = _("Skipped unreadable image: {}").format(problem)

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
            self.notice = _("No images in {}").format(printable(self.path))
            return None
        return self._show_from(self._index + 1)
