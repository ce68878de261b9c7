"""Frame sources named by URI, in jetson-inference's style.

    csi://0                      Jetson CSI camera (GStreamer, JetPack's OpenCV)
    v4l2:///dev/video0           USB camera, MJPG
    file://clip.mp4  clip.mp4    a video file
    file:///media/usb/  DIR      a folder of images (USB stick), watched for new files; key F steps
    file://x.png  x.png          one image

Query parameters set options: ``csi://0?width=1920&height=1080&fps=30&flip_method=2``.
``open_source(uri, **options)`` returns an unopened Source; use it as a context manager.
Live cameras are wrapped in ReconnectingSource unless ``reconnect=False``.
"""

import os

from edge.errors import SourceError
from edge.preprocess import is_image_file
from edge.sources.base import Source, SourceDisconnected
from edge.sources.camera import CsiCamera, V4l2Camera, gstreamer_pipeline
from edge.sources.files import VIDEO_EXTENSIONS, ImageFolderSource, VideoFileSource
from edge.sources.reconnect import ReconnectingSource

__all__ = ["Source", "SourceDisconnected", "ReconnectingSource", "open_source", "parse_uri", "SCHEMES",
           "gstreamer_pipeline"]

CAMERA_OPTIONS = ("width", "height", "fps", "open_timeout_s", "frame_timeout_s", "capture_factory",
                  "build_information", "max_read_failures")


def parse_uri(uri):
    """'scheme://rest?k=v&k2=v2' -> (scheme, rest, {k: v}); a bare path has scheme ''."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty source. Fix: pass --source csi://0, v4l2:///dev/video0, a video or a folder")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", uri, {}
    rest, _q, query = rest.partition("?")
    params = {}
    for part in query.split("&") if query else ():
        key, _eq, value = part.partition("=")
        if key:
            params[key] = value
    return scheme.lower(), rest, params


def _pick(options, names):
    return {name: options[name] for name in names if name in options and options[name] is not None}


def _live(make, options):
    if options.get("reconnect", True):
        return ReconnectingSource(make, **_pick(options, ("backoff", "idle_s")))
    return make()


def _open_csi(rest, options):
    sensor = rest.strip("/") or "0"
    if not sensor.isdigit():
        raise SourceError("csi://{}: the sensor id must be a number (csi://0). Fix: --source "
                          "csi://0".format(rest))
    kwargs = _pick(options, CAMERA_OPTIONS + ("flip_method",))
    return _live(lambda: CsiCamera(sensor_id=int(sensor), **kwargs), options)


def _open_v4l2(rest, options):
    device = rest or "/dev/video0"
    if device.isdigit():
        device = "/dev/video" + device
    kwargs = _pick(options, CAMERA_OPTIONS)
    return _live(lambda: V4l2Camera(device=device, **kwargs), options)


def _open_path(path, options):
    if not path:
        raise SourceError("file:// needs a path. Fix: file:///media/usb/ or file://clip.mp4")
    extension = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or path.endswith("/") or is_image_file(path):
        return ImageFolderSource(path, **_pick(options, ("poll_s",)))
    if extension in VIDEO_EXTENSIONS or os.path.isfile(path):
        return VideoFileSource(path, **_pick(options, ("loop",)))
    raise SourceError("{}: no such file or folder. Fix: pass an existing video, image or folder".format(path))


# scheme -> opener(rest, options) returning an unopened Source
SCHEMES = {
    "csi": _open_csi,
    "v4l2": _open_v4l2,
    "file": _open_path,
    "": _open_path,
}

_NUMERIC = {"width": int, "height": int, "fps": int, "flip_method": int, "open_timeout_s": float,
            "frame_timeout_s": float, "poll_s": float, "max_read_failures": int}


def open_source(uri, **options):
    """Make the Source named by ``uri`` (not yet opened). Options: width, height, fps, flip_method,
    open_timeout_s, loop, poll_s, reconnect, and for tests capture_factory/build_information."""
    scheme, rest, params = parse_uri(uri)
    if scheme not in SCHEMES:
        raise SourceError("{}: unknown source scheme {!r}. Fix: use one of {}".format(
            uri, scheme, ", ".join(s + "://" for s in sorted(SCHEMES) if s)))
    merged = dict(options)
    for key, value in params.items():
        convert = _NUMERIC.get(key)
        if convert is None and key not in ("loop", "reconnect"):
            raise SourceError("{}: unknown option {!r}. Fix: use "
                              "{}".format(uri, key, ", ".join(sorted(_NUMERIC))))
        try:
            merged[key] = convert(value) if convert else value.lower() in ("1", "yes", "true", "on")
        except ValueError:
            raise SourceError("{}: option {}={!r} is not a number. Fix: e.g. "
                              "{}=30".format(uri, key, value, key)) from None
    return SCHEMES[scheme](rest, merged)
