"""The camera path in the live loop: a real X-ray rendered as camera frames (training/photograph.py)
behind the real V4L2 source (fake capture device: no camera on CI), the shipped chest bundle, and
edge.locate. A film that slides into place shows "hold still" (amber) and then "locked" (green);
the result drawn is the one ``medkiosk classify`` gives for that frame.
"""

import io
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.kiosk import Kiosk, ModuleSlot, default_classifier_opener
from edge.locate import locate
from edge.outputs import NullSink
from edge.sources import open_source
from tests.edge.kiosk.kiosk_helpers import AMBER, BAR, LAYOUT, QUALITY, SIZE, has_colour
from tests.edge.kiosk_media import CaptureFactory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIPPED_CHEST = os.path.join(ROOT, "models", "chest")
MOVING = 10  # frames of a film sliding into place, STEP px a frame (1% of the 720p diagonal is ~15 px)
STEP = 24


class StateSink(NullSink):
    """Records, per screen written: the outline state, whether the settled frame was on screen,
    the result's (classes, probabilities) and localisation, and the image area of the canvas."""

    def __init__(self, settled):
        super().__init__()
        self.kiosk = None
        self.settled = settled
        self.shown = []

    def write(self, canvas):
        super().write(canvas)
        screen = self.kiosk.screen
        result = self.kiosk.current_result()
        on_settled = screen.frame is not None and np.array_equal(screen.frame, self.settled)
        self.shown.append((screen.outline_state, on_settled,
                           None if result is None else (list(result.classes), list(result.probabilities)),
                           None if result is None else result.localisation, LAYOUT.image.crop(canvas).copy()))


def _shifted(frame, dx):
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def film_frame(real_xray):
    from training.photograph import photograph_file

    return photograph_file(real_xray, seed=2026, index=0, scene="film").frame


def _run(film_frame, settle=400, max_frames=45, frames=None, infer_s=0.0, period=0.05):
    if frames is None:
        frames = [_shifted(film_frame, STEP * (MOVING - i)) for i in range(MOVING)] + [film_frame] * settle
    factory = CaptureFactory(frames, period=period)
    source = open_source("v4l2:///dev/fake", capture_factory=factory, backoff=(0.1,), idle_s=0.02,
                         frame_timeout_s=2.0, max_read_failures=2)
    calls = []

    def counted_locate(frame):
        calls.append(1)
        return locate(frame)

    opener = default_classifier_opener("onnxruntime", "fp32", None, QUALITY)
    given = []  # per live classification: was the loop's localisation handed over?

    def open_recording(module_slot):
        classifier = opener(module_slot)
        classify, make_preparer = classifier.classify, classifier.preparer

        def recording(image, localisation=None):
            given.append(localisation is not None)
            return classify(image, localisation=localisation)

        def preparer(depth=2):  # live frames are prepared on the worker's prepare thread
            prepare = make_preparer(depth=depth)

            def recording_prepare(image, localisation=None):
                given.append(localisation is not None)
                return prepare(image, localisation=localisation)

            return recording_prepare

        classifier.classify, classifier.preparer = recording, preparer
        if infer_s:
            infer_prepared = classifier.infer_prepared

            def slow(prepared):  # a runner slower than the camera
                time.sleep(infer_s)
                return infer_prepared(prepared)

            classifier.infer_prepared = slow
        return classifier

    slot = ModuleSlot("chest", bundle=load_bundle(SHIPPED_CHEST))
    sink = StateSink(film_frame)
    kiosk = Kiosk(source, sink, [slot], size=SIZE, stderr=io.StringIO(), max_frames=max_frames,
                  open_classifier=open_recording, locate=counted_locate)
    sink.kiosk = kiosk
    with source, sink:
        assert kiosk.run() == 0
    return kiosk, sink.shown, calls, given


