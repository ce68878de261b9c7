"""The decision rules of ``edge.classify`` pinned AT their thresholds, the input-check contract,
the frame-buffer ring and ``with Classifier`` (issue 18).

Probabilities are powers of two so float32 -> float conversions are exact and a test can sit
exactly on a threshold: ``<`` vs ``<=`` changes the answer.
"""

import json

import numpy as np
import pytest

from edge.bundle import Bundle, load_bundle, make_manifest
from edge.classify import (
    TOP_K,
    Classifier,
    FramePreparer,
    Prediction,
    Prepared,
    infer_prepared,
    multilabel_decision,
    postprocess,
    prepare,
)
from edge.description import InputSpec, ModelDescription
from edge.errors import BackendError
from edge.quality import Quality, QualityThresholds

CHECK = {"output": "ood_score", "threshold": 0.5, "method": "mahalanobis", "message": "not a chest X-ray"}


def _bundle(task="multiclass", classes=("a", "b", "c", "d"), abstain=0.5, input_check=None):
    description = ModelDescription("tiny", task, list(classes), InputSpec(16, 16),
                                   display_names=[c.upper() for c in classes], abstain_threshold=abstain,
                                   input_check=input_check)
    return Bundle("/nonexistent", make_manifest(description, "unit", "Unit", "0" * 64), description, None)


def _post(probs, bundle, **outputs):
    outputs["probabilities"] = np.array([probs], np.float32)
    return postprocess(outputs, bundle)


@pytest.mark.parametrize("top, uncertain", [(0.5, False), (0.4999, True), (0.5001, False)])
def test_multiclass_uncertain_exactly_at_the_abstain_threshold(top, uncertain):
    rest = (1.0 - top) / 3
    prediction = _post([rest, top, rest, rest], _bundle(abstain=0.5))
    assert prediction.uncertain is uncertain
    assert prediction.top1 == "b"


@pytest.mark.parametrize("probs, threshold, present, uncertain", [
    ([0.75, 0.25, 0.25], 0.75, [0], False),       # exactly t: present; exactly 1 - t: absent
    ([0.75, 0.25, 0.25], 0.25, [0], False),       # t and 1 - t mean the same band
    ([0.25, 0.25, 0.25], 0.75, [], False),        # every finding exactly at 1 - t: all absent
    ([0.25, 0.25, 0.25], 0.25, [], False),
    ([0.7499, 0.25, 0.25], 0.75, [], True),       # just under t, none present
    ([0.2501, 0.25, 0.25], 0.75, [], True),       # just over 1 - t: not absent
    ([0.2501, 0.25, 0.25], 0.25, [], True),
    ([0.875, 0.875, 0.0], 0.75, [0, 1], False),
    ([0.5, 0.5], 0.5, [0, 1], False),             # t = 0.5: the band is empty
])
def test_multilabel_present_and_absent_exactly_at_the_band(probs, threshold, present, uncertain):
    assert multilabel_decision(probs, threshold) == (present, uncertain)
    bundle = _bundle(task="multilabel", classes=("x", "y", "z")[:len(probs)], abstain=threshold)
    prediction = _post(probs, bundle)
    assert prediction.present == [("x", "y", "z")[i] for i in present]
    assert prediction.uncertain is uncertain
    assert prediction.to_dict()["present"] == prediction.present


def test_multilabel_notes_and_multiclass_notes_differ():
    ml = _post([0.5, 0.5], _bundle(task="multilabel", classes=("x", "y"), abstain=0.75))
    assert ml.notes() == ["Uncertain - retake the image or refer (no finding is clearly present or "
                          "clearly absent)"]
    mc = _post([0.25, 0.25, 0.25, 0.25], _bundle())
    assert mc.notes() == ["Uncertain - retake the image or refer (no class is clearly more likely)"]
    assert "present" not in mc.to_dict()


@pytest.mark.parametrize("score, out", [(0.5, False), (0.5001, True), (0.4999, False)])
def test_out_of_scope_exactly_at_the_ood_threshold(score, out):
    prediction = _post([0.125, 0.625, 0.125, 0.125], _bundle(input_check=CHECK),
                       ood_score=np.array([score], np.float32))
    assert prediction.out_of_scope is out
    assert prediction.ood_score == pytest.approx(score)
    assert prediction.out_of_scope_message == ("not a chest X-ray" if out else None)
    data = prediction.to_dict()
    assert data["ood_score"] == round(float(np.float32(score)), 6)
    assert ("out_of_scope_message" in data) is out
    assert prediction.notes() == (["OUT OF SCOPE: not a chest X-ray - result not shown"] if out else [])


def test_ood_score_row_follows_the_index():
    outputs = {"probabilities": np.array([[0.625, 0.125, 0.125, 0.125]] * 2, np.float32),
               "ood_score": np.array([0.0, 0.875], np.float32)}
    bundle = _bundle(input_check=CHECK)
    assert not postprocess(outputs, bundle, index=0).out_of_scope
    assert postprocess(outputs, bundle, index=1).out_of_scope


