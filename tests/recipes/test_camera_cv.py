"""recipes.camera_cv / camera_data: every image scored once, by a fold that never trained on it; the
input check's threshold rules; the test split's evaluation frames are photo_eval's frames."""

import glob
import os

import numpy as np
import pytest
import torch

from recipes import camera_data, photo_data
from recipes.camera_cv import THRESHOLDS, camera_cross_validate
from recipes.camera_data import Part
from recipes.config import recipe_for
from training.data import Sample

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data")
CLASSES = ["Normal", "Pneumonia"]


def _images(n, rng):
    grey = rng.integers(40, 220, (n, 1, 8, 8)).astype(np.uint8)
    return torch.from_numpy(np.repeat(grey, 3, axis=1))


def _parts(frame_shift=0.0, n_patients=60):
    rng = np.random.default_rng(0)
    samples = [Sample("p{}.png".format(p), (CLASSES[p % 2],), "p{}".format(p)) for p in range(n_patients)]
    y = torch.tensor([p % 2 for p in range(n_patients)])
    x = torch.tensor(rng.normal(0, 1, (n_patients, 8)), dtype=torch.float32) + 3.0 * y[:, None].float()
    crops_x = x + torch.tensor(rng.normal(0, 0.3, x.shape), dtype=torch.float32)
    far = torch.tensor(rng.normal(40, 1, (30, 8)), dtype=torch.float32)
    parts = {
        "files": Part(samples, _images(n_patients, rng), x, y),
        "frames": Part(samples, _images(n_patients, rng), x + frame_shift, y),
        "crops": Part(samples, _images(n_patients, rng), crops_x, y),
        "other_train": Part(list(range(30)), _images(30, rng), far),
        "negatives": Part(list(range(30)), _images(30, rng), -far),
        "other_test": Part(list(range(20)), _images(20, rng), far[:20] + 0.5),
        "non_xray": Part(list(range(20)), _images(20, rng), -far[:20] - 0.5),
    }
    return parts


def _run(parts, threshold):
    recipe = recipe_for("pediatric-pneumonia", head_epochs=30, head_lr=0.05, cv_folds=5)
    head = torch.nn.Linear(8, 2)
    initial = {k: v.clone() for k, v in head.state_dict().items()}
    return camera_cross_validate(recipe, head, initial, parts, CLASSES, "multiclass", threshold=threshold)


@pytest.mark.parametrize("threshold", sorted(THRESHOLDS))
def test_frames_equal_to_files_score_equal_and_out_of_scope_sets_are_refused(threshold):
    result = _run(_parts(), threshold)
    refused = result["refused"]
    assert refused["files"]["of"] == refused["frames"]["of"] == 60  # every image scored exactly once
    assert refused["files"]["count"] == refused["frames"]["count"] <= 6
    assert result["auroc"]["Pneumonia"]["difference"][0] == 0.0
    assert result["auroc"]["Pneumonia"]["files"][0] > 0.95
    assert refused["non_xray"]["of"] == refused["other_test"]["of"] == 100  # 20 per fold's check
    assert refused["non_xray"]["rate"] == 1.0 and refused["other_test"]["lowest_fold"] == 1.0


def test_shifted_frames_are_refused_and_measured_as_such():
    result = _run(_parts(frame_shift=25.0), "val")
    assert result["refused"]["frames"]["rate"] == 1.0
    assert result["refused"]["files"]["rate"] < 0.2


