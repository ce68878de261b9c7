"""A 7-inch 800x480 panel: every text on the kiosk's screen is readable, inside the screen, and apart.

Readable: capitals at least ``MIN_TEXT_PX`` tall (edge.overlay.readable_cap_px: 16 arc minutes at
50 cm on the 7-inch panel's pixel pitch). Every screen the kiosk draws (each panel state, the banners
stacked at their worst, the technician box, the file name, the pairing panel) is rendered for real
on an 800x480 canvas with the shipped modules' titles and finding names, in each language (English,
Hindi, Bengali: their catalogues and fonts); each text drawn is recorded (the text engine's draw,
passed through unchanged) with where its ink goes, and checked: not smaller than readable, inside
the canvas, not over another visible text. The cap height's definition is checked on pixels too,
and a broken readable floor is shown to fail the check.
"""

import contextlib
import json
import os

import numpy as np
import pytest

import edge.overlay as overlay
import edge.overlay_text as overlay_text
from edge import i18n
from edge import text as text_engine
from edge.bundle import Bundle, make_manifest
from edge.classify import postprocess
from edge.description import InputSpec, ModelDescription
from edge.errors import ConfigError
from edge.kiosk.pairing import Pairing
from edge.kiosk.views import KioskViews
from edge.overlay import (
    MIN_TEXT_PX,
    OverlayState,
    Rect,
    draw_overlay,
    key_legend,
    key_legend_items,
    readable_cap_px,
    text_block,
)
from edge.quality import assess_quality
from edge.serve.auth import DeviceStore
from edge.signing import DEVELOPER_BANNER
from edge.technician_view import TechnicianInfo
from tests.edge.kiosk_media import blurred, textured

SIZE = (800, 480)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shipped(module):
    with open(os.path.join(ROOT, "models", module, "manifest.json")) as handle:
        manifest = json.load(handle)
    return manifest["module"]["title"], manifest["model"]["display_names"]


def _prediction(probabilities, module="chest", quality_image=None, task="multiclass", ood=None):
    title, names = _shipped(module)
    names = (names * 2)[:len(probabilities)]
    check = None
    outputs = {"probabilities": np.array([probabilities], np.float32)}
    if ood is not None:
        check = {"output": "ood_score", "threshold": 0.7, "method": "test",
                 "message": "Not a chest X-ray - check the module"}
        outputs["ood_score"] = np.array([ood], np.float32)
    description = ModelDescription("m", task, ["c{}".format(i) for i in range(len(names))], InputSpec(16, 16),
                                   abstain_threshold=0.5, display_names=names, input_check=check)
    bundle = Bundle("/nonexistent", make_manifest(description, module, title, "0" * 64), description, None)
    quality = assess_quality(quality_image if quality_image is not None else textured())
    return postprocess(outputs, bundle, quality=quality, backend="onnxruntime", latency_ms=9.0)


class TextSpy(object):
    """The text engine with its draw calls recorded: (text, ink box (x0, y0, x1, y1), cap height)."""

    def __init__(self, engine, language):
        self.engine = engine
        self.language = language
        self.drawn = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def draw(self, canvas, text, x, baseline, px, colour, bold=False):
        if text:
            self.drawn.append((text, self.engine.ink_box(text, x, baseline, px, bold),
                               self.engine.cap_height(px, bold)))
        return self.engine.draw(canvas, text, x, baseline, px, colour, bold)


LANGUAGES = ("en", "hi", "bn")


def _engine(language):
    try:
        return text_engine.engine_for(language)
    except ConfigError as exc:  # no font or libraqm for the script here
        pytest.skip(str(exc))


@pytest.fixture(params=LANGUAGES + ("en-hershey",))
def spy(request, monkeypatch):
    """Every text drawn in ``language`` (its catalogue, its engine) recorded; en-hershey: English on
    OpenCV's font, the fallback of a unit without Pillow or a Latin font."""
    language = request.param.split("-")[0]
    engine = text_engine.HersheyText() if request.param == "en-hershey" else _engine(language)
    spy = TextSpy(engine, language)
    monkeypatch.setattr(text_engine, "use", lambda language: spy)
    i18n.set_language(language)
    yield spy
    i18n.set_language("en")


@pytest.fixture
def english(monkeypatch):
    spy = TextSpy(_engine("en"), "en")
    monkeypatch.setattr(text_engine, "use", lambda language: spy)
    return spy


def _overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(box, rect):
    return box[0] >= rect.x and box[1] >= rect.y and box[2] <= rect.x + rect.w and box[3] <= rect.y + rect.h


