"""edge.classify.Prediction step by step (mutation survivors, issue 18): what one result shows and
writes, built here with known probabilities: the value text (percent or words), the likelihood
words at their boundaries, the suggestion line (kiosk key or CLI module id), the notes and every
field of ``to_dict`` (the CLI's and the LAN service's JSON), with a real thumbnail PNG."""

import base64

import cv2
import numpy as np
import pytest

from edge.bundle import Bundle, load_bundle, make_manifest
from edge.classify import (
    Classifier,
    FramePreparer,
    Prediction,
    classify,
    likelihood_word,
    localises,
    postprocess,
    thumbnail,
)
from edge.description import InputSpec, ModelDescription
from edge.locate import Localisation
from edge.quality import Quality


def _prediction(probabilities=(0.1, 0.7, 0.2), task="multiclass", uncertain=False, **kwargs):
    names = ["a", "b", "c", "d"][:len(probabilities)]
    return Prediction(names, [n.upper() for n in names], probabilities, task, uncertain, "mod-1", **kwargs)


@pytest.mark.parametrize("p, word", [(1.0, "likely"), (0.70, "likely"), (0.6999, "possible"),
                                     (0.30, "possible"), (0.2999, "unlikely"), (0.0, "unlikely"),
                                     (-0.1, "unlikely")])
def test_likelihood_words_at_their_bounds(p, word):
    assert likelihood_word(p) == word


def test_value_text_percent_words_and_format():
    shown = _prediction()
    assert shown.value_text(0.256) == "26%"
    assert shown.value_text(0.256, "{:.1%}") == "25.6%"
    assert _prediction(display="words").value_text(0.256) == "unlikely"
    assert _prediction(uncertain=True).value_text(0.75) == "likely"  # never a number when uncertain


def test_suggestion_line_for_the_kiosk_and_the_cli():
    result = _prediction()
    assert result.suggestion_line() is None and result.suggestion_line("F2") is None
    result.suggested_module, result.suggested_title = "skin", "Skin lesions"
    kiosk = result.suggestion_line("F2")
    assert kiosk == "This looks like an image for Skin lesions - press F2 to switch to it"
    assert result.suggestion_line() == ("This looks like an image for Skin lesions - classify it with module "
                                        "'skin'")


def test_notes_out_of_scope_with_a_suggestion_uncertain_and_quality():
    result = _prediction(out_of_scope=True, out_of_scope_message="not a chest X-ray")
    result.suggested_module, result.suggested_title = "skin", "Skin lesions"
    assert result.notes() == ["OUT OF SCOPE: not a chest X-ray - result not shown",
                              "This looks like an image for Skin lesions - classify it with module 'skin'"]
    unsure = _prediction(task="multilabel", uncertain=True, quality=Quality([("blurry", 3.0)], 3.0, 90, 0, 0))
    notes = unsure.notes()
    assert notes[0].endswith("(no finding is clearly present or clearly absent)") and len(notes) == 2
    assert notes[1] == unsure.quality.message and "hold the camera still" in notes[1]
    assert _prediction(uncertain=True).notes()[0].endswith("(no class is clearly more likely)")
    assert _prediction(quality=Quality([], 300.0, 90, 0, 0)).notes() == []


def test_to_dict_every_field():
    result = _prediction((0.1234567, 0.7654321, 0.111), ood_score=0.12345678, backend="onnxruntime",
                         latency_ms=12.3456)
    assert result.to_dict() == {
        "bundle_id": "mod-1", "task": "multiclass",
        "probabilities": {"a": 0.123457, "b": 0.765432, "c": 0.111},
        "top3": [{"name": "B", "probability": 0.765432, "word": "likely"},
                 {"name": "A", "probability": 0.123457, "word": "unlikely"},
                 {"name": "C", "probability": 0.111, "word": "unlikely"}],
        "display": "percent", "top1": "b", "uncertain": False, "out_of_scope": False,
        "backend": "onnxruntime", "latency_ms": 12.35, "suggested_module": None,
        "ood_score": 0.123457, "quality": None}
    words = _prediction(display="words").to_dict()
    assert words["display"] == "words" and words["latency_ms"] is None and "ood_score" not in words


def test_to_dict_multilabel_out_of_scope_suggestion_quality_and_heatmap():
    quality = Quality([("too dark", 12.0)], 80.0, 12.0, 0.5, 0.0)
    heatmap = np.arange(2 * 3 * 2, dtype=np.float32).reshape(3, 2, 2) / 7.0
    result = _prediction((0.2, 0.9, 0.4), task="multilabel", present=[1], out_of_scope=True,
                         out_of_scope_message="why", quality=quality, heatmap=heatmap)
    result.suggested_module, result.suggested_title = "skin", "Skin lesions"
    data = result.to_dict()
    assert data["present"] == [1] and data["out_of_scope_message"] == "why"
    assert data["suggested_module"] == "skin" and data["suggested_module_title"] == "Skin lesions"
    assert data["suggestion"] == "This looks like an image for Skin lesions - classify it with module 'skin'"
    assert data["quality"] == quality.to_dict() and data["quality"]["problems"] == [["too dark", 12.0]]
    assert data["heatmap"] == {"class": "b", "shape": [2, 2],
                               "values": [[0.5714, 0.7143], [0.8571, 1.0]]}
    assert "localisation" not in data