def test_out_of_fold_threshold_accepts_at_least_the_own_images_the_validation_rule_does():
    parts = _parts()
    base, oof = _run(parts, "val"), _run(parts, "oof")
    assert oof["refused"]["files"]["count"] <= base["refused"]["files"]["count"] + 1


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside this checkout")
def test_test_split_eval_frames_are_photo_evals_frames(tmp_path, monkeypatch):
    from edge.description import InputSpec
    from training.photo_crops import camera_crop
    from training.photograph import photograph_file

    monkeypatch.setattr(photo_data, "CROPS_DIR", str(tmp_path))
    paths = sorted(glob.glob(os.path.join(SHARED, "chest-nih", "images", "*.png")))[:2]
    samples = [Sample(p, ("No Finding",), "p{}".format(i)) for i, p in enumerate(paths)]
    split = {"train": [], "val": [], "test": samples}
    spec = InputSpec(224, 224, colour="RGB")
    frames = camera_data.eval_frames(recipe_for("chest", module="tiny"), split, spec)
    assert frames["test"].samples == samples and len(frames["train"].samples) == 0
    for index, path in enumerate(paths):
        crop = camera_crop(photograph_file(path, 0, index).frame)[0]
        expected = photo_data.input_batch([crop], spec)[0]
        assert torch.equal(frames["test"].images[index], expected)
    assert os.path.isfile(os.path.join(str(tmp_path), "tiny-eval-test-s0-224.pt"))


def test_report_renders_the_results_and_refuses_a_missing_file(tmp_path, capsys):
    import json

    from recipes.camera_cli import main

    result = _run(_parts(), "val")
    result["settings"] = {"renders": 1, "threshold": "val"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    doc = tmp_path / "r.md"
    assert main(["--report", str(path), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "60 images (5 patient folds;" in text and "| 1 render(s), `val` threshold |" in text
    assert "| Pneumonia (30) | " in text and "+0.000 [+0.000, +0.000]" in text
    result["settings"]["contrast"] = "stretch"
    path.write_text(json.dumps(result))
    assert main(["--report", str(path), "--doc", str(doc)]) == 0
    assert "| 1 render(s), `val` threshold, contrast `stretch` |" in doc.read_text()
    capsys.readouterr()
    assert main(["--report", str(tmp_path / "missing.json"), "--doc", str(doc)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.json cannot be read" in err and "Fix:" in err
    assert main(["--report", str(path)]) == 2


def test_model_card_lines_come_from_the_committed_result(tmp_path):
    import json

    from recipes.card_cv import camera_cv_lines

    assert camera_cv_lines("chest", folder=str(tmp_path)) == []
    result = _run(_parts(), "val")
    (tmp_path / "chest").mkdir()
    (tmp_path / "chest" / "camera-cv.json").write_text(json.dumps(result))
    text = "\n".join(camera_cv_lines("chest", folder=str(tmp_path)))
    assert "Cross-validated over all 60 images (5 patient folds" in text
    assert "| AUROC Pneumonia (30 positives) |" in text and "| refused as out of scope | " in text
    assert "lowest fold 100.0%" in text


def test_evaluation_frames_are_stored_raw_and_normalised_after_loading(monkeypatch):
    """``camera_cli --contrast M``: the stored frames (raw, the same files as for no normalisation) are fed
    through the mode; no stored frame made for one normalisation serves another."""
    from recipes.data import normalise_inputs

    rng = np.random.default_rng(3)
    raw = torch.from_numpy(rng.integers(60, 160, (2, 3, 224, 224)).astype(np.uint8))
    names = []

    def fake_stored(name, make):
        names.append(name)
        return {"paths": ["a", "b"], "names": ["wall", "hand"], "images": raw}

    monkeypatch.setattr(camera_data, "stored", fake_stored)
    split = {part: [Sample("a", ("Effusion",), "1"), Sample("b", ("Effusion",), "2")]
             for part in ("train", "val", "test")}
    plain, stretch = recipe_for("chest"), recipe_for("chest", contrast="stretch")
    assert camera_data._spec(plain).contrast == "none" and camera_data._spec(stretch).contrast == "stretch"
    for recipe in (plain, stretch):
        frames = camera_data.eval_frames(recipe, split, camera_data._spec(recipe))
        others = camera_data.non_xray_frames(camera_data._spec(recipe))
        for part in list(frames.values()) + [others]:
            assert torch.equal(part.images, normalise_inputs(raw, recipe.contrast))
    assert not torch.equal(normalise_inputs(raw, "stretch"), raw)
    assert names[:4] == names[4:] and "contrast" not in " ".join(names)
