"""edge.sources: URI table, video files, image folders (USB), cameras and reconnection.

CSI and V4L2 cameras cannot exist on CI: their capture object is replaced by
``kiosk_media.FakeCapture`` (real frames, scripted failures); the grabber threads, timeouts
and reconnection logic under test are the real ones.
"""

import os
import shutil
import threading
import time

import cv2
import pytest

from edge.errors import SourceError
from edge.sources import SCHEMES, ReconnectingSource, open_source, parse_uri
from edge.sources.base import SourceDisconnected
from edge.sources.camera import (
    CsiCamera,
    V4l2Camera,
    call_with_timeout,
    gstreamer_pipeline,
    opencv_has_gstreamer,
)
from edge.sources.files import ImageFolderSource, VideoFileSource
from tests.edge.kiosk_media import CaptureFactory, FakeCapture, textured, write_video


def test_uri_parsing_and_scheme_table():
    assert parse_uri("csi://0?width=1920&fps=30") == ("csi", "0", {"width": "1920", "fps": "30"})
    assert parse_uri("v4l2:///dev/video1") == ("v4l2", "/dev/video1", {})
    assert parse_uri("/media/usb/") == ("", "/media/usb/", {})
    assert set(SCHEMES) >= {"csi", "v4l2", "file", ""}
    with pytest.raises(SourceError, match="unknown source scheme 'rtsp'"):
        open_source("rtsp://cam")
    with pytest.raises(SourceError, match="sensor id must be a number"):
        open_source("csi://front")
    with pytest.raises(SourceError, match="unknown option 'zoom'"):
        open_source("csi://0?zoom=2")
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source("file:///nonexistent/clip.xyz")


def test_uri_options_reach_the_camera():
    source = open_source("csi://1?width=1920&height=1080&fps=60&flip_method=2", reconnect=False)
    assert isinstance(source, CsiCamera)
    assert "sensor-id=1" in source.pipeline and "width=1920,height=1080,framerate=60/1" in source.pipeline
    assert "flip-method=2" in source.pipeline
    usb = open_source("v4l2://2", reconnect=False, width=640, height=480)
    assert isinstance(usb, V4l2Camera) and usb.device == "/dev/video2" and usb.width == 640
    assert isinstance(open_source("csi://0"), ReconnectingSource)


def test_gstreamer_pipeline_matches_jetson_inference():
    assert gstreamer_pipeline(0, 1280, 720, 30, 0) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! "
        "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1")
    assert opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.16.3)\n")
    assert not opencv_has_gstreamer("    GStreamer:                   NO\n")
    assert not opencv_has_gstreamer("")


def test_csi_refuses_an_opencv_without_gstreamer():
    if opencv_has_gstreamer(cv2.getBuildInformation()):
        pytest.skip("this OpenCV has GStreamer (JetPack); the refusal path needs pip's OpenCV")
    with pytest.raises(SourceError) as info, open_source("csi://0", reconnect=False):
        pass
    assert "no GStreamer support" in str(info.value) and "JetPack's OpenCV" in str(info.value)


def test_a_hanging_camera_open_times_out():
    # Fake camera: the capture factory blocks like a GStreamer pipeline with a missing element.
    release = threading.Event()

    def hang(_pipeline):
        release.wait(10)
        return FakeCapture([textured()])

    camera = CsiCamera(capture_factory=hang, open_timeout_s=0.3)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"did not open within 0.3 s"):
        camera.open()
    assert time.monotonic() - start < 2.0
    release.set()
    with pytest.raises(ValueError, match="boom"):
        call_with_timeout(lambda: (_ for _ in ()).throw(ValueError("boom")), 1.0, "x")