def test_to_dict_localisation_and_thumbnail():
    frame = np.zeros((40, 60, 3), np.uint8)
    quad = np.array([[1.04, 2], [50, 2], [50, 30], [1, 30]], np.float32)
    thumbnail = np.full((6, 8, 3), 77, np.uint8)
    located = Localisation(True, quad, "lightbox", frame, box=(1, 2, 50, 30))
    data = _prediction(localisation=located, thumbnail=thumbnail).to_dict()["localisation"]
    assert data["found"] is True and data["method"] == "lightbox" and data["frame_size"] == [60, 40]
    assert data["quad"][0] == [1.0, 2.0] and data["crop_size"] == [49, 28]
    png = base64.b64decode(data["thumbnail_png_base64"].encode("ascii"))
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), thumbnail)
    no_thumbnail = _prediction(localisation=located).to_dict()["localisation"]
    assert "thumbnail_png_base64" not in no_thumbnail


def test_thumbnail_size_floor_interpolation_and_grey():
    assert thumbnail(np.zeros((40, 50, 3), np.uint8)).shape == (40, 50, 3)  # never enlarged
    assert thumbnail(np.zeros((1000, 5, 3), np.uint8)).shape == (96, 1, 3)  # the one-pixel floor
    assert thumbnail(np.zeros((5, 1000, 3), np.uint8)).shape == (1, 96, 3)
    stripes = np.zeros((96, 960, 3), np.uint8)
    stripes[:, ::2] = 255
    small = thumbnail(stripes, size=96)
    assert small.shape == (10, 96, 3) and np.array_equal(small, cv2.resize(stripes, (96, 10),
                                                                            interpolation=cv2.INTER_AREA))
    assert abs(int(small[5, 5, 0]) - 128) <= 1  # averaged by area, not sampled
    grey = thumbnail(np.full((30, 20), 9, np.uint8))
    assert grey.shape == (30, 20, 3) and (grey == 9).all()


def test_frame_preparer_uses_the_given_localisation(tiny_bundle):
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[10:50, 20:60] = 200
    given = Localisation(True, np.zeros((4, 2), np.float32), "letterbox", frame, box=(20, 10, 60, 50))
    prepared = FramePreparer(load_bundle(tiny_bundle))(frame, localisation=given)
    assert prepared.localisation is given
    assert prepared.thumbnail.shape == (40, 40, 3) and (prepared.thumbnail == 200).all()


def _bundle(module="unit", extra=None, calibration=None):
    description = ModelDescription("tiny", "multiclass", ["a", "b", "c"], InputSpec(16, 16),
                                   display_names=["A", "B", "C"], extra=extra)
    manifest = make_manifest(description, module, "Unit", "0" * 64)
    if calibration:
        manifest["calibration"] = calibration
    return Bundle("/nonexistent", manifest, description, None)


class _NoDisplay(object):
    """A bundle object from before ``display`` existed: percentages."""

    def __init__(self, bundle):
        self._bundle = bundle

    def __getattr__(self, name):
        if name == "display":
            raise AttributeError(name)
        return getattr(self._bundle, name)


def test_postprocess_heatmap_row_and_display_mode():
    heatmaps = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    outputs = {"probabilities": np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], np.float32), "heatmap": heatmaps}
    result = postprocess(outputs, _bundle(), index=1)
    assert np.array_equal(result.heatmap, heatmaps[1]) and result.top1 == "a"
    assert postprocess({"probabilities": outputs["probabilities"]}, _bundle()).heatmap is None
    words = _bundle()
    assert words.display == "words" and postprocess(outputs, words).display == "words"
    percent = _bundle(calibration={"display": "percent", "ece_cv": 0.01})
    assert percent.display == "percent" and postprocess(outputs, percent).display == "percent"
    assert postprocess(outputs, _NoDisplay(words)).display == "percent"


def test_camera_localisation_opt_in_and_opt_out():
    assert localises(_bundle("chest")) and not localises(_bundle("skin"))
    assert localises(_bundle("skin", extra={"camera_localisation": True}))
    assert not localises(_bundle("chest", extra={"camera_localisation": False}))
    assert localises(_bundle("skin", extra={"camera_localisation": 1}))


def test_classify_and_the_classifier_use_the_given_localisation(tiny_bundle):
    pytest.importorskip("onnxruntime")
    from edge.backends import open_runner

    bundle = load_bundle(tiny_bundle)
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[10:50, 20:60] = 200
    given = Localisation(True, np.zeros((4, 2), np.float32), "letterbox", frame, box=(20, 10, 60, 50))
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        for result in (classify(frame, runner, bundle, localisation=given),
                       Classifier(runner).classify(frame, localisation=given)):
            assert result.localisation is given and result.thumbnail.shape == (40, 40, 3)


def test_classifier_open_passes_the_engine_cache_to_the_backend(tiny_bundle, monkeypatch, tmp_path):
    """Only the TensorRT backend reads the engine cache (no TensorRT GPU here): the call is recorded
    on its way to the real ONNX Runtime runner."""
    pytest.importorskip("onnxruntime")
    import edge.backends

    calls, real = [], edge.backends.open_runner

    def recording(bundle, **kwargs):
        calls.append(kwargs)
        return real(bundle, backend="onnxruntime", precision="fp32")

    monkeypatch.setattr(edge.backends, "open_runner", recording)
    with Classifier.open(load_bundle(tiny_bundle), backend="tensorrt", precision="fp16",
                         engine_cache=str(tmp_path), trt_module="t") as classifier:
        assert classifier.classify(np.full((20, 20, 3), 99, np.uint8)).bundle_id
    assert calls == [{"backend": "tensorrt", "precision": "fp16", "engine_cache": str(tmp_path),
                      "trt_module": "t"}]
