"""benchmarks/ort_threads.py: one session per setting, interleaved, JSON + markdown (not a timing test)."""

import json

import pytest

from benchmarks import ort_threads

pytest.importorskip("onnxruntime")


def test_settings_are_parsed():
    assert ort_threads.parse_settings("default:on, 1:off,2") == [
        ("default threads, spinning on", None, True),
        ("1 threads, spinning off", 1, False),
        ("2 threads, spinning on", 2, True),
    ]


def test_every_setting_is_measured_in_the_same_rounds(tiny_bundle, tmp_path):
    out = tmp_path / "results" / "ort.json"
    code = ort_threads.main(["--quick", "--bundle", tiny_bundle, "--settings", "default:on,1:off",
                             "--out-json", str(out), "--doc", str(tmp_path / "b.md")])
    assert code == 0
    result = json.loads(out.read_text())
    settings = [row["setting"] for row in result["rows"]]
    assert settings == ["default threads, spinning on", "1 threads, spinning off"]
    for row in result["rows"]:
        assert row["inference"]["n"] == row["quality_after"]["n"] == result["rounds"] * result["runs"]
    assert result["rows"][0]["speedup_vs_first"] == 1.0
    doc = (tmp_path / "b.md").read_text()
    assert "## ONNX Runtime CPU threads and spinning, synth-test" in doc
    assert "| 1 threads, spinning off |" in doc
