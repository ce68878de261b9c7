"""The shipped bundles must build TensorRT engines on the Jetson Nano (TensorRT 8.2, opset <= 13).

Read with ``edge.onnx_info`` (no onnx package), so this also runs under the Nano's Python 3.6.
"""

import glob
import os

import pytest

from edge.onnx_info import onnx_op_types, read_onnx_info
from edge.tensorrt.trt_compat import TRT8_UNSUPPORTED_OPS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "models", "*", "model.onnx")))


@pytest.mark.skipif(not SHIPPED, reason="no bundles under models/")
@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(os.path.dirname(p)) for p in SHIPPED])
def test_shipped_graph_uses_only_ops_tensorrt_8_parses(path):
    opset = read_onnx_info(path).opset
    assert opset is not None and opset <= 13
    with open(path, "rb") as handle:
        ops = onnx_op_types(handle.read())
    assert "Conv" in ops  # the reader really found the graph's nodes
    assert not ops & TRT8_UNSUPPORTED_OPS, sorted(ops & TRT8_UNSUPPORTED_OPS)


def test_unsupported_op_list_catches_an_op_the_nano_cannot_parse(tmp_path):
    """The check above fails for a graph with HardSwish (opset 14; TensorRT 8.2 has no parser for it)."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    node = helper.make_node("HardSwish", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    assert onnx_op_types(model.SerializeToString()) & TRT8_UNSUPPORTED_OPS == {"HardSwish"}