def _visible(drawn, covers):
    """The texts drawn, less those an opaque box drawn later covers (technician box, pairing panel)."""
    shown = []
    for index, (text, box, cap) in enumerate(drawn):
        hidden = any(start > index and _overlaps(box, (r.x, r.y, r.x + r.w, r.y + r.h))
                     for start, r in covers)
        if not hidden:
            shown.append((text, box, cap))
    return shown


def check_screen(drawn, covers=()):
    """Every visible text readable, inside the 800x480 canvas and apart from every other one."""
    canvas = Rect(0, 0, SIZE[0], SIZE[1])
    shown = _visible(drawn, covers)
    assert shown, "nothing was drawn"
    for text, box, cap in shown:
        assert cap >= MIN_TEXT_PX - 1e-6, "{!r} is {:.1f} px tall, below {} px".format(text, cap, MIN_TEXT_PX)
        assert _inside(box, canvas), "{!r} at {} leaves the screen".format(text, box)
    for i, (text, box, _cap) in enumerate(shown):
        for other, other_box, _ in shown[i + 1:]:
            assert not _overlaps(box, other_box), "{!r} {} overlaps {!r} {}".format(text, box, other,
                                                                                   other_box)
    return [text for text, _box, _cap in shown]


LONG_PROBLEM = ("No model bundle for 'skin' in /opt/medkiosk/models. Install it, or press M for another "
                "module")
STATES = {
    "ok": (lambda: _prediction([0.86, 0.08, 0.04, 0.02]), {}),
    "ok-child": (lambda: _prediction([0.7, 0.3], module="pediatric-pneumonia"),
                 {"module_title": "Chest X-ray (child): pneumonia - 2/2"}),
    "uncertain": (lambda: _prediction([0.4, 0.35, 0.2, 0.05]), {}),
    "multilabel": (lambda: _prediction([0.9, 0.7, 0.05, 0.6], task="multilabel"), {}),
    "quality": (lambda: _prediction([0.86, 0.08, 0.04, 0.02], quality_image=blurred(textured())), {}),
    "out_of_scope": (lambda: _prediction([0.86, 0.08, 0.04, 0.02], ood=5.0), {}),
    "not_installed": (lambda: None, {"module_installed": False, "module_problem": LONG_PROBLEM,
                                     "module_title": "skin - 3/3"}),
    "disconnected": (lambda: None, {"disconnected": True}),
    "waiting": (lambda: None, {"source_notice": "No images in /media/usb yet - insert the USB stick"}),
    "analysing": (lambda: None, {"analysing": True}),
    "every-banner": (lambda: _prediction([0.86, 0.08, 0.04, 0.02]), {
        "frozen": True, "fallback_reason": "TensorRT unavailable: running ONNX Runtime on the CPU",
        "on_cpu": True, "developer_notice": DEVELOPER_BANNER,
        "message": "Kiosk mode: the kiosk cannot be closed from the keyboard"}),
    "downgrade-not-cpu": (lambda: _prediction([0.86, 0.08, 0.04, 0.02]), {
        "fallback_reason": "fp16 engine missing: running TensorRT fp32 (slower)"}),
}


def _state(**kwargs):
    kwargs.setdefault("module_title", "Chest X-ray (adult) - 1/2")
    return OverlayState(size=SIZE, **kwargs)


@pytest.mark.parametrize("name", sorted(STATES))
def test_every_panel_state_is_readable_at_800x480(spy, name):
    make, options = STATES[name]
    frame = None if options.get("disconnected") else textured()
    draw_overlay(frame, make(), _state(**options))
    texts = check_screen(spy.drawn)
    joined = " ".join(texts)
    assert i18n._(overlay.DISCLAIMER) in joined  # whole (never cut) in every language
    if options.get("frozen"):
        assert i18n._(overlay.FROZEN_TEXT) in texts
    if spy.language != "en":
        return
    assert any("Decision support" in t for t in texts)  # the notice is always there, never covered
    if options.get("on_cpu"):
        assert any("RUNNING ON CPU" in t for t in texts)
    if name == "multilabel":  # the per-finding notice is read whole (two lines), not cut with "..."
        subtitle = [t for t in texts if t.startswith("Findings") or t.endswith("distribution)")]
        assert " ".join(subtitle) == "Findings - each scored on its own (not a distribution)"


