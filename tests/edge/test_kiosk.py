"""The kiosk loop end to end on a real exported bundle (ONNX Runtime, CPU), real images and videos.

Screens go to a headless sink (PNG folder) and are checked region by region (edge.overlay.Layout).
The live camera is a fake (``kiosk_media.FakeCapture`` behind the real V4L2 source, grabber
thread and ReconnectingSource) because no camera exists on CI.
"""

import glob
import io
import json
import os
import shutil
import time

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.caselog import CaseLog
from edge.errors import SourceError
from edge.kiosk import Kiosk, KioskFailure, ModuleSlot, default_classifier_opener, discover_modules
from edge.outputs import ImageDirSink, KeyScript, NullSink
from edge.overlay import Layout
from edge.smoothing import ProbabilitySmoother
from edge.sources import open_source
from edge.sources.base import Source
from tests.edge.kiosk_media import CaptureFactory, blurred, read_video, write_video
from tests.make_test_bundle import resign

SIZE = (800, 480)
LAYOUT = Layout(SIZE)
QUALITY = {"blur_threshold": 60, "dark_threshold": 40, "bright_threshold": 220}
YELLOW, AMBER, RED, BLUE, BAR = (0, 220, 255), (0, 160, 255), (40, 40, 220), (200, 120, 20), (80, 200, 80)


def _has_colour(image, bgr, minimum=300, tolerance=40):
    distance = np.abs(image.astype(int) - np.array(bgr)).sum(axis=2)
    return int((distance < tolerance).sum()) >= minimum


def _frames(folder):
    return [cv2.imread(path) for path in sorted(glob.glob(os.path.join(str(folder), "frame_*.png")))]


def _run(tmp_path, source, slots, keys=None, sink=None, start=0, **kwargs):
    sink = sink or ImageDirSink(str(tmp_path / "frames"))
    stdout = io.StringIO()
    kwargs.setdefault("caselog_factory", lambda: CaseLog(str(tmp_path / "state"), min_free_mb=0))
    kiosk = Kiosk(source, sink, slots, start=start, stdout=stdout, size=SIZE,
                  open_classifier=default_classifier_opener("onnxruntime", "fp32", None, QUALITY),
                  keys=KeyScript(keys) if keys else None, **kwargs)
    with source, sink:
        status = kiosk.run()
    assert status == 0
    return kiosk, stdout.getvalue().splitlines(), _frames(tmp_path / "frames")


@pytest.fixture
def slot(tiny_bundle):
    return ModuleSlot("synth-test", bundle=load_bundle(tiny_bundle))


@pytest.fixture
def two_class_folder(tmp_path, synth_images):
    """A USB-stick-like folder with one image of each of two classes."""
    names = sorted(synth_images)
    folder = tmp_path / "usb"
    folder.mkdir()
    shutil.copy(synth_images[names[0]][0], str(folder / "a.png"))
    shutil.copy(synth_images[names[1]][0], str(folder / "b.png"))
    return folder


def test_image_folder_with_scripted_keys(tmp_path, slot, two_class_folder):
    kiosk, lines, frames = _run(tmp_path, open_source(str(two_class_folder) + "/"), [slot],
                                keys="-,F,-,F", max_frames=5)
    assert len(frames) == 5 and frames[0].shape == (480, 800, 3)
    results = [line for line in lines if line.startswith("[")]
    assert len(results) == 3  # a.png, b.png, a.png again: one line per new result
    assert all("synth-test" in line and "%" in line for line in results)
    # The image changed with F, and so did what is drawn for it; the disclaimer stays.
    assert np.abs(LAYOUT.image.crop(frames[0]).astype(int) - LAYOUT.image.crop(frames[2])).sum() > 0
    assert np.abs(LAYOUT.top3.crop(frames[0]).astype(int) - LAYOUT.top3.crop(frames[2])).sum() > 0, \
        "the top-3 region shows the same thing for two classes' images"
    assert np.array_equal(LAYOUT.top3.crop(frames[0]), LAYOUT.top3.crop(frames[4]))  # same image, same result
    for frame in frames:
        assert _has_colour(LAYOUT.footer.crop(frame), YELLOW)
        assert _has_colour(LAYOUT.top3.crop(frame), BAR, minimum=50)
    assert kiosk.failures == 0