def test_input_check_without_an_ood_score_is_an_error_not_a_silent_pass():
    """Before: the check was skipped and every image counted as in scope."""
    bundle = _bundle(input_check=CHECK)
    probs = np.array([[0.625, 0.125, 0.125, 0.125]], np.float32)
    for outputs in ({"probabilities": probs}, {"probabilities": probs, "ood_score": None}):
        with pytest.raises(BackendError) as info:
            postprocess(outputs, bundle)
        assert "declares an input check but the runner returned no ood_score" in str(info.value)
        assert "Fix: re-export the bundle" in str(info.value) and "'ood_score'" in str(info.value)


def test_without_an_input_check_an_ood_score_is_ignored():
    prediction = _post([0.125, 0.625, 0.125, 0.125], _bundle(), ood_score=np.array([0.99], np.float32))
    assert not prediction.out_of_scope and prediction.ood_score is None
    assert "ood_score" not in prediction.to_dict()


def test_prediction_to_dict_rounding_and_fields():
    quality = Quality([("blurry", 12.3456)], 12.3456, 100.0, 0.0, 0.0)
    prediction = postprocess({"probabilities": np.array([[0.1234567, 0.8765433, 0, 0]], np.float32)},
                             _bundle(), quality=quality, backend="onnxruntime", latency_ms=12.3456)
    data = json.loads(json.dumps(prediction.to_dict()))
    assert data["latency_ms"] == 12.35 and data["backend"] == "onnxruntime"
    assert data["probabilities"]["a"] == round(float(np.float32(0.1234567)), 6)
    assert data["top3"][0]["name"] == "B" and data["top1"] == "b"
    assert len(data["top3"]) == TOP_K == 3
    assert data["quality"] == quality.to_dict() and data["quality"]["ok"] is False
    assert data["uncertain"] is False and data["out_of_scope"] is False and data["task"] == "multiclass"
    assert prediction.notes() == [quality.message]
    assert postprocess({"probabilities": np.array([[1, 0, 0, 0]], np.float32)}, _bundle()).to_dict()[
        "latency_ms"] is None
    assert repr(prediction) == "Prediction(unit@1.0.0+000000000000, top3=[('B', 0.877), ('A', 0.123), " \
                               "('C', 0.0)], uncertain=False, out_of_scope=False)"


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def test_frame_preparer_ring_never_overwrites_the_frame_being_read(bundle):
    """Frame N+1 is prepared while the runner still reads frame N: they need different buffers."""
    frames = [np.full((40, 50, 3), value, np.uint8) for value in (10, 120, 230, 60)]
    for depth in (2, 3):
        preparer = FramePreparer(bundle, depth=depth)
        prepared = [preparer(frame) for frame in frames[:depth]]
        assert len({id(p.batch) for p in prepared}) == depth
        # every frame still alive holds its own pixels
        assert [float(p.batch.mean()) for p in prepared] == [float(f[0, 0, 0]) for f in frames[:depth]]
        again = preparer(frames[depth])
        assert again.batch is prepared[0].batch  # the ring wraps after `depth` frames
        assert prepared[1].batch.mean() == float(frames[1][0, 0, 0])
        assert prepared[0].quality is None


def test_prepare_checks_quality_only_when_thresholds_are_given(bundle):
    dark = np.full((40, 50, 3), 2, np.uint8)
    assert prepare(dark, bundle).quality is None
    prepared = prepare(dark, bundle, quality_thresholds=QualityThresholds())
    assert [name for name, _v in prepared.quality.problems] == ["too dark"]
    assert prepared.prepare_ms >= 0


class _Runner(object):
    """A runner that records its lifecycle around the real ONNX Runtime runner."""

    def __init__(self, inner):
        self.inner, self.bundle, self.events = inner, inner.bundle, []

    def load(self):
        self.events.append("load")
        self.inner.load()

    def close(self):
        self.events.append("close")
        self.inner.close()

    def infer(self, batch):
        return self.inner.infer(batch)

    def describe(self):
        return self.inner.describe()

    def notices(self):
        return ["note"]


def test_with_classifier_loads_closes_and_never_swallows_an_exception(bundle):
    pytest.importorskip("onnxruntime")
    from edge.backends import open_runner

    runner = _Runner(open_runner(bundle, backend="onnxruntime", precision="fp32"))
    classifier = Classifier(runner)
    with pytest.raises(KeyError), classifier as entered:
        assert entered is classifier and runner.events == ["load"]
        prediction = classifier.classify(np.full((40, 50, 3), 128, np.uint8))
        assert prediction.bundle_id == bundle.bundle_id and prediction.quality is None
        assert classifier.notices() == ["note"]
        raise KeyError("must reach the caller")
    assert runner.events == ["load", "close"]


