"""training.photo_eval: the statistics it reports and its CLI's refusal path (the full scoring run is
what docs/models/photographed.md records; it takes minutes)."""

import json
import os

import numpy as np
import pytest

from training.photo_eval import auroc_table, cross_validated, main, markdown, wilson

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wilson_interval_known_values():
    rate, low, high = wilson(2, 92)
    assert rate == pytest.approx(0.0217, abs=1e-4)
    assert low == pytest.approx(0.0060, abs=1e-3) and high == pytest.approx(0.0758, abs=1e-3)
    assert wilson(0, 10)[1] == 0.0 and wilson(10, 10)[2] == pytest.approx(1.0)
    assert wilson(0, 0) == (None, None, None)


def test_auroc_table_pairs_files_and_frames():
    rng = np.random.RandomState(0)
    labels = [["a"] if i % 2 else ["b"] for i in range(60)]
    truth = np.array([1.0 if i % 2 else 0.0 for i in range(60)])
    files = np.stack([truth + rng.normal(0, 0.3, 60), 1 - truth], axis=1)
    frames = np.stack([rng.uniform(size=60), 1 - truth], axis=1)  # the photo lost class a
    table = auroc_table(["a", "b"], labels, files, frames)
    assert table["a"]["files"][0] > 0.9 and table["a"]["frames"][0] < 0.75
    assert table["a"]["difference"][2] < 0  # the whole interval below zero: a real loss
    assert table["b"]["difference"][0] == pytest.approx(0.0)
    assert table["a"]["positives"] == 30


def test_report_only_without_results_is_one_line_error(tmp_path, capsys):
    code = main(["--bundles", os.path.join(ROOT, "models", "chest"), "--out", str(tmp_path), "--report-only",
                 "--doc", str(tmp_path / "x.md")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Fix: run without --report-only" in err[0]


def test_committed_results_render_the_committed_report(tmp_path):
    folder = os.path.join(ROOT, "docs", "models", "photographed")
    results = []
    for name in ("chest", "pediatric-pneumonia"):
        with open(os.path.join(folder, name + ".json")) as handle:
            results.append(json.load(handle))
    doc = os.path.join(ROOT, "docs", "models", "photographed.md")
    extra = {name: cross_validated(doc, name) for name in ("chest", "pediatric-pneumonia")}
    with open(doc) as handle:
        assert markdown(results, extra) == handle.read()


def test_the_cross_validated_section_is_read_from_beside_the_doc(tmp_path):
    folder = os.path.join(ROOT, "docs", "models", "photographed")
    with open(os.path.join(folder, "chest.json")) as handle:
        result = json.load(handle)
    doc = str(tmp_path / "photographed.md")
    assert cross_validated(doc, "chest") is None
    (tmp_path / "chest").mkdir()
    (tmp_path / "chest" / "camera-cv.md").write_text("746 images, the table\n")
    text = markdown([result], {"chest": cross_validated(doc, "chest")})
    title = "### `chest`: the camera path cross-validated over all its images"
    assert title + "\n\n746 images, the table\n" in text
    assert "cross-validated" not in markdown([result])