def _abstaining_copy(tiny_bundle, tmp_path, threshold):
    """The bundle with only manifest.model.abstain_threshold changed."""
    copy = str(tmp_path / "abstaining")
    shutil.copytree(tiny_bundle, copy)
    path = os.path.join(copy, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    manifest["model"]["abstain_threshold"] = threshold
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return load_bundle(resign(copy))


def test_uncertain_banner_for_an_ambiguous_result(tmp_path, tiny_bundle, synth_images):
    # An ambiguous input: two classes' images blended half and half.
    names = sorted(synth_images)
    first, second = (cv2.imread(synth_images[name][0]) for name in names[:2])
    folder = tmp_path / "usb"
    folder.mkdir()
    cv2.imwrite(str(folder / "blend.png"), cv2.addWeighted(first, 0.5, second, 0.5, 0))
    slot = ModuleSlot("synth-test", bundle=_abstaining_copy(tiny_bundle, tmp_path, 0.99))
    _kiosk, lines, frames = _run(tmp_path, open_source(str(folder) + "/"), [slot], max_frames=2)
    assert "UNCERTAIN" in lines[0]
    assert _has_colour(LAYOUT.banner.crop(frames[-1]), YELLOW, minimum=1000)


def test_quality_gate_replaces_the_prediction(tmp_path, slot, synth_images):
    folder = tmp_path / "usb"
    folder.mkdir()
    image = cv2.imread(sorted(synth_images.values())[0][0])
    cv2.imwrite(str(folder / "blurred.png"), blurred(image))
    _kiosk, lines, frames = _run(tmp_path, open_source(str(folder) + "/"), [slot], max_frames=2)
    assert "IMAGE QUALITY" in lines[0] and "blurry" in lines[0]
    assert _has_colour(LAYOUT.banner.crop(frames[-1]), AMBER, minimum=1000)
    assert not _has_colour(LAYOUT.top3.crop(frames[-1]), BAR, minimum=50)  # no bars: no prediction shown


def test_video_file_plays_to_the_end(tmp_path, slot, synth_images):
    images = [cv2.imread(paths[0]) for paths in synth_images.values()]
    path = str(tmp_path / "clip.avi")
    count = write_video(path, images, frames_per_image=2)
    kiosk, lines, _frames_ = _run(tmp_path, open_source("file://" + path), [slot], sink=NullSink())
    assert kiosk.frames == count
    assert len([line for line in lines if line.startswith("[")]) == count  # every frame classified


class RecordingSink(NullSink):
    """Records, for every screen written, the frame the kiosk drew and the result it drew with it."""

    def __init__(self):
        super().__init__()
        self.kiosk = None
        self.shown = []

    def write(self, canvas):
        super().write(canvas)
        result = self.kiosk._current_result()
        self.shown.append((self.kiosk._frame.copy(), None if result is None else list(result.probabilities)))


def _class_video(tmp_path, synth_images):
    images = [cv2.imread(paths[index]) for index in range(2) for paths in synth_images.values()]
    path = str(tmp_path / "clip.avi")
    write_video(path, images, frames_per_image=1)
    return path


def _hooked_opener(before):
    """The real opener, with ``before(how)`` called ahead of each classification the inference thread
    makes: "whole" (classify, the worker prepares) or "prepared" (infer_prepared). Failures and hangs
    are injected through it."""
    opener = default_classifier_opener("onnxruntime", "fp32", None, QUALITY)

    def open_hooked(module_slot):
        classifier = opener(module_slot)
        for name, how in (("classify", "whole"), ("infer_prepared", "prepared")):
            method = getattr(classifier, name)

            def hooked(item, method=method, how=how):
                before(how)
                return method(item)

            setattr(classifier, name, hooked)
        return classifier

    return open_hooked


def _recorded_video_run(tmp_path, slot, synth_images, open_classifier=None, **kwargs):
    """The kiosk over a clip changing class every frame, into a RecordingSink: (kiosk, sink, video path)."""
    path = _class_video(tmp_path, synth_images)
    sink = RecordingSink()
    kiosk = Kiosk(open_source("file://" + path), sink, [slot], size=SIZE, stderr=io.StringIO(),
                  open_classifier=open_classifier or default_classifier_opener("onnxruntime", "fp32", None,
                                                                               QUALITY), **kwargs)
    sink.kiosk = kiosk
    with kiosk.source, sink:
        assert kiosk.run() == 0
    return kiosk, sink, path


def _classified(slot, frames):
    """Each frame's probabilities from a classifier of its own, outside the kiosk."""
    from edge.classify import Classifier
    from edge.quality import QualityThresholds

    with Classifier.open(slot.bundle, backend="onnxruntime", precision="fp32",
                         quality_thresholds=QualityThresholds.from_mapping(QUALITY)) as classifier:
        return [classifier.classify(frame).probabilities for frame in frames]


def test_video_frames_are_drawn_with_their_own_results(tmp_path, slot, synth_images):
    """Pipelined file mode (frame N+1 inferred while N is drawn) never pairs a frame with another's result."""
    kiosk, sink, path = _recorded_video_run(tmp_path, slot, synth_images, keys=KeyScript("WAIT4,SPACE"),
                                            max_frames=9)
    decoded = read_video(path)
    shown = [frame for frame, _probabilities in sink.shown]
    # Frames 1-5 in order, then SPACE froze the frame on screen (the 5th), not the one read ahead.
    assert len(shown) == 9
    for index in range(5):
        assert np.array_equal(shown[index], decoded[index]), "frame {} out of order".format(index + 1)
    for frame in shown[5:]:
        assert np.array_equal(frame, decoded[4])
    expected = _classified(slot, shown)
    drawn = [(index, probabilities) for index, (_frame, probabilities) in enumerate(sink.shown)
             if probabilities is not None]
    assert [index for index, _ in drawn] == list(range(9))  # the frozen image waits for its own result too
    for index, probabilities in drawn:
        assert np.allclose(probabilities, expected[index], atol=1e-5), \
            "screen {}: another frame's result".format(index + 1)
    assert len({tuple(np.round(p, 3)) for _, p in drawn[:5]}) > 1  # the clip really changes class
    assert kiosk.failures == 0


def test_video_inference_overlaps_drawing(tmp_path, slot, synth_images):
    """Frame N+1 is prepared and handed to the inference thread before frame N is drawn."""
    import threading

    started = []
    lock = threading.Condition()

    def record(how):
        with lock:
            started.append((how, threading.current_thread().name))
            lock.notify_all()

    class OverlapSink(NullSink):
        def __init__(self):
            super().__init__()
            self.overlapped = []

        def write(self, canvas):
            super().write(canvas)
            # Drawing frame k: the inference of frame k+1 must already be under way (the last frame has
            # none after it). A sequential loop reads k+1 only after this write, so it would time out.
            wanted = self.frames + 1
            with lock:
                lock.wait_for(lambda: len(started) >= wanted, timeout=10.0)
                self.overlapped.append(len(started) >= wanted)

    path = _class_video(tmp_path, synth_images)
    count = len(read_video(path))
    sink = OverlapSink()
    kiosk = Kiosk(open_source("file://" + path), sink, [slot], size=SIZE,
                  open_classifier=_hooked_opener(record))
    with kiosk.source, sink:
        assert kiosk.run() == 0
    assert kiosk.frames == count and len(started) == count
    assert sink.overlapped[:-1] == [True] * (count - 1), sink.overlapped
    # Once the runner is loaded, frames arrive prepared by the display thread; before that (while the
    # first frame loads the model) the worker prepares them itself.
    assert [how for how, _thread in started[2:]] == ["prepared"] * (count - 2)
    assert {thread for _how, thread in started} == {"inference"}


class FlakySource(Source):
    """Wraps a real source; raises SourceError on the reads listed in ``fail_on`` (1-based)."""

    def __init__(self, inner, fail_on):
        super().__init__()
        self.inner = inner
        self.fail_on = set(fail_on)
        self.reads = 0

    def open(self):
        self.inner.open()
        return self

    def close(self):
        self.inner.close()

    @property
    def finished(self):
        return self.inner.finished

    @finished.setter
    def finished(self, value):
        pass

    def read(self):
        self.reads += 1
        if self.reads in self.fail_on:
            raise SourceError("read {} failed (injected)".format(self.reads))
        return self.inner.read()


def test_a_source_failing_mid_run_is_counted_and_recovers(tmp_path, slot, synth_images):
    images = [cv2.imread(paths[0]) for paths in synth_images.values()]
    path = str(tmp_path / "clip.avi")
    write_video(path, images, frames_per_image=2)
    source = FlakySource(open_source(path), fail_on=(3, 4))
    stderr = io.StringIO()
    kiosk, lines, frames = _run(tmp_path, source, [slot], max_frames=6, stderr=stderr)
    assert kiosk.failures == 2 and kiosk.consecutive_failures == 0
    assert "read 3 failed" in stderr.getvalue() and "read 4 failed" in stderr.getvalue()
    assert len(frames) == 6


class BrokenFrames(Source):
    """A source whose frames are empty arrays, so every classification fails."""

    def read(self):
        self.frames_read += 1
        return True, np.zeros((0, 0, 3), np.uint8), float(self.frames_read)


def test_too_many_consecutive_failures_end_the_run(tmp_path, slot):
    stderr = io.StringIO()
    kiosk = Kiosk(BrokenFrames(), NullSink(), [slot], stderr=stderr, max_consecutive_failures=3, size=SIZE,
                  open_classifier=default_classifier_opener("onnxruntime", "fp32", None, QUALITY))
    with pytest.raises(KioskFailure, match="3 consecutive frame failures") as info:
        kiosk.run()
    assert info.value.exit_code != 0
    assert kiosk.failures == 3 and stderr.getvalue().count("frame error") == 3


def _fake_camera(synth_images, fail_after=None, fail_first=0, period=0.03):
    # Fake camera (no V4L2 device on CI) behind the real V4L2 source, grabber and reconnection.
    frames = [cv2.imread(paths[0]) for paths in synth_images.values()]
    factory = CaptureFactory(frames, fail_after=fail_after, fail_first=fail_first, period=period)
    return open_source("v4l2:///dev/fake", capture_factory=factory, backoff=(0.1,), idle_s=0.02,
                       frame_timeout_s=1.0, max_read_failures=2), factory


def test_live_camera_disconnects_and_comes_back(tmp_path, slot, synth_images):
    source, factory = _fake_camera(synth_images, fail_after=15, fail_first=2)
    kiosk, lines, frames = _run(tmp_path, source, [slot], max_frames=60, smoothing=0.6)
    red = [i for i, frame in enumerate(frames) if _has_colour(LAYOUT.banner.crop(frame), RED, minimum=1000)]
    assert red, "no 'camera disconnected' screen"
    after = [i for i, frame in enumerate(frames)
             if i > red[-1] and _has_colour(LAYOUT.top3.crop(frame), BAR, minimum=50)]
    assert after, "no results after the camera came back"
    assert source.disconnects == 1 and source.reconnects == 1 and len(factory.made) == 4
    assert kiosk.failures == 0
    # Decoupled: the result shown is at most one inference plus one frame older than the frame shown.
    latencies = [float(line.rsplit(", ", 1)[1].split()[0]) / 1000.0 for line in lines if " ms)" in line]
    assert kiosk.result_ages and latencies
    assert max(kiosk.result_ages) <= max(latencies) + 0.03 + 0.25  # + frame period + scheduling slack


def test_freeze_save_and_back_to_live(tmp_path, slot, synth_images):
    source, _factory = _fake_camera(synth_images, period=0.02)
    kiosk, lines, frames = _run(tmp_path, source, [slot], keys="WAIT8,SPACE,WAIT2,S,WAIT2,SPACE",
                                max_frames=18)
    assert kiosk.cases_saved == 1 and any("case saved" in line for line in lines)
    frozen = [i for i, frame in enumerate(frames) if _has_colour(LAYOUT.badge.crop(frame), BLUE, minimum=200)]
    assert frozen and frozen[0] == 9 and frozen[-1] < 17  # frozen after SPACE, live again after SPACE
    with CaseLog(str(tmp_path / "state")) as log:
        cases = log.cases()
        assert log.integrity_check() == "ok"
    assert len(cases) == 1 and cases[0].module == "synth-test" and cases[0].bundle_id == slot.bundle.bundle_id
    assert cases[0].result["frozen"] is True and cases[0].backend.startswith("onnxruntime")
    saved = cv2.imread(cases[0].image)
    assert saved.shape == (96, 96, 3)  # the camera frame, not the screen


def test_modules_heatmap_and_quit(tmp_path, slot, two_class_folder):
    missing = ModuleSlot("skin", problem="No model bundle for 'skin'")
    kiosk, _lines, frames = _run(tmp_path, open_source(str(two_class_folder) + "/"), [slot, missing],
                                 keys="M,H,M,Q", kiosk_mode=True, max_frames=6)
    assert _has_colour(LAYOUT.banner.crop(frames[1]), AMBER, minimum=1000)  # "module not installed"
    assert not _has_colour(LAYOUT.top3.crop(frames[1]), BAR, minimum=50)
    assert _has_colour(LAYOUT.top3.crop(frames[3]), BAR, minimum=50)  # back to the installed module
    assert np.abs(LAYOUT.message.crop(frames[2]).astype(int) - LAYOUT.message.crop(frames[0])).sum() > 0
    assert kiosk.frames == 6  # Q ignored in kiosk mode
    kiosk, _lines, _frames_ = _run(tmp_path, open_source(str(two_class_folder) + "/"), [slot],
                                   keys="-,Q", kiosk_mode=False, max_frames=10, sink=NullSink())
    assert kiosk.frames == 2


def test_disk_full_is_shown_not_fatal(tmp_path, slot, two_class_folder):
    kiosk, lines, frames = _run(tmp_path, open_source(str(two_class_folder) + "/"), [slot], keys="S",
                                max_frames=2,
                                caselog_factory=lambda: CaseLog(str(tmp_path / "state"), min_free_mb=10 ** 9))
    assert kiosk.cases_saved == 0 and not any("case saved" in line for line in lines)
    assert _has_colour(LAYOUT.message.crop(frames[1]), (0, 0, 0), minimum=1000)


def test_import_key_freezes_an_image_from_the_usb_folder(tmp_path, slot, synth_images, two_class_folder):
    source, _factory = _fake_camera(synth_images, period=0.02)
    kiosk, lines, frames = _run(tmp_path, source, [slot], keys="WAIT3,F", max_frames=7,
                                importer_factory=lambda: open_source(str(two_class_folder) + "/"))
    assert kiosk.frozen
    assert _has_colour(LAYOUT.badge.crop(frames[-1]), BLUE, minimum=200)
    expected = cv2.imread(str(two_class_folder / "a.png"))
    assert np.array_equal(kiosk._frozen_frame, expected)


def test_discover_modules(tmp_path, tiny_bundle):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_bundle, str(models / "synth"))
    damaged = models / "damaged"
    shutil.copytree(tiny_bundle, str(damaged))
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["module"]["id"] = "chest"
    manifest["model_sha256"] = "0" * 64
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    slots, start = discover_modules(str(models), ["chest", "skin", "synth-test"])
    assert [s.module_id for s in slots] == ["chest", "skin", "synth-test"]
    assert "damaged" in slots[0].problem and "sha256" in slots[0].problem
    assert slots[1].bundle is None and "No model bundle" in slots[1].problem
    assert slots[2].usable and start == 2  # starts on the first usable module
    slots, start = discover_modules(str(models / "synth"), ["chest"], first="synth-test")
    assert [s.module_id for s in slots] == ["synth-test", "chest"] and start == 0


