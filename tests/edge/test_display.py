"""Honest numbers: percentages only for calibrated bundles' confident results, words otherwise (one table),
and `bundle verify` warnings for test metrics at chance level. Real bundle copies, real subprocesses."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge.bundle import (
    CALIBRATED_ECE_MAX,
    PERCENT,
    WORDS,
    Bundle,
    chance_level_warnings,
    display_mode,
    load_bundle,
    make_manifest,
)
from edge.classify import LIKELIHOOD_WORDS, likelihood_word, postprocess
from edge.description import InputSpec, ModelDescription
from edge.errors import BundleError
from edge.overlay import BAR, BAR_BG, Layout, OverlayState, draw_overlay, row_value
from tests.make_test_bundle import resign

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = (800, 480)


def _manifest(calibration=None, test=None, validation_ece=None):
    description = ModelDescription("tiny", "multiclass", ["a", "b", "c", "d"], InputSpec(16, 16))
    metrics = {}
    if test is not None:
        metrics["test"] = test
    if validation_ece is not None:
        metrics["calibration"] = {"ece_after": validation_ece}
    training = {"data": {}, "metrics": metrics}
    manifest = make_manifest(description, "chest", "Chest", "0" * 64, training=training,
                             extra={"calibration": calibration} if calibration is not None else None)
    return manifest, description


@pytest.mark.parametrize("calibration, mode", [
    ({"ece_cv": CALIBRATED_ECE_MAX, "display": "percent"}, PERCENT),
    ({"ece_cv": 0.0501, "display": "percent"}, WORDS),  # asks for percentages, not calibrated enough
    ({"ece_cv": 0.01, "display": "words"}, WORDS),
])
def test_display_mode_from_the_calibration_section(calibration, mode):
    assert display_mode(_manifest(calibration)[0])[0] == mode


@pytest.mark.parametrize("kwargs, mode, reason", [
    ({"test": {"ece": 0.05}}, PERCENT, "test ECE 0.050 <= 0.05"),
    ({"test": {"ece": 0.0501}}, WORDS, "test ECE 0.050 > 0.05"),
    ({"test": {"ece": 0.17}, "validation_ece": 0.01}, WORDS, "test ECE"),  # the card's test ECE comes first
    ({"validation_ece": 0.004}, PERCENT, "validation ECE after temperature"),
    ({}, WORDS, "no ECE recorded"),
])
def test_display_mode_without_the_section(kwargs, mode, reason):
    got, why = display_mode(_manifest(**kwargs)[0])
    assert got == mode and reason in why


def test_the_shipped_chest_bundle_shows_words_and_the_child_one_percent():
    """From their model cards' test ECE (0.170 and 0.009 when this was written)."""
    for module in ("chest", "pediatric-pneumonia"):
        with open(os.path.join(ROOT, "models", module, "manifest.json")) as handle:
            manifest = json.load(handle)
        ece = manifest["training"]["metrics"]["test"]["ece"]
        assert display_mode(manifest)[0] == (PERCENT if ece <= CALIBRATED_ECE_MAX else WORDS)


@pytest.mark.parametrize("p, word", [(1.0, "likely"), (0.70, "likely"), (0.6999, "possible"),
                                     (0.30, "possible"), (0.2999, "unlikely"), (0.0, "unlikely")])
def test_likelihood_words_at_their_boundaries(p, word):
    assert likelihood_word(p) == word
    assert [w for _low, w in LIKELIHOOD_WORDS] == ["likely", "possible", "unlikely"]


def _prediction(probabilities, calibration, abstain=0.5):
    manifest, description = _manifest(calibration)
    description = description.replace(abstain_threshold=abstain)
    manifest["model"] = description.to_dict()
    bundle = Bundle("/nonexistent", manifest, description, None)
    return postprocess({"probabilities": np.array([probabilities], np.float32)}, bundle)


CALIBRATED = {"ece_cv": 0.03, "display": "percent"}
NOT_CALIBRATED = {"ece_cv": 0.12, "display": "words"}


def test_uncertain_never_shows_a_percentage_even_when_calibrated():
    confident = _prediction([0.86, 0.08, 0.04, 0.02], CALIBRATED)
    uncertain = _prediction([0.45, 0.35, 0.1, 0.1], CALIBRATED)
    assert confident.shows_percent and confident.value_text(0.86) == "86%"
    assert uncertain.uncertain and not uncertain.shows_percent
    assert uncertain.value_text(0.45) == "possible" and row_value(uncertain, 0.45) == ("possible", None)
    assert uncertain.to_dict()["display"] == "words" and confident.to_dict()["display"] == "percent"


def _top3(canvas):
    return Layout(SIZE).top3.crop(canvas)


def _count(image, bgr, tolerance=12):
    return int((np.abs(image.astype(int) - np.array(bgr)).sum(axis=2) < tolerance).sum())


