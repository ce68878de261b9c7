"""edge.overlay.draw_overlay: pure drawing, checked on the pixels of the regions it draws."""

import numpy as np
import pytest

from edge.bundle import Bundle, make_manifest
from edge.classify import postprocess
from edge.description import InputSpec, ModelDescription
from edge.overlay import Layout, OverlayState, ascii_text, draw_overlay, format_percent, prediction_state
from edge.quality import assess_quality
from tests.edge.kiosk_media import blurred, textured

SIZES = [(800, 480), (1920, 1080)]
CHECK = {"output": "ood_score", "threshold": 0.7, "method": "test", "message": "Not a chest X-ray - check "
                                                                               "the module"}


CALIBRATED = {"ece_cv": 0.03, "ece_cv_ci95": [0.02, 0.04], "display": "percent"}


def _bundle(task="multiclass", abstain=0.5, input_check=None, calibration=CALIBRATED):
    classes = ["effusion", "cardiomegaly", "normal", "nodule"]
    description = ModelDescription("tiny", task, classes, InputSpec(16, 16), abstain_threshold=abstain,
                                   display_names=["Pleural effusion", "Cardiomegaly", "No finding", "Nodule"],
                                   input_check=input_check)
    manifest = make_manifest(description, "chest", "Chest X-ray", "0" * 64,
                             extra={"calibration": calibration} if calibration else None)
    return Bundle("/nonexistent", manifest, description, None)


def _prediction(probabilities, quality_image=None, **kwargs):
    outputs = {"probabilities": np.array([probabilities], np.float32)}
    if "ood" in kwargs:
        outputs["ood_score"] = np.array([kwargs.pop("ood")], np.float32)
    quality = assess_quality(quality_image) if quality_image is not None else assess_quality(textured())
    return postprocess(outputs, _bundle(**kwargs), quality=quality, backend="onnxruntime (CPU, fp32)",
                       latency_ms=9.0)


def _state(size, **kwargs):
    kwargs.setdefault("module_title", "Chest X-ray")
    return OverlayState(size=size, **kwargs)


def _differs(a, b, rect):
    return np.abs(rect.crop(a).astype(int) - rect.crop(b).astype(int)).sum() > 0


def _has_colour(image, bgr, tolerance=40, minimum=20):
    distance = np.abs(image.astype(int) - np.array(bgr)).sum(axis=2)
    return int((distance < tolerance).sum()) >= minimum


CONFIDENT = [0.86, 0.08, 0.04, 0.02]


@pytest.mark.parametrize("size", SIZES)
def test_canvas_size_frame_untouched_and_disclaimer_always_drawn(size):
    frame = textured()
    before = frame.copy()
    layout = Layout(size)
    cases = [(_prediction(CONFIDENT), _state(size)), (None, _state(size, module_installed=False)),
             (None, _state(size, disconnected=True))]
    for result, state in cases:
        canvas = draw_overlay(frame if not state.disconnected else None, result, state)
        assert canvas.shape == (size[1], size[0], 3) and canvas.dtype == np.uint8
        assert _has_colour(layout.footer.crop(canvas), (0, 220, 255)), "disclaimer (yellow) missing"
    assert np.array_equal(frame, before)


@pytest.mark.parametrize("size", SIZES)
def test_top3_region_shows_the_prediction(size):
    layout = Layout(size)
    state = _state(size)
    first = draw_overlay(textured(), _prediction(CONFIDENT), state)
    second = draw_overlay(textured(), _prediction([0.05, 0.05, 0.1, 0.8]), state)
    assert _differs(first, second, layout.top3)
    assert not _differs(first, second, layout.footer)
    assert not _differs(first, second, layout.image)
    # Bars: the first row's green bar is longer for 86% than for 80%-vs-others ordering changes names only.
    assert _has_colour(layout.top3.crop(first), (80, 200, 80), minimum=50)


