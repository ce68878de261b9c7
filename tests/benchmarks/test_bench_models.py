"""benchmarks/models.py runs end to end on tiny exports and writes well-formed JSON and markdown.

Not a timing test: it checks the script's plumbing (real exports, real ONNX Runtime runs, the
onnx-tool counter, the accuracy lookup and the regenerated document), never how fast anything is.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="models.py exports its bundles with torch")

from benchmarks import models  # noqa: E402
from benchmarks.common import ROOT  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-models")


def _metrics(path, arch, value, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"macro_auroc": value, "accuracy": 0.5, "recipe": {"arch": arch, "image_size": size}})
    )


def _shipped_arch(tiny_bundle):
    with open(os.path.join(tiny_bundle, "manifest.json")) as handle:
        return json.load(handle)["model"]["arch"]


@pytest.fixture(scope="module")
def result(run_dir, tiny_bundle):
    shipped = run_dir / "shipped"
    shipped.mkdir()
    shutil.copytree(tiny_bundle, str(shipped / "synth-test"))
    arch = _shipped_arch(tiny_bundle)
    # Evaluation reports as M's evaluation writes them (values are inputs of this test, not results).
    reports = run_dir / "reports"
    _metrics(reports / "synth-test" / "metrics.json", arch, 0.91, 64)
    _metrics(reports / "synth-test" / "baseline-resnet18" / "metrics.json", "resnet18", 0.80, 32)
    out = run_dir / "results" / "models.json"
    code = models.main(
        [
            "--quick",
            "--size",
            "32",
            "--archs",
            ",".join(sorted({"mobilenet_v3_small", "resnet18", "mobilenet_v3_small@64", arch})),
            "--references",
            "resnet18",
            "--goal-reference",
            "resnet18",
            "--export-dir",
            str(run_dir / "bundles"),
            "--shipped",
            str(shipped),
            "--reports",
            str(reports),
            "--out-json",
            str(out),
            "--doc",
            str(run_dir / "benchmarks.md"),
        ]
    )
    assert code == 0
    with open(str(out)) as handle:
        return json.load(handle)


def test_json_has_a_row_per_model_with_cost_and_latency(result, tiny_bundle):
    rows = {row["name"]: row for row in result["rows"]}
    expected = {"mobilenet_v3_small", "mobilenet_v3_small@64", "resnet18", "shipped:synth-test",
                _shipped_arch(tiny_bundle)}
    assert sorted(rows) == sorted(expected)
    assert rows["mobilenet_v3_small@64"]["input"] == "64x64 RGB"
    assert rows["mobilenet_v3_small@64"]["arch"] == "mobilenet_v3_small"
    for row in rows.values():
        assert row["latency"]["n"] == result["runs"] == 5
        lat = row["latency"]
        assert 0 < lat["min_ms"] <= lat["p25_ms"] <= lat["median_ms"] <= lat["p75_ms"] <= lat["p90_ms"]
        assert row["onnx_bytes"] == os.path.getsize(os.path.join(ROOT, row["bundle"], "model.onnx"))
        assert row["provider"] == "CPUExecutionProvider"
    assert rows["shipped:synth-test"]["input"] == "64x64 RGB"
    assert rows["resnet18"]["input"] == "32x32 RGB"
    assert rows["resnet18"]["speedup"]["resnet18"] == pytest.approx(1.0)
    ratio = rows["resnet18"]["latency"]["median_ms"] / rows["mobilenet_v3_small"]["latency"]["median_ms"]
    assert rows["mobilenet_v3_small"]["speedup_of_medians"]["resnet18"] == pytest.approx(ratio)
    spread = rows["mobilenet_v3_small"]["speedup_per_round"]["resnet18"]
    assert rows["mobilenet_v3_small"]["speedup"]["resnet18"] == spread["median"]


def test_flops_and_params_come_from_the_onnx_graph(result):
    pytest.importorskip("onnx_tool")
    rows = {row["name"]: row for row in result["rows"]}
    small, big = rows["mobilenet_v3_small"], rows["resnet18"]
    assert small["flops"] == 2 * small["macs"] > 0
    # resnet18 has ~11M parameters; the head has 2 classes. MobileNetV3-Small ~1.5M without its ImageNet head.
    assert 10.5e6 < big["params"] < 12e6
    assert 1.0e6 < small["params"] < 2.0e6
    assert big["flops"] > 5 * small["flops"]


def test_accuracy_is_read_from_the_evaluation_reports(result, tiny_bundle):
    rows = {row["name"]: row for row in result["rows"]}
    shipped = rows["shipped:synth-test"]
    arch = _shipped_arch(tiny_bundle)
    assert shipped["arch"] == arch
    assert [(a["module"], a["metric"], a["value"], a["baseline"]) for a in shipped["accuracy"]] == [
        ("synth-test", "macro_auroc", 0.91, False)
    ]
    baseline = rows["resnet18"]["accuracy"]
    assert [(a["module"], a["value"], a["image_size"], a["baseline"]) for a in baseline] == [
        ("synth-test", 0.80, 32, True)
    ]
    assert rows[arch]["accuracy"][0]["module"] == "synth-test"  # the zoo row of the shipped architecture


def test_goal_compares_the_shipped_model_with_the_reference(result):
    rows = {row["name"]: row for row in result["rows"]}
    [check] = result["goals"]
    assert check["model"] == "shipped:synth-test" and check["reference"] == "resnet18"
    assert check["speedup"] == pytest.approx(rows["shipped:synth-test"]["speedup"]["resnet18"])
    assert check["speed_ok"] == (check["speedup"] >= models.SPEEDUP_GOAL)
    assert check["accuracy_ok"] is True  # 0.91 >= 0.80 in the reports above
    assert "(trained at 32x32)" in check["note"]


def test_markdown_is_regenerated_with_the_table(result, run_dir, tiny_bundle):
    doc = (run_dir / "benchmarks.md").read_text()
    assert doc.startswith("# Benchmarks")
    assert "## Model cost (onnxruntime fp32, 32x32, batch 1)" in doc
    table = [line for line in doc.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| model | input | params (M) | GFLOPs")
    assert len(table) == 1 + len(result["rows"])
    assert "| **shipped:synth-test** ({}) | 64x64 RGB |".format(_shipped_arch(tiny_bundle)) in doc
    assert "synth-test macro_auroc 0.910, accuracy 0.500 (trained at 64x64)" in doc
    assert "--quick: not a measurement" in doc
    assert "No Jetson device was available" in doc


def test_existing_bundles_are_reused_on_a_device(result, run_dir, tmp_path):
    """--bundles-dir never exports: a missing architecture is skipped and said so."""
    out = tmp_path / "r" / "models.json"
    code = models.main(
        [
            "--quick",
            "--size",
            "32",
            "--archs",
            "mobilenet_v3_small,densenet121",
            "--bundles-dir",
            str(run_dir / "bundles"),
            "--shipped",
            "",
            "--references",
            "",
            "--out-json",
            str(out),
            "--no-doc",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert [row["name"] for row in data["rows"]] == ["mobilenet_v3_small"]


def test_runs_as_a_script(run_dir, tmp_path):
    out = tmp_path / "models.json"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "models.py"),
            "--quick",
            "--size",
            "32",
            "--archs",
            "mobilenet_v3_small",
            "--bundles-dir",
            str(run_dir / "bundles"),
            "--shipped",
            "",
            "--out-json",
            str(out),
            "--no-doc",
        ],
        capture_output=True,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(out.read_text())["benchmark"] == "models"
    assert b"| mobilenet_v3_small | 32x32 RGB |" in proc.stdout


def test_speedup_spread_comes_from_the_interleaved_rounds(result):
    rows = {row["name"]: row for row in result["rows"]}
    spread = rows["mobilenet_v3_small"]["speedup_per_round"]["resnet18"]
    assert spread["p25"] <= spread["median"] <= spread["p75"]
    assert rows["resnet18"]["speedup_per_round"]["resnet18"] == {"p25": 1.0, "median": 1.0, "p75": 1.0}
