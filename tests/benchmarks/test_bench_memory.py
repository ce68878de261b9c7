"""benchmarks/memory.py measures real processes (python -m edge classify / run) and writes JSON + markdown."""

import json

import pytest

from benchmarks import memory

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def result(tiny_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-memory")
    out = folder / "results" / "memory.json"
    code = memory.main(["--quick", "--bundle", tiny_bundle, "--backends", "onnxruntime",
                        "--out-json", str(out), "--doc", str(folder / "benchmarks.md")])
    assert code == 0
    data = json.loads(out.read_text())
    data["_doc"] = (folder / "benchmarks.md").read_text()
    return data


def test_each_case_ran_and_has_a_peak(result):
    cases = [row["case"] for row in result["rows"]]
    assert cases[0].startswith("python + libraries")
    assert any(c.startswith("medkiosk classify") for c in cases)
    assert any(c.startswith("kiosk loop") for c in cases)
    for row in result["rows"]:
        assert row["failures"] == 0, row["error"]
        # The launcher is far smaller than what it measures, so it cannot mask the peak.
        assert row["measurement_floor_mb"] < row["peak_rss_mb"]
    by_case = {row["case"].split(" (")[0]: row["peak_rss_mb"] for row in result["rows"]}
    # Loading a model and running adds memory on top of the libraries alone.
    assert by_case["medkiosk classify"] > by_case["python + libraries"]
    assert by_case["kiosk loop"] > by_case["python + libraries"]


def test_peak_is_this_process_tree_not_the_parent(result):
    """A child forked from the big test process would inherit its high-water mark; the launcher avoids it."""
    baseline = result["rows"][0]["peak_rss_mb"]
    assert baseline < 400


def test_goals_and_markdown(result):
    assert {g["case"].split(" (")[0] for g in result["goals"]} == {"medkiosk classify", "kiosk loop"}
    doc = result["_doc"]
    assert "## Memory (peak RSS), synth-test" in doc
    assert "| onnxruntime | fp32 | kiosk loop (20 frames, null:// output) |" in doc
    assert "Goal: < 500 MB peak RSS on ONNX Runtime CPU." in doc


def test_a_failing_process_is_reported_not_hidden(tmp_path):
    measured = memory.run_measured(["python3", "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"])
    assert measured["returncode"] == 3
    assert measured["stderr_tail"] == ["boom"]