def test_smoothing_is_an_ema_reset_per_module():
    smoother = ProbabilitySmoother(0.5)
    assert smoother.update([1.0, 0.0], key="a") == [1.0, 0.0]
    assert smoother.update([0.0, 1.0], key="a") == [0.5, 0.5]
    assert smoother.update([0.0, 1.0], key="b") == [0.0, 1.0]  # another module starts afresh
    smoother.reset()
    assert smoother.update([0.2, 0.8], key="b") == [0.2, 0.8]
    assert ProbabilitySmoother(0.0).update([0.3, 0.7]) == [0.3, 0.7]
    with pytest.raises(ValueError):
        ProbabilitySmoother(1.0)


class HungClassifier(object):
    """Stand-in for a GPU that never returns (cannot be produced on CI): classify blocks."""

    def __init__(self, release):
        self.release = release
        self.runner = type("R", (), {"name": "tensorrt", "provider": "GPU", "precision": "fp16",
                                     "describe": lambda self: "tensorrt (GPU, fp16)"})()

    def notices(self):
        return []

    def classify(self, image):
        self.release.wait(30)
        raise RuntimeError("released")

    def __exit__(self, *exc):
        return False


def test_a_hung_inference_ends_the_run_for_systemd(tmp_path, slot, two_class_folder):
    import threading

    release = threading.Event()
    kiosk = Kiosk(open_source(str(two_class_folder) + "/"), NullSink(), [slot], size=SIZE,
                  open_classifier=lambda _slot: HungClassifier(release), inference_timeout_s=0.5)
    try:
        with kiosk.source, pytest.raises(KioskFailure, match="inference stalled for more than 0.5 s"):
            kiosk.run()
    finally:
        release.set()