def test_the_legend_shows_the_keypad_keys_and_stays_readable(spy):
    from edge.kiosk.keys import KEY_HANDLERS
    from edge.overlay import SAME_AS

    for name, same in SAME_AS.items():  # the legend's aliases are the kiosk's
        assert KEY_HANDLERS[name] is KEY_HANDLERS[same]
    legend = key_legend()
    english = ("SPACE/Enter freeze", "M/+ module", "F/- image", "S/. save", "E (/) export")
    for part in english:  # the key names stay as printed on the keys, in every language
        assert (part if spy.language == "en" else part.split()[0] + " ") in legend
    draw_overlay(textured(), _prediction([0.86, 0.08, 0.04, 0.02]), _state())
    shown = check_screen(spy.drawn)
    legend = [line for line in shown if any(item in line for item in key_legend_items())]
    # every entry whole, none cut or broken over two lines, in at most three lines
    assert sorted(sum((line.split("; ") for line in legend), [])) == sorted(key_legend_items())
    assert len(legend) <= 3


def _info():
    return TechnicianInfo("tensorrt", "fp16", "TensorrtExecutionProvider", 14.8, 3.2, 45.0, "chest",
                          "chest-efficientnet_lite0 1.0.0", "/media/usb (IMG_0001.png)",
                          "NOT FILLING: window 400x300 at (0, 30) on a 800x480 screen",
                          "https://192.168.4.1:8443/", "TensorRT unavailable: no engine for this GPU")


def test_technician_box_file_name_and_banners_do_not_collide(spy):
    views = KioskViews(Pairing())
    views.toggle_technician()
    state = _state(frozen=True, fallback_reason="TensorRT unavailable", on_cpu=True, message="Image a.png",
                   developer_notice=DEVELOPER_BANNER)
    canvas = draw_overlay(textured(), _prediction([0.86, 0.08, 0.04, 0.02]), state)
    start = len(spy.drawn)
    views.draw(canvas, state, "IMG_0001.png", _info())
    box = views.drawn["technician"]
    cover = Rect(box[0].x, box[0].y, box[0].w, box[-1].y + box[-1].h - box[0].y)
    texts = check_screen(spy.drawn, [(start, cover)])
    if spy.language != "en":
        return
    for words in ("RUNNING ON CPU", "FROZEN", "Image a.png", "File: IMG_0001.png", "Backend: tensorrt fp16",
                  "Provider: TensorrtExecutionProvider", "Screen: 14.8 fps", "Inference: 45 ms", "T: close",
                  "Notice: TensorRT unavailable"):
        assert any(words in t for t in texts), words
    window = " ".join(t for t in texts if "Window" in t or "400x300" in t)
    assert "400x300" in window  # the long line wraps onto its second row rather than being cut


def test_pairing_panel_is_readable_and_keeps_the_alerts(spy, tmp_path):
    pairing = Pairing(DeviceStore(str(tmp_path)), "https://192.168.4.1:8443/")
    pairing.toggle()
    views = KioskViews(pairing)
    state = _state(fallback_reason="TensorRT unavailable", on_cpu=True, developer_notice=DEVELOPER_BANNER)
    canvas = draw_overlay(textured(), _prediction([0.86, 0.08, 0.04, 0.02]), state)
    start = len(spy.drawn)
    views.draw(canvas, state)
    area = views.drawn["pairing"].area
    texts = check_screen(spy.drawn, [(start, area)])
    assert pairing.view.spaced_code() in texts
    if spy.language != "en":
        return
    assert any("RUNNING ON CPU" in t for t in texts) and any("DEVELOPER" in t for t in texts)
    assert pairing.view.spaced_code() in texts and any("Valid for 4:" in t for t in texts)


def test_the_readable_size_and_its_pixels():
    # 16 arc minutes at 50 cm is 2.33 mm; a 7-inch 800x480 panel has 0.19 mm pixels: 12.2 -> 13 px
    assert readable_cap_px() == MIN_TEXT_PX == 13
    assert readable_cap_px({"size": (800, 480), "diagonal_mm": 254.0}) == 9  # a 10-inch panel of 800x480
    engines = [text_engine.HersheyText()]
    for language in LANGUAGES:
        with contextlib.suppress(ConfigError):  # no font for the script here: that engine is not checked
            engines.append(text_engine.engine_for(language))
    for engine in engines:
        letters = ["H"] + ([text_engine.SCRIPTS[engine.script].letter] if engine.script != "latin" else [])
        for bold in (False, True):
            px = engine.min_px(MIN_TEXT_PX, bold)
            assert engine.cap_height(px, bold) >= MIN_TEXT_PX > engine.cap_height(px - 1, bold)
            for letter in letters:  # the ink of a capital (or the script's letter), pixel-measured
                image = np.zeros((80, 80, 3), np.uint8)
                engine.draw(image, letter, 5, 50, px, (255, 255, 255), bold)
                rows = np.nonzero(image.max(axis=(1, 2)) > 127)[0]
                assert rows.max() - rows.min() + 1 >= MIN_TEXT_PX - 1, (engine.name, engine.script, letter)