def test_text_height_scales_with_the_screen():
    small, large = Layout((800, 480)), Layout((1920, 1080))
    assert large.unit / small.unit == pytest.approx(1080 / 480.0)
    # Large enough to read at arm's length on a 7-inch 800x480 screen: rows of ~24 px glyphs.
    assert small.unit >= 24


@pytest.mark.parametrize("size", SIZES)
def test_each_state_has_its_own_banner(size):
    layout = Layout(size)
    frame = textured()
    renders = {
        "ok": draw_overlay(frame, _prediction(CONFIDENT), _state(size)),
        "uncertain": draw_overlay(frame, _prediction([0.4, 0.3, 0.2, 0.1]), _state(size)),
        "quality": draw_overlay(frame, _prediction(CONFIDENT, quality_image=blurred(frame)), _state(size)),
        "out_of_scope": draw_overlay(frame, _prediction(CONFIDENT, input_check=CHECK, ood=0.9), _state(size)),
        "disconnected": draw_overlay(None, None, _state(size, disconnected=True)),
        "not_installed": draw_overlay(frame, None, _state(size, module_installed=False)),
    }
    banners = {name: layout.banner.crop(image) for name, image in renders.items()}
    yellow, amber, red = (0, 220, 255), (0, 160, 255), (40, 40, 220)
    assert _has_colour(banners["uncertain"], yellow, minimum=500)
    assert not _has_colour(banners["ok"], yellow) and not _has_colour(banners["ok"], amber)
    for name in ("quality", "out_of_scope", "not_installed"):
        assert _has_colour(banners[name], amber, minimum=500), name
    assert _has_colour(banners["disconnected"], red, minimum=500)
    # Quality and out-of-scope replace the prediction: no bars drawn.
    for name in ("quality", "out_of_scope", "not_installed", "disconnected"):
        assert not _has_colour(layout.top3.crop(renders[name]), (80, 200, 80)), name
    # Distinct texts: the amber banners differ from each other.
    assert _differs(renders["quality"], renders["out_of_scope"], layout.banner)
    assert _differs(renders["quality"], renders["not_installed"], layout.banner)


def test_state_classification():
    state = _state((800, 480))
    assert prediction_state(_prediction(CONFIDENT), state) == "ok"
    assert prediction_state(_prediction([0.4, 0.3, 0.2, 0.1]), state) == "uncertain"
    assert prediction_state(_prediction(CONFIDENT, quality_image=blurred(textured())), state) == "quality"
    assert prediction_state(_prediction(CONFIDENT, input_check=CHECK, ood=0.9), state) == "out_of_scope"
    assert prediction_state(_prediction(CONFIDENT, input_check=CHECK, ood=0.1), state) == "ok"
    assert prediction_state(None, state) == "waiting"
    assert prediction_state(None, _state((800, 480), analysing=True)) == "analysing"
    frozen = _state((800, 480), disconnected=True, frozen=True)
    assert prediction_state(_prediction(CONFIDENT), frozen) == "ok"  # a frozen image outlives the camera


def test_multilabel_is_labelled_per_finding():
    size = (800, 480)
    layout = Layout(size)
    multi = draw_overlay(textured(), _prediction([0.9, 0.7, 0.05, 0.6], task="multilabel"), _state(size))
    single = draw_overlay(textured(), _prediction([0.9, 0.04, 0.03, 0.03]), _state(size))
    assert _differs(multi, single, layout.subtitle)


