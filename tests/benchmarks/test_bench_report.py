"""docs/benchmarks.md is regenerated from every JSON result: one script never clobbers another's section."""

import json

import pytest

from benchmarks import common, report
from edge.errors import MedkioskError


def _result(kind, title, **extra):
    data = {"schema": common.SCHEMA, "benchmark": kind, "title": title}
    data.update(extra)
    return data


def test_sections_come_from_all_results_in_document_order(tmp_path, monkeypatch):
    rendered = []

    def fake_section(result):
        rendered.append(result["title"])
        return "## {}\n".format(result["title"])

    monkeypatch.setattr(report, "render_section", fake_section)
    results = tmp_path / "results"
    results.mkdir()
    (results / "memory-x.json").write_text(json.dumps(_result("memory", "M")))
    (results / "pipeline-tensorrt-fp16.json").write_text(json.dumps(_result("pipeline", "P-trt")))
    (results / "pipeline-onnxruntime-fp32.json").write_text(json.dumps(_result("pipeline", "P-ort")))
    (results / "not-a-result.json").write_text(json.dumps({"something": "else"}))
    (results / "broken.json").write_text("{")
    doc = report.write_doc(str(results), str(tmp_path / "docs" / "benchmarks.md"))
    with open(doc) as handle:
        text = handle.read()
    assert rendered == ["P-ort", "P-trt", "M"]
    assert text.index("## P-ort\n") < text.index("## P-trt\n") < text.index("## M\n")
    assert "Result file: `memory-x.json`." in text
    assert "No Jetson device was available" in text


def test_findings_are_appended_after_the_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "render_section", lambda result: "## {}\n".format(result["title"]))
    (tmp_path / "pipeline-a.json").write_text(json.dumps(_result("pipeline", "P")))
    (tmp_path / "findings.md").write_text("## Findings\n\nthe overlay is slow\n")
    text = report.render_doc(str(tmp_path))
    assert text.index("## P\n") < text.index("## Findings") and text.endswith("the overlay is slow\n")


def test_no_results_says_so(tmp_path):
    assert "No results yet" in report.render_doc(str(tmp_path))


def test_table_has_a_header_separator_and_one_line_per_row():
    lines = common.table(("stage", "thread", "ms"), [("decode", "MainThread", "1.50"), ("*busy*", "", 3)])
    assert lines == ["| stage | thread | ms |", "|---|---|---|", "| decode | MainThread | 1.50 |",
                     "| *busy* | | 3 |"]


def test_summarize_reports_median_and_spread():
    stats = common.summarize([0.001 * v for v in range(1, 101)])
    assert stats["n"] == 100
    assert abs(stats["median_ms"] - 50.5) < 1e-9
    assert abs(stats["iqr_ms"] - (stats["p75_ms"] - stats["p25_ms"])) < 1e-12
    assert stats["p25_ms"] < stats["median_ms"] < stats["p75_ms"] < stats["p90_ms"] <= stats["max_ms"]


def test_finish_writes_the_result_and_regenerates_the_doc_through_the_report_command(tmp_path, capfd):
    """common.finish runs `python -m benchmarks.report` (a real subprocess): the benchmarks never import
    the report, which imports them all."""
    import argparse

    result = {"title": "T", "backend": "onnxruntime", "precision": "fp32"}
    args = argparse.Namespace(out_json=str(tmp_path / "results" / "memory-x.json"), no_doc=False,
                              doc=str(tmp_path / "benchmarks.md"))
    (tmp_path / "results").mkdir()
    path = common.finish(result, args, "no-such-kind")
    with open(path) as handle:
        assert json.load(handle)["benchmark"] == "no-such-kind"
    out = capfd.readouterr().out
    assert "Unknown benchmark kind 'no-such-kind'" in out and "wrote {}".format(args.doc) in out
    with open(args.doc) as handle:
        assert "Result file: `memory-x.json`." in handle.read()
    args.no_doc, args.doc = True, str(tmp_path / "other.md")
    common.finish(result, args, "no-such-kind")
    assert not (tmp_path / "other.md").exists()
    args.no_doc, args.out_json = False, str(tmp_path / "missing" / "deeper" / "x.json")
    args.doc = str(tmp_path / "results")  # a folder: the report command fails, and finish says so
    with pytest.raises(MedkioskError, match="regenerating the report failed"):
        common.finish(result, args, "no-such-kind")