def test_infer_prepared_latency_counts_the_preparation(bundle):
    pytest.importorskip("onnxruntime")
    from edge.backends import open_runner

    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        classifier = Classifier(runner, quality_thresholds=QualityThresholds(blur_threshold=1e9))
        # a config threshold above the bundle's calibrated one is lowered to it
        assert classifier.quality_thresholds.blur_threshold == bundle.manifest["quality"]["blur_threshold"]
        prepared = classifier.preparer(depth=2)(np.full((40, 50, 3), 128, np.uint8))
        slow = Prepared(prepared.batch, prepared.quality, 5000.0)
        prediction = classifier.infer_prepared(slow)
        assert 5000.0 <= prediction.latency_ms < 5000.0 + 60000.0
        assert prediction.quality is prepared.quality
        assert infer_prepared(slow, runner, bundle).backend == runner.describe()


def test_error_for_a_missing_ood_score_names_the_bundle_and_the_output():
    bundle = _bundle(input_check=dict(CHECK, output="distance"))
    with pytest.raises(BackendError) as info:
        postprocess({"probabilities": np.array([[0.625, 0.125, 0.125, 0.125]], np.float32)}, bundle)
    assert str(info.value) == (
        "unit@1.0.0+000000000000: the bundle declares an input check but the runner returned no ood_score. "
        "Fix: re-export the bundle (its model.onnx must output 'distance')")


def test_prediction_defaults_and_six_decimals():
    prediction = Prediction(["a", "b"], ["A", "B"], [0.12345678, 0.87654322], "multiclass", False, "id")
    assert not prediction.out_of_scope and prediction.present == [] and prediction.ood_score is None
    data = prediction.to_dict()
    assert data["top3"] == [{"name": "B", "probability": 0.876543, "word": "likely"},
                            {"name": "A", "probability": 0.123457, "word": "unlikely"}]
    scored = Prediction(["a"], ["A"], [1.0], "multiclass", False, "id", ood_score=0.12345678)
    assert scored.to_dict()["ood_score"] == 0.123457


class _Clock(object):
    """perf_counter stand-in: the test pins the unit (ms) and the sum, not how fast this machine is."""

    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_prepare_and_infer_times_are_milliseconds_and_add_up(bundle, monkeypatch):
    pytest.importorskip("onnxruntime")
    import edge.classify as classify_module
    from edge.backends import open_runner

    frame = np.full((40, 50, 3), 128, np.uint8)
    monkeypatch.setattr(classify_module.time, "perf_counter", _Clock(10.0, 10.5))
    prepared = prepare(frame, bundle)
    assert prepared.prepare_ms == 500.0
    with open_runner(bundle, backend="onnxruntime", precision="fp32") as runner:
        monkeypatch.setattr(classify_module.time, "perf_counter", _Clock(20.0, 20.25))
        assert infer_prepared(prepared, runner, bundle).latency_ms == 750.0


def test_prepare_uses_the_given_thresholds_not_the_defaults(bundle):
    grey = np.full((40, 50, 3), 128, np.uint8)
    strict = QualityThresholds(blur_threshold=0, dark_threshold=150, bright_threshold=200)
    assert [n for n, _v in prepare(grey, bundle, quality_thresholds=strict).quality.problems] == ["too dark"]
    preparer = FramePreparer(bundle, quality_thresholds=strict, depth=1)
    assert preparer(grey).quality.problems[0][0] == "too dark"


def test_classifier_writes_into_its_own_buffers_and_passes_its_options(bundle):
    pytest.importorskip("onnxruntime")
    from edge.classify import classify

    strict = QualityThresholds(blur_threshold=0, dark_threshold=150, bright_threshold=200)
    with Classifier.open(bundle, backend="onnxruntime", precision="fp32", quality_thresholds=strict,
                         threads=1) as classifier:
        assert classifier.runner.name == "onnxruntime" and classifier.runner.requested_precision == "fp32"
        assert classifier.runner.threads == 1
        prediction = classifier.classify(np.full((40, 50, 3), 77, np.uint8))
        assert float(classifier._buffer.mean()) == 77.0
        assert prediction.quality.problems[0][0] == "too dark"
        preparer = classifier.preparer(depth=3)
        assert len({id(preparer(np.full((40, 50, 3), 9, np.uint8)).batch) for _ in range(3)}) == 3
        assert preparer(np.full((40, 50, 3), 128, np.uint8)).quality.problems[0][0] == "too dark"
        out = np.zeros(bundle.description.input.shape(1), np.float32)
        classify(np.full((40, 50, 3), 33, np.uint8), classifier.runner, bundle, out=out)
        assert float(out.mean()) == 33.0
    with Classifier.open(bundle) as default:
        assert default.runner.requested_precision == "fp16"


def test_classifier_open_passes_the_backend_it_was_asked_for(bundle):
    """No TensorRT here: asking for it must fail, not quietly fall back to another backend."""
    pytest.importorskip("onnxruntime")  # else auto has nothing to fall back to either
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here (a Jetson): it can run the bundle")
    with pytest.raises(BackendError, match="backend tensorrt cannot run"):
        Classifier.open(bundle, backend="tensorrt", precision="fp16")
