"""The contrast trial for the adult module (recipes.contrast_chest, ``contrast_trial --module chest``): the
DICOM-stretch proxy is what the kiosk shows for a DICOM without a window, the change / degradation /
comparison records at their boundaries, the module table, and both modules' candidates on a small real head
(the child's record keeps the fields of its committed contrast-trial.json)."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from recipes import contrast_chest, contrast_trial
from recipes.config import ROOT, recipe_for
from training.data import Sample

CLASSES = ["Effusion", "No Finding", "Pneumonia", "Pneumothorax"]


def test_dicom_stretch_is_what_a_dicom_without_a_window_shows(real_xray, tmp_path):
    """tests/edge/test_dicom.py's "mono2-no-window": 12-bit values of the PNG, no window -> the range."""
    import cv2

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from edge.imageio import read_image

    grey = cv2.imread(real_xray, cv2.IMREAD_GRAYSCALE)
    grey = np.clip(grey.astype(np.int32) * 3 // 4 + 20, 0, 255).astype(np.uint8)  # a range short of 0-255
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, generate_uid(), "CR"
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 1, "MONOCHROME2", 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PixelData = (grey.astype(np.uint16) * 16).tobytes()
    path = str(tmp_path / "no-window.dcm")
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    shown = read_image(path).image
    proxy = contrast_chest.dicom_stretch(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert shown.shape == proxy.shape
    assert int(np.abs(shown.astype(np.int16) - proxy.astype(np.int16)).max()) <= 1
    assert int(np.abs(proxy.astype(np.int16) - grey[:, :, None].astype(np.int16)).max()) > 10
    flat = np.full((4, 4, 3), 90, dtype=np.uint8)
    assert contrast_chest.dicom_stretch(flat) is flat


def test_probability_change_counts_images_over_the_tolerance_at_its_boundary():
    clean = np.zeros((4, 4))
    stretched = clean.copy()
    stretched[1, 0] = contrast_chest.DICOM_TOLERANCE  # exactly at the tolerance: not over it
    stretched[2, 3] = np.nextafter(contrast_chest.DICOM_TOLERANCE, 1.0)
    stretched[3, 1] = -0.5
    change = contrast_chest.probability_change(CLASSES, clean, stretched)
    assert change["over_tolerance"] == 0.5 and change["images"] == 4
    assert change["per_class"]["No Finding"] == {"mean": 0.125, "max": 0.5}
    assert change["per_class"]["Effusion"]["max"] == 0.02
    assert change["mean"] == pytest.approx(round((0.02 + 0.02 + 0.5) / 16, 4), abs=1e-4)


def _labelled(count, seed=0):
    """Samples of 2 images per patient, 4 classes in turn; scores that rank each image's class first."""
    rng = np.random.RandomState(seed)
    samples = [Sample("x{}.png".format(i), (CLASSES[i % 4],), "p{}".format(i // 2)) for i in range(count)]
    truth = np.array([i % 4 for i in range(count)])
    probs = rng.dirichlet(np.ones(4), count)
    probs[np.arange(count), truth] += 0.6
    return samples, truth, probs / probs.sum(axis=1, keepdims=True)


def test_degradation_of_the_same_scores_is_zero_and_of_reversed_scores_negative():
    samples, truth, probs = _labelled(48)
    same = contrast_chest.degradation(samples, CLASSES, probs, probs.copy(), truth, draws=20)
    assert same["minus_clean"]["macro"] == [0.0, 0.0, 0.0]
    assert same["auroc"]["macro"] == pytest.approx(np.mean([same["auroc"][c] for c in CLASSES]), abs=1e-4)
    worse = contrast_chest.degradation(samples, CLASSES, probs, 1.0 - probs, truth, draws=20)
    assert worse["minus_clean"]["macro"][2] < 0 and worse["auroc"]["macro"] < 0.5


def test_compare_pairs_every_mode_with_none_and_drops_the_scores():
    samples, _truth, probs = _labelled(48)
    rows = [{"mode": "equalize", "_oof": probs[::-1].copy()}, {"mode": "none", "_oof": probs},
            {"mode": "clahe", "_oof": probs.copy()}]
    out = contrast_chest.compare(rows, samples, CLASSES, draws=20)
    assert [sorted(r) for r in out] == [["mode", "versus_none"], ["mode"], ["mode", "versus_none"]]
    assert out[2]["versus_none"]["macro"] == [0.0, 0.0, 0.0]
    assert out[0]["versus_none"]["macro"][0] < -0.1
    alone = contrast_chest.compare([{"mode": "clahe", "_oof": probs}], samples, CLASSES, draws=5)
    assert alone == [{"mode": "clahe"}]  # nothing to pair with


def test_the_trial_table_and_an_unknown_module():
    child, adult = contrast_trial.trial_for("pediatric-pneumonia"), contrast_trial.trial_for("chest")
    assert list(child[0]) == ["exposure", "processing"] and child[1] is contrast_trial.candidate
    assert list(adult[0]) == ["exposure", "processing", "dicom_stretch"]
    with pytest.raises(ConfigError, match=r"no scoring for module 'skin'\. Fix: use one of \['chest', "):
        contrast_trial.trial_for("skin")


def test_the_cli_refuses_an_unknown_module_in_one_line_before_any_work(capsys):
    assert contrast_trial.main(["--module", "skin"]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "'skin'" in captured.err and "Fix:" in captured.err


def _setup(module, classes, count=60):
    """A small real setup: 2 images per patient, embeddings = mean colour + a class-dependent level."""
    rng = np.random.RandomState(1)
    recipe = recipe_for(module, head_epochs=30, head_lr=0.05)
    files = [Sample("f{}.png".format(i), (classes[i % len(classes)],), "p{}".format(i // 2))
             for i in range(count)]
    level = np.array([40 + 170 * (i % len(classes)) / len(classes) for i in range(count)])

    def images(n, shift=0.0):
        base = (level[:n] + shift)[:, None, None, None] + rng.normal(0, 30, (n, 3, 8, 8))
        return torch.from_numpy(np.clip(base, 0, 255).astype(np.uint8))

    torch.manual_seed(0)
    net = SimpleNamespace(backbone=SimpleNamespace(head=torch.nn.Linear(3, len(classes))))
    setup = SimpleNamespace(recipe=recipe, classes=classes, files=files, net=net, photo_samples=files[:20],
                            chosen=list(range(0, count, 3)))
    raw = {"files": images(count), "photo": images(20, 5.0), "negatives": (["wall"], images(1)[:, :, :1, :1]
                                                                           .expand(1, 3, 8, 8).contiguous()),
           "val_files": images(10)}
    for name in contrast_trial.trial_for(module)[0]:
        raw[name] = images(count, 15.0)[::3]
    return setup, raw


class _Cache(object):
    def embed(self, forward, images, log=None):
        return forward(images.float())


@pytest.mark.parametrize("module", ["pediatric-pneumonia", "chest"])
def test_each_modules_candidate_on_a_small_real_head(module, monkeypatch):
    from recipes import photo_data

    monkeypatch.setattr(photo_data, "embedding_cache", lambda recipe: _Cache())
    from training.modules import get_module

    setup, raw = _setup(module, list(get_module(module).classes))
    proxies, scorer, comparison = contrast_trial.trial_for(module)
    def forward(x):
        return (x.mean(dim=(2, 3)) - 128.0) / 40.0

    rows = [scorer(setup, raw, mode, forward) for mode in ("none", "equalize")]
    rows = comparison(rows, setup.files, setup.classes)
    if module == "pediatric-pneumonia":  # the fields of the child's committed trial, unchanged
        path = os.path.join(ROOT, "docs", "models", "pediatric-pneumonia", "contrast-trial.json")
        with open(path, encoding="utf-8") as handle:
            committed = json.load(handle)["candidates"][0]
        assert list(rows[0]) == list(committed)
        assert sorted(rows[0]["exposure"]) == sorted(committed["exposure"])
        return
    assert list(rows[0]) == ["mode", "embed_seconds", "cv", "pooled_auroc", "exposure", "processing",
                             "dicom_stretch", "blank"]
    assert "versus_none" in rows[1] and "_oof" not in rows[0]
    assert rows[0]["dicom_stretch"]["images"] == 20 and rows[0]["blank"]["negatives"] == 1
    assert len(rows[0]["cv"]["macro_auroc"]["folds"]) == setup.recipe.cv_folds
    assert rows[0]["cv"]["macro_auroc"]["mean"] > 0.6  # the class levels are learnable
    json.dumps(rows)
