"""The pointing game on NIH's real radiologist boxes and real images; real ONNX models where one runs."""

import json
import os
import shutil

import numpy as np
import pytest

from edge.errors import ConfigError
from tests.conftest import SHARED_DATA
from training import pointing

NIH = os.path.join(SHARED_DATA, "chest-nih")


@pytest.fixture(scope="module")
def boxes():
    path = os.path.join(NIH, "bboxes.csv")
    if not os.path.isfile(path):
        pytest.skip("../shared/data/chest-nih is not beside this checkout")
    return pointing.read_boxes(path)


def test_read_boxes_groups_the_real_file_by_image_and_finding(boxes):
    assert len({image for image, _finding in boxes}) == 436
    effusion = [key for key in boxes if key[1] == "Effusion"]
    assert len(effusion) == 75
    x, y, w, h = boxes[effusion[0]][0]
    assert 0 <= x < 256 and 0 <= y < 256 and w > 0 and h > 0


def test_a_file_without_the_box_columns_is_refused(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("image,label,x,y\na.png,Effusion,1,2\n")
    with pytest.raises(ConfigError, match="columns \\['finding', 'w', 'h'\\] missing"):
        pointing.read_boxes(str(path))


def test_inside_includes_the_edges_only():
    box = (10.0, 20.0, 5.0, 4.0)
    for point in [(10, 20), (15, 24), (12, 22)]:
        assert pointing.inside(point, box)
    for point in [(9.99, 22), (15.01, 22), (12, 19.99), (12, 24.01)]:
        assert not pointing.inside(point, box)


def _peak_at(x, y, classes, finding, size=256):
    """heatmap_of whose map of ``finding`` peaks at pixel (x, y) of a size x size image (7x7 cells)."""
    def heatmap_of(image):
        maps = np.zeros((len(classes), 7, 7), dtype=np.float32)
        maps[classes.index(finding), int(y * 7 // size), int(x * 7 // size)] = 5.0
        return maps
    return heatmap_of


def test_peak_in_the_box_hits_and_peak_in_a_corner_misses(boxes):
    classes = ["Effusion", "No Finding"]
    # A box two map cells (2 x 256/7 px) wide and high holds the centre of the cell its centre is in.
    key = [k for k in boxes if k[1] == "Effusion" and min(boxes[k][0][2:]) >= 2 * 256 / 7.0][0]
    x, y, w, h = boxes[key][0]
    one = {key: boxes[key]}
    images = os.path.join(NIH, "images")
    hit = pointing.pointing_game(_peak_at(x + w / 2, y + h / 2, classes, "Effusion"), classes, one, images)
    assert hit["per_finding"]["Effusion"]["hits"] == 1 and hit["images"] == 1
    miss = pointing.pointing_game(_peak_at(0, 0, classes, "Effusion"), classes, one, images)
    assert miss["per_finding"]["Effusion"]["hits"] == 0
    assert miss["per_finding"]["all"]["ci95"][1] > 0.5  # one pair: the interval says how little it shows


def test_findings_the_model_lacks_are_counted_as_skipped(boxes):
    classes = ["Effusion", "Pneumonia"]
    subset = dict(list(boxes.items())[:40])
    result = pointing.pointing_game(lambda image: np.ones((2, 7, 7), np.float32), classes, subset,
                                    os.path.join(NIH, "images"))
    used = sum(e["pairs"] for f, e in result["per_finding"].items() if f != "all")
    assert used + sum(result["skipped_findings"].values()) == 40
    # A flat map peaks at the first pixel (0, 0): no real box starts at the corner.
    assert result["per_finding"]["all"]["hits"] == 0


def test_score_pairs_rates_and_baselines():
    report = pointing.score_pairs([("A", True, False, 0.1), ("A", False, True, 0.3), ("B", True, True, 0.2)])
    assert report["A"]["hits"] == 1 and report["A"]["pairs"] == 2 and report["A"]["rate"] == 0.5
    assert report["A"]["centre_baseline"]["hits"] == 1
    assert abs(report["A"]["random_point_baseline"] - 0.2) < 1e-12
    assert report["all"]["hits"] == 2 and report["all"]["pairs"] == 3


def test_a_bundle_without_a_heatmap_is_refused(tiny_bundle):
    pytest.importorskip("onnxruntime")
    from edge.bundle import load_lab_bundle

    with pytest.raises(ConfigError, match="has no heatmap output.*--heatmap"):
        pointing.onnx_heatmaps(load_lab_bundle(tiny_bundle))


def test_main_runs_a_real_heatmap_bundle(test_artifacts, synth_images, tmp_path, capsys):
    """The test checkpoint exported with its heatmap, on boxes drawn round the synthetic shapes."""
    pytest.importorskip("torch")
    from export.onnx_export import export_bundle

    bundle = export_bundle(os.path.join(test_artifacts.root, "run", "best.pt"), str(tmp_path / "hm"),
                           heatmap=True, golden=False)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rows = ["image,finding,x,y,w,h"]
    for name in ("circle", "square"):
        source = synth_images[name][0]
        target = data / "images" / os.path.basename(source)
        shutil.copyfile(source, str(target))
        rows.append("{},{},0,0,96,96".format(target.name, name))  # the whole 96x96 image: always a hit
    rows.append("{},Effusion,0,0,10,10".format(target.name))
    (data / "bboxes.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    assert pointing.main([bundle, "--data", str(data), "--json", str(out)]) == 0
    line = capsys.readouterr().out
    assert "circle: 1/1 = 100.0%" in line and "all: 2/2" in line
    assert '"Effusion": 1' in out.read_text()
    assert pointing.main([str(tmp_path / "none"), "--data", str(data)]) == 1
    assert "pointing game:" in capsys.readouterr().out


def test_images_the_model_learnt_from_are_left_out(boxes, tmp_path):
    key = [k for k in boxes if k[1] == "Effusion"][0]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [{"path": "images/" + key[0]}], "val": ["other.png"],
                                 "test": [{"path": "kept.png"}]}))
    assert pointing.trained_on(str(split)) == {key[0], "other.png"}
    one = {key: boxes[key]}
    flat = lambda image: np.ones((1, 7, 7), np.float32)  # noqa: E731
    result = pointing.pointing_game(flat, ["Effusion"], one, os.path.join(NIH, "images"),
                                    pointing.trained_on(str(split)))
    assert result["excluded"] == 1 and result["images"] == 0 and result["per_finding"]["all"]["pairs"] == 0