def test_screen_words_mode_draws_no_bars_and_no_percent():
    state = OverlayState(module_title="Chest", size=SIZE)
    with_numbers = draw_overlay(None, _prediction([0.86, 0.08, 0.04, 0.02], CALIBRATED), state)
    with_words = draw_overlay(None, _prediction([0.86, 0.08, 0.04, 0.02], NOT_CALIBRATED), state)
    uncertain = draw_overlay(None, _prediction([0.45, 0.35, 0.1, 0.1], CALIBRATED), state)
    # A bar is a solid rectangle: its track (BAR_BG) and fill cover hundreds of pixels; text does not.
    assert _count(_top3(with_numbers), BAR) > 50 and _count(_top3(with_numbers), BAR_BG, 3) > 300
    for words in (with_words, uncertain):
        assert _count(_top3(words), BAR) == 0 and _count(_top3(words), BAR_BG, 3) < 100
    assert not np.array_equal(_top3(with_numbers), _top3(with_words))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen([sys.executable, "-m", "edge"] + list(args), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _edited_copy(tiny_bundle, tmp_path, change):
    target = str(tmp_path / "bundle")
    shutil.copytree(tiny_bundle, target)
    path = os.path.join(target, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return resign(target)


def test_cli_shows_words_for_a_bundle_whose_calibration_does_not_hold(tiny_bundle, synth_images, tmp_path):
    pytest.importorskip("onnxruntime")
    words = _edited_copy(tiny_bundle, tmp_path, lambda m: m.update(calibration=NOT_CALIBRATED))
    image = synth_images["circle"][0]
    code, out, err = _cli("classify", "--bundle", words, "--backend", "onnxruntime", image)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(rows) == 3 and not any("%" in row for row in rows)
    assert rows[0].split()[-1] in ("likely", "possible", "unlikely")
    code, out, err = _cli("classify", "--bundle", tiny_bundle, "--backend", "onnxruntime", image)
    assert code == 0 and "%" in [line for line in out.splitlines() if line.strip().startswith("1.")][0]


@pytest.mark.parametrize("section, field", [
    ({"ece_cv": "low", "display": "percent"}, "calibration.ece_cv"),
    ({"ece_cv": 1.5, "display": "percent"}, "calibration.ece_cv"),
    ({"ece_cv": 0.02, "display": "numbers"}, "calibration.display"),
    ({"ece_cv": 0.02, "ece_cv_ci95": [0.05, 0.01], "display": "percent"}, "calibration.ece_cv_ci95"),
    ([0.02], "calibration"),
])
def test_a_malformed_calibration_section_is_refused(tiny_bundle, tmp_path, section, field):
    copy = _edited_copy(tiny_bundle, tmp_path, lambda m: m.update(calibration=section))
    with pytest.raises(BundleError) as error:
        load_bundle(copy)
    assert error.value.field == field


@pytest.mark.parametrize("test, expected", [
    ({"accuracy": 0.25}, ["test accuracy 25.0% <= chance 1/4"]),
    ({"accuracy": 0.2501, "accuracy_ci95": [0.25, 0.4]}, ["test accuracy's 95% CI reaches chance"]),
    ({"accuracy": 0.2501, "accuracy_ci95": [0.2501, 0.4]}, []),
    ({"macro_auroc": 0.5}, ["macro AUROC 0.500 <= 0.5"]),
    ({"macro_auroc": 0.62, "macro_auroc_ci95": [0.5, 0.74]},
     ["macro AUROC 95% CI [0.500, 0.740] includes 0.5"]),
    ({"macro_auroc": 0.62, "macro_auroc_ci95": [0.5001, 0.74]}, []),
    ({"per_class": {"b": {"auroc": 0.58, "auroc_ci95": [0.42, 0.7]}, "a": {"auroc": 0.9}}},
     ["b AUROC 95% CI [0.420, 0.700] includes 0.5"]),
])
def test_chance_level_warnings_at_their_boundaries(test, expected):
    lines = chance_level_warnings(_manifest(test=test)[0], 4)
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected):
        assert line.startswith(start), line


def test_bundle_verify_warns_about_a_bundle_at_chance_level(tiny_bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    made_up = {"accuracy": 0.24, "accuracy_ci95": [0.15, 0.35], "macro_auroc": 0.55,
               "macro_auroc_ci95": [0.45, 0.65]}
    copy = _edited_copy(tiny_bundle, tmp_path, lambda m: m["training"]["metrics"].update(test=made_up))
    code, out, err = _cli("bundle", "verify", copy, "--backend", "onnxruntime", "--precision", "fp32")
    assert code == 0, err  # a warning, not a failure: the bundle is intact
    warnings = [line for line in out.splitlines() if "[WARN] test metrics at chance level" in line]
    assert len(warnings) == 2 and "24.0% <= chance 1/4" in warnings[0] and "includes 0.5" in warnings[1]
    assert "[PASS] numbers on screen: percent (validation ECE after temperature" in out
    code, out, err = _cli("bundle", "verify", tiny_bundle, "--backend", "onnxruntime", "--precision", "fp32")
    assert code == 0 and "[WARN]" not in out


def test_refusal_panel_names_the_suggested_module():
    check = {"output": "ood_score", "threshold": 1.0, "method": "test", "message": "Not a chest X-ray"}
    manifest, description = _manifest(CALIBRATED)
    description = description.replace(input_check=check)
    manifest["model"] = description.to_dict()
    bundle = Bundle("/nonexistent", manifest, description, None)
    outputs = {"probabilities": np.array([[0.86, 0.08, 0.04, 0.02]], np.float32),
               "ood_score": np.array([1.5], np.float32)}
    plain, suggested = postprocess(outputs, bundle), postprocess(outputs, bundle)
    suggested.suggested_module, suggested.suggested_title = "pediatric-pneumonia", "Chest X-ray (child)"
    assert suggested.suggestion_line("M") == ("This looks like an image for Chest X-ray (child) - press M "
                                              "to switch to it")
    assert "press M" not in plain.notes()[0] and len(plain.notes()) == 1
    assert suggested.notes()[1] == ("This looks like an image for Chest X-ray (child) - classify it with "
                                    "module 'pediatric-pneumonia'")
    state = OverlayState(module_title="Chest", size=SIZE)
    first, second = draw_overlay(None, plain, state), draw_overlay(None, suggested, state)
    assert _count(_top3(second), (255, 255, 255), 30) > 3 * max(1, _count(_top3(first), (255, 255, 255), 30))
    assert np.array_equal(Layout(SIZE).banner.crop(first), Layout(SIZE).banner.crop(second))