def _medkiosk_classify(tmp_path, frame):
    path = str(tmp_path / "frame.png")
    cv2.imwrite(path, frame)  # lossless: the very pixels the kiosk classified
    process = subprocess.Popen([sys.executable, "-m", "edge", "classify", path, "--bundle", SHIPPED_CHEST,
                                "--backend", "onnxruntime", "--precision", "fp32", "--json"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.decode("utf-8"))["images"][0]


@pytest.mark.onnxruntime
def test_a_film_that_moves_then_settles_locks_and_matches_medkiosk_classify(tmp_path, film_frame):
    kiosk, shown, calls, given = _run(film_frame)
    assert kiosk.failures == 0, kiosk.last_error
    states = [state for state, _settled, _p, _loc, _image in shown]
    assert "locked" in states, states
    first_locked = states.index("locked")
    assert "hold_still" in states[:first_locked], states  # moving, then still for a few frames
    moving = [i for i, (state, settled, _p, _l, _im) in enumerate(shown) if not settled and state]
    assert moving and all(states[i] != "locked" for i in moving)  # never locked while it moves
    assert states[-1] == "locked" and shown[-1][1]
    # Each classified frame located once, by the kiosk's locate step (on the prepare thread), and the
    # classifier handed that localisation: nothing located twice, nothing located that is not classified.
    assert given and all(given), given
    assert len(calls) == len(given)
    # On screen: amber outline + "Hold still" while moving; green when locked.
    assert has_colour(shown[states.index("hold_still")][4], AMBER)
    assert has_colour(shown[-1][4], BAR) and not has_colour(shown[-1][4], AMBER, minimum=60)
    # The drawn result of the settled frame: its localisation is the film's, and its probabilities
    # are those of `medkiosk classify` on the same frame.
    _state, _settled, (classes, probabilities), localisation, _image = shown[-1]
    assert localisation is not None and localisation.method == "lightbox"
    cli = _medkiosk_classify(tmp_path, film_frame)
    assert cli["localisation"]["method"] == "lightbox"
    expected = [cli["probabilities"][name] for name in classes]  # rounded to 6 digits
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@pytest.mark.onnxruntime
def test_no_x_ray_in_view_shows_the_guide_while_searching():
    """Skin (no film, no screen) in front of the camera: "searching", the white guide."""
    skin = os.path.join(ROOT, "samples", "chest", "not-an-xray--generated-skin-photo.png")
    scene = cv2.resize(cv2.imread(skin), (1280, 720))
    assert not has_colour(scene, (255, 255, 255), minimum=1)
    kiosk, shown, calls, _given = _run(scene, frames=[scene], max_frames=8)
    assert calls and {state for state, _s, _p, _l, _image in shown} == {"searching"}
    assert has_colour(shown[-1][4], (255, 255, 255), minimum=300)  # the guide and its instruction
    assert not has_colour(shown[-1][4], AMBER, minimum=60) and not has_colour(shown[-1][4], BAR, minimum=60)


@pytest.mark.onnxruntime
def test_files_are_localised_by_classify_not_by_the_loop(tmp_path):
    """A camera frame as a file: the loop does not locate it (no outline), classify does (the film)."""
    import shutil

    folder = tmp_path / "usb"
    folder.mkdir()
    shutil.copy(os.path.join(ROOT, "samples", "chest", "camera--film--pneumonia--00000398_002.jpg"),
                str(folder / "film.jpg"))
    calls = []
    slot = ModuleSlot("chest", bundle=load_bundle(SHIPPED_CHEST))
    kiosk = Kiosk(open_source(str(folder) + "/"), NullSink(), [slot], size=SIZE, stderr=io.StringIO(),
                  max_frames=3,
                  open_classifier=default_classifier_opener("onnxruntime", "fp32", None, QUALITY),
                  locate=lambda frame: calls.append(1) or locate(frame))
    with kiosk.source, kiosk.sink:
        assert kiosk.run() == 0
    result = kiosk.current_result()
    assert not calls and kiosk.screen.outline_state is None
    assert result is not None and result.localisation.method == "lightbox" and result.thumbnail is not None


def test_no_outline_for_modules_that_are_not_x_rays(tmp_path, slot, synth_images):
    """A synthetic (non-X-ray) module on the live camera: nothing is located, no outline is drawn."""
    from tests.edge.kiosk.kiosk_helpers import fake_camera

    source, _factory = fake_camera(synth_images, period=0.03)
    calls = []
    sink = NullSink()
    kiosk = Kiosk(source, sink, [slot], size=SIZE, stderr=io.StringIO(), max_frames=6,
                  open_classifier=default_classifier_opener("onnxruntime", "fp32", None, QUALITY),
                  locate=lambda frame: calls.append(1) or locate(frame))
    with source, sink:
        assert kiosk.run() == 0
    assert not calls and kiosk.screen.outline_state is None


@pytest.mark.onnxruntime
def test_a_camera_faster_than_inference_has_only_its_classified_frames_located(film_frame):
    """Frames every 10 ms, inference 60 ms: most camera frames are replaced before they are classified;
    only the classified ones are located (the display thread locates none), and the outline follows
    them to "locked"."""
    kiosk, shown, calls, given = _run(film_frame, frames=[film_frame], max_frames=90, infer_s=0.06,
                                      period=0.01)
    assert kiosk.failures == 0, kiosk.last_error
    assert kiosk.worker.dropped > 0  # camera frames replaced before they were classified
    assert len(calls) == len(given) and all(given)
    states = [state for state, _settled, _p, _loc, _image in shown]
    assert "locked" in states and states[-1] == "locked", states
