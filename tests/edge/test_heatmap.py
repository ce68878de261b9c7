"""edge.heatmap: stretching, colouring and overlaying a class-activation map on a real X-ray."""

import numpy as np
import pytest

from edge import heatmap
from edge.classify import Prediction
from edge.errors import BackendError
from edge.preprocess import load_image


def _prediction(maps=None, probabilities=(0.1, 0.7, 0.2)):
    return Prediction(["a", "b", "c"], ["A", "B", "C"], probabilities, "multiclass", False, "m@1+x",
                      heatmap=maps)


def _maps():
    maps = np.zeros((3, 7, 7), dtype=np.float32)
    maps[1, 2, 5] = 4.0  # class b peaks in row 2, column 5
    maps[0, 6, 0] = 9.0
    return maps


def test_class_map_defaults_to_the_top_class():
    prediction = _prediction(_maps())
    assert heatmap.class_map(prediction)[2, 5] == 4.0
    assert heatmap.class_map(prediction, 0)[6, 0] == 9.0


def test_no_heatmap_is_a_clear_error():
    with pytest.raises(BackendError, match="no heatmap.*--heatmap"):
        heatmap.class_map(_prediction())


def test_peak_lands_in_the_cell_it_came_from():
    x, y = heatmap.heatmap_peak(_maps()[1], 256, 256)
    cell = 256 / 7.0
    assert int(x // cell) == 5 and int(y // cell) == 2
    # a non-square image: the map is stretched like the image was
    x, y = heatmap.heatmap_peak(_maps()[1], 140, 700)
    assert int(x // 100) == 5 and int(y // 20) == 2


def test_normalise_flat_and_range():
    assert heatmap.normalise(np.full((2, 2), 3.0)).max() == 0.0
    scaled = heatmap.normalise(np.array([[-2.0, 0.0], [2.0, 1.0]]))
    assert scaled.min() == 0.0 and scaled.max() == 1.0 and scaled[0, 1] == 0.5


def test_overlay_on_a_real_grey_xray(real_xray):
    image = load_image(real_xray)
    grey = image[:, :, 0] if image.ndim == 3 else image
    out = heatmap.prediction_overlay(_prediction(_maps()), grey, alpha=0.5)
    assert out.shape == grey.shape + (3,) and out.dtype == np.uint8
    x, y = heatmap.heatmap_peak(_maps()[1], grey.shape[0], grey.shape[1])
    # JET: the peak is red (BGR: much more red than blue), a far corner blue
    assert int(out[y, x, 2]) - int(out[y, x, 0]) > 60
    assert int(out[-1, 0, 0]) - int(out[-1, 0, 2]) > 30
    assert np.array_equal(heatmap.overlay_heatmap(grey, _maps()[1], alpha=0.0)[:, :, 0], grey)


@pytest.mark.parametrize("alpha", [-0.01, 1.01])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        heatmap.overlay_heatmap(np.zeros((8, 8), np.uint8), _maps()[1], alpha)


def test_heatmap_frame_only_when_asked_for_a_confident_result(real_xray):
    from edge.overlay import OverlayState, heatmap_frame

    frame = load_image(real_xray)
    prediction = _prediction(_maps())
    on, off = OverlayState(heatmap=True), OverlayState()
    shown = heatmap_frame(prediction, on, "ok", frame)
    assert shown.shape == frame.shape and not np.array_equal(shown, frame)
    assert heatmap_frame(prediction, off, "ok", frame) is None
    assert heatmap_frame(prediction, on, "uncertain", frame) is None
    assert heatmap_frame(_prediction(), on, "ok", frame) is None


def test_heatmap_frame_uses_the_located_crop(real_xray):
    from edge.overlay import OverlayState, heatmap_frame

    class Located(object):
        crop = load_image(real_xray)[10:110, 20:140]

    prediction = _prediction(_maps())
    prediction.localisation = Located()
    shown = heatmap_frame(prediction, OverlayState(heatmap=True), "ok", np.zeros((300, 300, 3), np.uint8))
    assert shown.shape[:2] == (100, 120)


def test_a_saved_record_gives_back_the_top_map_for_the_referral_sheet(real_xray):
    import json

    record = json.loads(json.dumps(_prediction(_maps()).to_dict()))  # as a case log stores it
    restored = heatmap.record_map(record)
    assert restored.shape == (7, 7) and restored[2, 5] == 4.0 and record["heatmap"]["class"] == "b"
    assert heatmap.record_map(_prediction().to_dict()) is None and heatmap.record_map(None) is None
    image = load_image(real_xray)
    assert heatmap.overlay_heatmap(image, restored).shape == image.shape[:2] + (3,)