def test_worker_keeps_each_queued_frames_own_outcome(slot):
    """The pipeline's contract with the inference thread, on the real bundle's classifier:
    queued jobs are never dropped and each is awaited by its own sequence number; an unqueued
    submit replaces a waiting job (live), and waiting for a replaced job returns at once."""
    import threading

    from edge.kiosk import InferenceWorker, Job

    opener = default_classifier_opener("onnxruntime", "fp32", None, QUALITY)
    gate = threading.Event()

    def gated(module_slot):
        classifier = opener(module_slot)
        classify = classifier.classify

        def slow(image):
            gate.wait(10)
            return classify(image)

        classifier.classify = slow
        return classifier

    images = [np.full((120, 160, 3), value, np.uint8) for value in (30, 120, 200, 90)]
    worker = InferenceWorker(gated).start()
    try:
        opening = threading.Timer(0.5, gate.set)
        opening.start()
        for seq, image in enumerate(images[:3], start=1):
            # The 3rd waits for the 2nd to be taken (the gate opens at 0.5 s).
            assert worker.submit(Job(seq, image, seq, slot, False), queue_s=10.0)
        outcomes = [worker.wait_for(seq, 20.0) for seq in (1, 2, 3)]
        assert [outcome.job.seq for outcome in outcomes] == [1, 2, 3] and worker.dropped == 0
        # Each outcome is its own frame's: the quality gate measured that frame's grey level.
        assert [round(o.prediction.quality.brightness) for o in outcomes] == [30, 120, 200]
        gate.clear()
        worker.submit(Job(4, images[3], 4, slot, False))  # runs (blocked at the gate)
        time.sleep(0.2)
        worker.submit(Job(5, images[0], 5, slot, False))  # waits...
        # A queued submit gives up (False, nothing replaced) while the worker stays busy: the kiosk
        # then checks for a stalled inference instead of blocking for ever.
        assert worker.submit(Job(7, images[2], 7, slot, False), queue_s=0.1) is False and worker.dropped == 0
        worker.submit(Job(6, images[1], 6, slot, False))  # ...and is replaced (live: newest frame only)
        gate.set()
        assert worker.wait_for(6, 20.0).job.seq == 6 and worker.dropped == 1
        assert worker.wait_for(5, 0.01) is None and worker.gone(5)
    finally:
        gate.set()
        worker.stop()