def test_a_broken_readable_floor_fails_the_check(english, monkeypatch):
    canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    text_block(canvas, LONG_PROBLEM, Rect(10, 10, 300, 30), 24, (255, 255, 255), max_lines=1)
    check_screen(english.drawn)  # the floor holds: cut with an ellipsis at 13 px
    assert english.drawn[0][0].endswith(english.ellipsis)
    monkeypatch.setattr(overlay_text, "min_px", lambda drawer, bold=False: 4.0)
    del english.drawn[:]
    text_block(canvas, LONG_PROBLEM, Rect(10, 10, 300, 30), 24, (255, 255, 255), max_lines=1)
    with pytest.raises(AssertionError, match="below 13 px"):
        check_screen(english.drawn)


def test_the_check_catches_small_and_overlapping_text():
    with pytest.raises(AssertionError, match="below 13 px"):
        check_screen([("tiny", (0, 0, 10, 10), 12.9)])
    with pytest.raises(AssertionError, match="overlaps"):
        check_screen([("a", (0, 0, 50, 20), 13), ("b", (40, 10, 90, 30), 13)])
    with pytest.raises(AssertionError, match="leaves the screen"):
        check_screen([("a", (790, 0, 810, 20), 13)])


def test_a_short_technician_box_drops_the_last_figures_not_the_readable_size(spy):
    from edge.overlay import Layout
    from edge.technician_view import draw_technician

    layout = Layout(SIZE)
    canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    boxes = draw_technician(canvas, layout, _info(), Rect(9, 100, 446, 150))
    texts = check_screen(spy.drawn)
    assert boxes[-1].y + boxes[-1].h <= 100 + 150
    if spy.language != "en":
        return
    assert texts[0] == "Technician" and texts[-1] == "T: close" and len(boxes) < 12
    assert any(t.startswith("Backend") for t in texts) and not any(t.startswith("LAN pairing") for t in texts)
    assert boxes[-1].y + boxes[-1].h <= 100 + 150


def test_the_capture_screens_are_readable_in_each_language(spy):
    from edge.kiosk.capture_mode import CONSENT_TEXT, draw_capture, draw_consent

    draw_consent(SIZE, message=i18n._("No consent - nothing stored"))
    texts = check_screen(spy.drawn)
    assert i18n._(CONSENT_TEXT).split()[0] in " ".join(texts)  # the statement in the worker's language
    del spy.drawn[:]
    view = {"title": i18n._("Capture: {}").format("skin"), "person": i18n._("Person {} - {} photo(s)").format(
        "a1b2c3", 2), "labels": [("melanoma", 4, 1), ("nevus", 9, 0), ("psoriasis", 0, 0)], "selected": 1,
        "quality": "Image quality too low - retake", "message": i18n._("Saved: {} ({})").format("nevus", 10)}
    draw_capture(SIZE, textured(), view)
    texts = check_screen(spy.drawn)
    if spy.language != "en":
        assert any(ord(c) > 0x900 for t in texts for c in t)  # drawn in the script, not folded to ASCII


def test_the_cached_panel_is_pixel_identical_to_drawing_it_whole_in_each_language(spy):
    """The kiosk's renderer draws a new result over a copy of the panel's unchanging part (title,
    legend, disclaimer) rendered once: every state, one after the other through one renderer, gives
    the very pixels of ``draw_overlay`` drawing the whole panel in its own order."""
    renderer = overlay.OverlayRenderer()
    names = sorted(STATES) + sorted(STATES)[::-1]  # each state after another one, both ways
    for name in names:
        make, options = STATES[name]
        frame = None if options.get("disconnected") else textured()
        result, state = make(), _state(**options)
        assert np.array_equal(renderer.draw(frame, result, state), draw_overlay(frame, result, state)), name
    titles = [STATES[name][1].get("module_title", _state().module_title) for name in names]
    changes = 1 + sum(1 for before, after in zip(titles, titles[1:]) if before != after)
    assert renderer.static_draws == changes  # the unchanging part is drawn again only for a new title
    assert renderer.panel_draws > renderer.static_draws  # results over the unchanging part, not redrawn
