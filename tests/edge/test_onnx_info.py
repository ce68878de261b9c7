"""The dependency-free ONNX reader against a real exported model (and broken bytes)."""

import json

import pytest

from edge.bundle import load_bundle
from edge.onnx_info import OnnxFormatError, parse_onnx, read_onnx_info


def test_reads_the_exported_model(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    info = read_onnx_info(bundle.model_path)
    assert [i["name"] for i in info.inputs] == ["image"]  # initializers are not inputs
    spec = bundle.description.input
    assert info.inputs[0]["dtype"] == "float32"
    assert info.inputs[0]["shape"][1:] == [spec.channels, spec.height, spec.width]
    assert info.outputs[0]["name"] == "probabilities"
    assert info.outputs[0]["shape"][-1] == bundle.description.num_classes
    assert isinstance(info.opset, int) and 7 <= info.opset <= 25
    manifest = json.loads(info.metadata["medkiosk.manifest"])
    assert manifest["model"]["classes"] == bundle.description.classes


def test_agrees_with_onnxruntime(tiny_bundle):
    ort = pytest.importorskip("onnxruntime")
    bundle = load_bundle(tiny_bundle)
    info = read_onnx_info(bundle.model_path)
    session = ort.InferenceSession(bundle.model_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i["name"] for i in info.inputs]
    assert [o.name for o in session.get_outputs()] == [o["name"] for o in info.outputs]
    assert session.get_modelmeta().custom_metadata_map == info.metadata


@pytest.mark.parametrize("cut", [10, 100, 1000, -10])
def test_truncated_or_garbage_bytes_are_format_errors(tiny_bundle, cut):
    bundle = load_bundle(tiny_bundle)
    with open(bundle.model_path, "rb") as handle:
        data = handle.read()
    with pytest.raises(OnnxFormatError):
        parse_onnx(data[:cut])


def test_not_an_onnx_file():
    with pytest.raises(OnnxFormatError):
        parse_onnx(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(OnnxFormatError):
        parse_onnx(b"")