def test_frozen_fallback_message_and_no_technician_details_for_the_worker():
    size = (800, 480)
    layout = Layout(size)
    frame = textured()
    base = draw_overlay(frame, _prediction(CONFIDENT), _state(size))
    frozen = draw_overlay(frame, _prediction(CONFIDENT), _state(size, frozen=True))
    assert _differs(base, frozen, layout.badge)
    assert _has_colour(layout.badge.crop(frozen), (200, 120, 20), minimum=200)
    cpu_state = _state(size, fallback_reason="tensorrt unavailable", on_cpu=True)
    cpu = draw_overlay(frame, _prediction(CONFIDENT), cpu_state)
    assert _has_colour(layout.alert.crop(cpu), (40, 40, 220), minimum=1000)
    assert not _has_colour(layout.alert.crop(base), (40, 40, 220), minimum=1000)
    message = draw_overlay(frame, _prediction(CONFIDENT), _state(size, message="Case saved"))
    assert _differs(base, message, layout.message)
    # backend, precision, provider and fps are the technician's (T, edge.technician_view): the worker's
    # screen is the same pixel for pixel with or without them
    tech = draw_overlay(frame, _prediction(CONFIDENT), _state(size, backend="onnxruntime", precision="fp32",
                                                             provider="CPUExecutionProvider", fps=14.9))
    assert np.array_equal(base, tech)


def test_canvas_is_reused_and_gray_frames_work():
    size = (800, 480)
    state = _state(size)
    canvas = draw_overlay(textured(), _prediction(CONFIDENT), state)
    again = draw_overlay(textured()[:, :, 0], _prediction(CONFIDENT), state, canvas=canvas)
    assert again is canvas
    wrong = np.zeros((10, 10, 3), np.uint8)
    assert draw_overlay(textured(), None, state, canvas=wrong) is not wrong


def test_ascii_and_percent_formatting():
    folded = ascii_text("Decision support only \u2014 not a diagnosis")
    assert folded == "Decision support only - not a diagnosis"
    assert ascii_text("Ur\u00e9mie") == "Uremie"
    assert format_percent(0.8649) == "86%" and format_percent(0.004) == "<1%" and format_percent(0.0) == "0%"


def test_renderer_matches_draw_overlay_and_skips_unchanged_panels():
    from edge.overlay import OverlayRenderer

    renderer = OverlayRenderer()
    confident, uncertain = _prediction(CONFIDENT), _prediction([0.4, 0.3, 0.2, 0.1])
    sequence = [(textured(0), confident, _state(SIZES[0], fps=10.0)),
                (textured(1), confident, _state(SIZES[0], fps=11.0, message="Case saved")),
                (textured(2), uncertain, _state(SIZES[0], fps=12.0, frozen=True)),
                (None, None, _state(SIZES[0], disconnected=True)),
                (textured(3), uncertain, _state(SIZES[1]))]
    for frame, result, state in sequence:
        assert np.array_equal(renderer.draw(frame, result, state), draw_overlay(frame, result, state))
    assert renderer.panel_draws == 4  # the second frame reused the first one's panel


def _camera_frame():
    import os

    from edge.preprocess import load_image

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return load_image(os.path.join(root, "samples", "chest", "camera--film--pneumonia--00000398_002.jpg"))


def _mapping(layout, frame):
    scale = min(layout.image.w / float(frame.shape[1]), layout.image.h / float(frame.shape[0]))
    x0 = layout.image.x + (layout.image.w - int(frame.shape[1] * scale)) // 2
    y0 = layout.image.y + (layout.image.h - int(frame.shape[0] * scale)) // 2
    return scale, x0, y0


def _outline_pixels(canvas, layout, quad, frame, bgr):
    """How many pixels of colour ``bgr`` lie on the outline ``quad`` drawn over ``frame``."""
    scale, x0, y0 = _mapping(layout, frame)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    points = np.round(np.asarray(quad) * scale + [x0, y0]).astype(np.int32).reshape(-1, 1, 2)
    import cv2

    cv2.polylines(mask, [points], True, 255, 2)
    distance = np.abs(canvas.astype(int) - np.array(bgr)).sum(axis=2)
    return int(((distance < 60) & (mask > 0)).sum()), int((mask > 0).sum())