def test_v4l2_keeps_only_the_newest_frame_and_sets_mjpg():
    frames = [textured(seed) for seed in range(5)]
    factory = CaptureFactory(frames, period=0.005)
    camera = V4l2Camera(device="fake0", width=320, height=240, capture_factory=factory)
    with camera:
        ok, first, stamp1 = camera.read()
        time.sleep(0.1)  # the camera keeps delivering while we are busy
        ok2, second, stamp2 = camera.read()
    assert ok and ok2 and stamp2 > stamp1
    assert camera.dropped > 0  # frames we were too slow for were dropped, not queued
    capture = factory.made[0]
    assert capture.settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert capture.settings[cv2.CAP_PROP_FRAME_WIDTH] == 320
    assert capture.settings[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert capture.released


def test_missing_usb_camera_is_a_disconnection():
    camera = V4l2Camera(device="/dev/video-medkiosk-missing")
    with pytest.raises(SourceDisconnected, match="plug in the USB camera"):
        camera.open()


def test_camera_that_disappears_reconnects_by_itself():
    # Fake camera: unplugged after 3 frames, missing for 2 more attempts, then back.
    factory = CaptureFactory([textured(1), textured(2)], fail_after=3, fail_first=2, period=0.005)
    source = open_source("v4l2:///dev/fake", capture_factory=factory, backoff=(0.02,), idle_s=0.01,
                         frame_timeout_s=1.0, max_read_failures=2)
    got, disconnected_seen = 0, 0
    with source:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (source.reconnects and got >= 6):
            ok, frame, _stamp = source.read()
            if ok:
                got += 1
                assert frame.shape == (240, 320, 3)
            else:
                disconnected_seen += 1
    assert source.disconnects == 1 and source.reconnects == 1
    assert disconnected_seen > 0 and got >= 6
    assert source.attempts >= 3  # two failed reopen attempts, then success
    assert len(factory.made) == 4


def test_a_camera_absent_at_start_is_waited_for():
    factory = CaptureFactory([textured()], fail_first=0)
    attempts = []

    def make():
        attempts.append(1)
        if len(attempts) < 3:
            raise SourceDisconnected("not plugged in yet")
        return V4l2Camera(device="fake", capture_factory=factory)

    source = ReconnectingSource(make, backoff=(0.02,), idle_s=0.01)
    with source:
        assert source.disconnected
        deadline = time.monotonic() + 5
        ok = False
        while not ok and time.monotonic() < deadline:
            ok, _frame, _stamp = source.read()
    assert ok and source.reconnects == 1


def test_video_file_plays_to_the_end(tmp_path):
    path = str(tmp_path / "clip.avi")
    count = write_video(path, [textured(0), textured(1)], frames_per_image=3)
    source = open_source("file://" + path)
    assert isinstance(source, VideoFileSource) and not source.live
    frames = 0
    with source:
        assert source.fps == pytest.approx(10.0)
        while True:
            ok, frame, _stamp = source.read()
            if not ok:
                break
            frames += 1
    assert frames == count and source.finished
    with pytest.raises(SourceError, match="no such file"):
        VideoFileSource(str(tmp_path / "missing.mp4")).open()


def test_image_folder_steps_watches_and_skips_broken_files(tmp_path):
    folder = tmp_path / "usb"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), textured(0))
    cv2.imwrite(str(folder / "b.png"), textured(1))
    (folder / ".hidden.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image")
    now = [0.0]
    source = open_source(str(folder) + "/", poll_s=1.0)
    source.clock = lambda: now[0]
    with source:
        ok, first, stamp = source.read()
        assert ok and source.current_path.endswith("a.png")
        assert source.read()[2] == stamp  # a still image keeps its timestamp
        now[0] += 0.1
        assert source.next_image().endswith("b.png")
        assert source.next_image().endswith("a.png")  # wraps around
        # A file still being copied (truncated) is not shown; once complete it is, by itself.
        data = cv2.imencode(".png", textured(2))[1].tobytes()
        (folder / "c.png").write_bytes(data[:len(data) // 2])
        now[0] += 2.0
        assert source.read()[0] and source.current_path.endswith("a.png")
        (folder / "c.png").write_bytes(data)
        now[0] += 2.0
        ok, image, new_stamp = source.read()
        assert source.current_path.endswith("c.png") and new_stamp != stamp
        assert "New image" in source.notice
        # A broken file in the rotation is skipped with a notice.
        (folder / "b.png").write_bytes(b"\x89PNG broken")
        assert source.next_image().endswith("a.png")
        assert source.next_image().endswith("c.png")
        assert source.skipped == 1 and "Skipped unreadable image" in source.notice


def test_empty_or_missing_folder(tmp_path):
    with open_source(str(tmp_path) + "/") as source:
        ok, frame, _stamp = source.read()
        assert not ok and frame is None and "No images" in source.notice
        assert source.next_image() is None
    with pytest.raises(SourceError, match="insert the USB stick"):
        ImageFolderSource(str(tmp_path / "usb")).open()


def test_single_image_file_and_next_image_on_video(tmp_path):
    image = str(tmp_path / "x.png")
    cv2.imwrite(image, textured())
    with open_source(image) as source:
        assert source.read()[0]
    shutil.copy(image, str(tmp_path / "clip.mp4"))
    with pytest.raises(SourceError, match="no images to step through"):
        VideoFileSource(os.path.join(str(tmp_path), "clip.mp4")).next_image()


def _unreadable_lines(err):
    return [line for line in err.splitlines() if line.startswith("medkiosk: skipped unreadable image: ")]


def test_unreadable_files_are_counted_reported_and_escaped(tmp_path, capsys):
    """A pipe, a /dev/zero link, garbage and a name carrying a forged log line: counted, one escaped
    line each on stderr (the journal), never a hang; the readable image is still shown."""
    folder = tmp_path / "usb"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), textured())
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    forged = "c.png\nmedkiosk: all images verified OK\x1b[2J"
    (folder / (forged + ".png")).write_bytes(b"garbage")
    os.mkfifo(str(folder / "d.png"))
    os.symlink("/dev/zero", str(folder / "e.dcm"))
    now = [0.0]
    source = ImageFolderSource(str(folder) + "/", poll_s=1.0, clock=lambda: now[0])
    with source:
        assert source.read()[0] and source.current_path.endswith("a.png")
        assert source.next_image().endswith("a.png")  # every other file skipped, wrapping around
        assert source.unreadable == 4 and source.skipped == 4
        assert source.next_image().endswith("a.png")
        assert source.unreadable == 4  # the same files again: counted once, reported once
        err = capsys.readouterr().err
        lines = _unreadable_lines(err)
        assert len(lines) == 4 and len(err.splitlines()) == 4, err
        assert not any(line.startswith("medkiosk: all images") for line in err.splitlines())
        assert "c.png\\nmedkiosk: all images verified OK\\x1b[2J.png: not a readable image" in err
        assert "d.png: is a named pipe (FIFO)" in err and "e.dcm: is a character device" in err
        # A new file that stays unreadable while its size and time do not change: counted at the
        # second scan (the first time it may still be being copied).
        (folder / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n still copying?")
        now[0] += 2.0
        source.read()
        assert source.unreadable == 4 and _unreadable_lines(capsys.readouterr().err) == []
        now[0] += 2.0
        source.read()
        assert source.unreadable == 5 and "f.png" in source.notice
        assert len(_unreadable_lines(capsys.readouterr().err)) == 1
        now[0] += 2.0
        source.read()
        assert _unreadable_lines(capsys.readouterr().err) == []
        # A file made readable again is no longer counted.
        cv2.imwrite(str(folder / "b.png"), textured(3))
        assert source.next_image().endswith("b.png") and source.unreadable == 4
        assert "\n" not in source.describe() and forged not in source.describe()
