"""The shipped bundles must build TensorRT engines on the Jetson Nano (TensorRT 8.2, opset <= 13)."""

import glob
import os

import pytest

onnx = pytest.importorskip("onnx")

from export.onnx_export import TRT8_UNSUPPORTED_OPS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "models", "*", "model.onnx")))


@pytest.mark.skipif(not SHIPPED, reason="no bundles under models/")
@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(os.path.dirname(p)) for p in SHIPPED])
def test_shipped_graph_uses_only_ops_tensorrt_8_parses(path):
    model = onnx.load(path)
    opset = {entry.domain: entry.version for entry in model.opset_import}.get("")
    assert opset is not None and opset <= 13
    ops = {node.op_type for node in model.graph.node}
    assert not ops & TRT8_UNSUPPORTED_OPS, sorted(ops & TRT8_UNSUPPORTED_OPS)