@pytest.mark.parametrize("size", SIZES)
def test_live_outline_states_are_drawn_on_the_located_xray(size):
    from edge.locate import GUIDE_TEXT as LOCATE_GUIDE_TEXT
    from edge.locate import guide_quad, locate
    from edge.overlay import AMBER, BAR, GUIDE_TEXT, WHITE

    assert GUIDE_TEXT == LOCATE_GUIDE_TEXT
    frame = _camera_frame()
    layout = Layout(size)
    quad = locate(frame).quad
    plain = draw_overlay(frame, None, _state(size))
    assert np.array_equal(plain, draw_overlay(frame, None, _state(size, outline=quad)))  # no state: nothing
    for outline_state, outline, colour in (("locked", quad, BAR), ("hold_still", quad, AMBER),
                                           ("searching", guide_quad(1280, 720), WHITE)):
        canvas = draw_overlay(frame, None, _state(size, outline=outline, outline_state=outline_state))
        on_line, total = _outline_pixels(canvas, layout, outline, frame, colour)
        assert on_line > 0.6 * total, outline_state
        assert not _differs(canvas, plain, layout.panel)  # the panel is not touched
    locked = draw_overlay(frame, None, _state(size, outline=quad, outline_state="locked"))
    hold = draw_overlay(frame, None, _state(size, outline=quad, outline_state="hold_still"))
    scale, _x0, y0 = _mapping(layout, frame)
    top = int(y0 + min(q[1] for q in quad) * scale)
    band = layout.image.__class__(layout.image.x, max(0, top - int(layout.unit * 1.4)), layout.image.w,
                                  int(layout.unit * 1.4))
    assert _differs(hold, locked, band)  # "Hold still" is written above the outline; locked has no text


def test_result_panel_shows_a_thumbnail_of_the_analysed_image_and_the_cache_follows_it():
    from edge.overlay import OverlayRenderer

    size = SIZES[0]
    layout = Layout(size)
    first = _prediction(CONFIDENT)
    second = _prediction(CONFIDENT)
    first.thumbnail = np.full((96, 80, 3), 200, np.uint8)
    second.thumbnail = np.full((96, 80, 3), 30, np.uint8)
    without = draw_overlay(textured(), _prediction(CONFIDENT), _state(size))
    with_first = draw_overlay(textured(), first, _state(size))
    assert _differs(without, with_first, layout.thumbnail)
    assert _has_colour(layout.thumbnail.crop(with_first), (200, 200, 200), tolerance=6, minimum=200)
    renderer = OverlayRenderer()
    renderer.draw(textured(), first, _state(size))
    renderer.draw(textured(), second, _state(size))
    assert renderer.panel_draws == 2  # a new thumbnail redraws the panel
    assert np.array_equal(renderer.canvas, draw_overlay(textured(), second, _state(size)))


class _CopyingCv2(object):
    """OpenCV as an older build that cannot write into a view: resize returns a new image."""

    def __init__(self, cv2):
        self.cv2 = cv2

    def __getattr__(self, name):
        return getattr(self.cv2, name)

    def resize(self, image, size, dst=None, interpolation=None):
        return self.cv2.resize(image, size, interpolation=interpolation)


@pytest.mark.parametrize("size", SIZES)
def test_the_camera_image_is_resized_straight_into_the_canvas_with_the_same_pixels(size):
    """The letterboxed image is OpenCV's linear resize of the frame, written into the canvas in place
    (or copied there when OpenCV returns a new image instead); the margins keep the background."""
    import cv2

    from edge.overlay import IMAGE_BG, _place_image

    frame = textured(3)
    layout = Layout(size)
    expected = None
    for module in (cv2, _CopyingCv2(cv2)):
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        scale, x, y = _place_image(module, np, canvas, frame, layout.image)
        w, h = int(frame.shape[1] * scale), int(frame.shape[0] * scale)
        resized = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(canvas[y:y + h, x:x + w], resized)
        margin = canvas[layout.image.y:y, layout.image.x:layout.image.x + layout.image.w].reshape(-1, 3)
        assert y > layout.image.y and (margin == IMAGE_BG).all()  # the letterbox band above the image
        expected = canvas if expected is None else expected
        assert np.array_equal(canvas, expected)
