"""edge.outputs: sinks by URI, scripted keys, and the display's clear refusals."""

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, MedkioskError
from edge.outputs import (
    SINKS,
    DisplaySink,
    ImageDirSink,
    KeyScript,
    NullSink,
    VideoSink,
    key_name,
    open_output,
)
from tests.edge.kiosk_media import read_video


def _canvas(value):
    return np.full((120, 160, 3), value, np.uint8)


def test_scheme_table():
    assert set(SINKS) == {"display", "file", "null"}
    assert isinstance(open_output("null://"), NullSink)
    assert isinstance(open_output("file:///tmp/x/frames/"), ImageDirSink)
    assert isinstance(open_output("file://out.mp4"), VideoSink)
    assert isinstance(open_output("display://0"), DisplaySink)
    with pytest.raises(ConfigError, match="unknown output 'rtsp'"):
        open_output("rtsp://x")


def test_image_dir_sink_writes_numbered_pngs(tmp_path):
    with open_output("file://{}/frames/".format(tmp_path)) as sink:
        sink.write(_canvas(10))
        sink.write(_canvas(200))
    written = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert written == ["frame_000001.png", "frame_000002.png"]
    assert cv2.imread(str(tmp_path / "frames" / "frame_000002.png"))[0, 0, 0] == 200


def test_video_sink_writes_a_readable_video(tmp_path):
    path = str(tmp_path / "out.avi")
    with open_output("file://" + path, fps=5) as sink:
        for value in (0, 128, 255):
            sink.write(_canvas(value))
    assert len(read_video(path)) == 3


def test_null_sink_counts():
    sink = NullSink()
    with sink:
        sink.write(_canvas(0))
    assert sink.frames == 1 and sink.poll_key() is None


def test_key_script_and_key_codes():
    script = KeyScript("WAIT2, space ,S,-,M,q")
    assert [script.next_key() for _ in range(7)] == [None, None, "SPACE", "S", None, "M", "Q"]
    assert script.exhausted and script.next_key() is None
    with pytest.raises(ConfigError, match="unknown key 'X'"):
        KeyScript("SPACE,X")
    assert key_name(32) == "SPACE" and key_name(13) == "ENTER" and key_name(ord("m")) == "M"
    assert key_name(ord("+")) == "M" and key_name(ord(".")) == "S"  # numeric keypad
    assert key_name(-1) is None and key_name(ord("z")) is None


def test_display_refuses_clearly_without_a_screen():
    with pytest.raises(ConfigError, match="DISPLAY is not set"):
        DisplaySink(environ={}).open()


def test_display_refuses_clearly_with_headless_opencv():
    try:
        cv2.namedWindow("medkiosk-probe", cv2.WINDOW_NORMAL)
    except cv2.error:
        pass
    else:
        cv2.destroyWindow("medkiosk-probe")
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(MedkioskError, match="cannot open windows"):
        DisplaySink(environ={"DISPLAY": ":99"}).open()
