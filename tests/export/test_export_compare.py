"""``medkiosk export compare``: PyTorch vs ONNX Runtime FP32/FP16 on real exported models and images.

TensorRT is not installed here, so its rows must be reported as skipped (never as passed).
"""

import json
import os

import pytest

pytest.importorskip("torch")

from export import cli  # noqa: E402
from export.compare import compare_backends, format_report  # noqa: E402
from export.onnx_export import export_bundle, generate_sample_images  # noqa: E402
from tests.export.models import tiny_description, tiny_source  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("compare-images"))
    generate_sample_images(folder, tiny_description(), count=10, seed=7)
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return export_bundle(tiny_source(), str(tmp_path_factory.mktemp("compare-bundle") / "b"), golden=False)


def _by_name(report):
    return {b["name"]: b for b in report["backends"]}


def test_pytorch_reference_against_onnxruntime_fp32_and_fp16(images):
    report = compare_backends(tiny_source(), images, precisions=["fp32", "fp16"])
    rows = _by_name(report)
    assert report["reference"] == "pytorch" and report["images"] == 10
    assert rows["onnxruntime-fp32"]["ok"] and rows["onnxruntime-fp32"]["max_abs_diff"] <= 1e-4
    assert rows["onnxruntime-fp16"]["ok"] and rows["onnxruntime-fp16"]["tolerance"] == 1e-2
    assert 0 < rows["onnxruntime-fp16"]["max_abs_diff"] <= 1e-2  # FP16 really differs, within tolerance
    assert rows["tensorrt-fp16"]["ok"] is None and "not installed" in rows["tensorrt-fp16"]["skipped"]
    assert report["ok"]
    text = format_report(report)
    assert "SKIPPED tensorrt-fp16" in text and text.endswith("compare: PASSED")


def test_too_tight_tolerance_fails(images):
    report = compare_backends(tiny_source(), images, precisions=["fp32", "fp16"], tolerances={"fp16": 1e-9})
    assert not report["ok"] and not _by_name(report)["onnxruntime-fp16"]["ok"]
    assert format_report(report).endswith("compare: FAILED")


def test_bundle_compare_via_cli_writes_json(bundle, images, tmp_path, capsys):
    out = str(tmp_path / "report.json")
    argv = ["export", "compare", bundle, "--images", images, "--precisions", "fp32,fp16", "--json", out]
    code = cli.main(argv)
    assert code == 0, capsys.readouterr()
    with open(out) as handle:
        report = json.load(handle)
    assert report["reference"] == "onnxruntime-fp32 (bundle)"
    assert [b["name"] for b in report["backends"]] == ["onnxruntime-fp16", "tensorrt-fp32", "tensorrt-fp16"]
    assert "compare: PASSED" in capsys.readouterr().out


def test_nothing_to_compare_is_a_failure_not_a_pass(bundle, images, capsys):
    assert cli.main(["export", "compare", bundle, "--images", images]) == 1
    assert "nothing was compared" in capsys.readouterr().out


def test_missing_image_folder(bundle, tmp_path, capsys):
    assert cli.main(["export", "compare", bundle, "--images", str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert os.path.exists(bundle)


def test_device_without_onnx_package_skips_the_fp16_onnx_row(bundle, images, monkeypatch):
    from edge.errors import MissingDependencyError
    from export import compare

    def no_onnx(src, dst):
        raise MissingDependencyError("onnx is not installed (simulated Jetson). Install it: pip install onnx")
    monkeypatch.setattr(compare, "_fp16_onnx", no_onnx)
    report = compare_backends(bundle, images, precisions=["fp32", "fp16"])
    rows = _by_name(report)
    row = rows["onnxruntime-fp16"]
    assert row["ok"] is None and "simulated Jetson" in row["skipped"]
    assert not report["ok"] and "nothing was compared" in report["problem"]