def test_a_hung_inference_behind_a_queued_frame_still_ends_the_run(tmp_path, slot, synth_images):
    """Pipelined video, a key drops the frame in flight, then that inference hangs (a stand-in: the
    real classifier, made to block from its second call on, as a wedged GPU would): the loop must
    not wait for ever to queue the next frame behind it, but report the stall for systemd."""
    import threading

    release = threading.Event()
    calls = []

    def hang_from_the_second(_how):
        calls.append(1)
        if len(calls) >= 2:
            release.wait(30)

    path = _class_video(tmp_path, synth_images)
    kiosk = Kiosk(open_source("file://" + path), NullSink(), [slot], size=SIZE, keys=KeyScript("M"),
                  open_classifier=_hooked_opener(hang_from_the_second), inference_timeout_s=0.5)
    try:
        with kiosk.source, pytest.raises(KioskFailure, match="inference stalled for more than 0.5 s"):
            kiosk.run()
    finally:
        release.set()
    assert kiosk.frames == 1 and len(calls) == 2


def test_a_frame_that_cannot_be_prepared_is_counted_and_never_shows_another_frames_result(
        tmp_path, slot, synth_images):
    """Preparing one video frame fails (injected): it is counted, and no screen pairs a frame with a
    result that is not its own."""
    opener = default_classifier_opener("onnxruntime", "fp32", None, QUALITY)
    prepared = []

    def open_failing(module_slot):
        classifier = opener(module_slot)
        make_preparer = classifier.preparer

        def preparer(depth=2):
            prepare = make_preparer(depth)

            def call(image):
                prepared.append(1)
                if len(prepared) in (2, 4):
                    raise ValueError("injected: frame cannot be prepared")
                return prepare(image)

            return call

        classifier.preparer = preparer
        return classifier

    kiosk, sink, path = _recorded_video_run(tmp_path, slot, synth_images, open_classifier=open_failing)
    assert kiosk.failures == 2 and "injected" in kiosk.last_error
    assert len(sink.shown) == len(read_video(path)) - 2  # the two frames that failed are skipped
    expected = _classified(slot, [frame for frame, _probabilities in sink.shown])
    for (_frame, probabilities), own in zip(sink.shown, expected):
        assert probabilities is not None
        assert np.allclose(probabilities, own, atol=1e-5)


def test_a_failed_inference_leaves_its_frame_without_a_result(tmp_path, slot, synth_images):
    """One video frame's inference raises (injected): that frame is drawn as still analysing, not
    under the previous frame's result; the failure is counted."""
    calls = []

    def fail_the_third(_how):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected: inference failed")

    kiosk, sink, path = _recorded_video_run(tmp_path, slot, synth_images,
                                            open_classifier=_hooked_opener(fail_the_third))
    assert kiosk.failures == 1 and "injected" in kiosk.last_error
    assert [probabilities is None for _frame, probabilities in sink.shown] == [
        index == 2 for index in range(len(read_video(path)))]
