"""The numpy ONNX evaluator (tests/onnx_numpy.py), test support of the JetPack 4.6 run, is right.

Against ONNX Runtime where it is installed (max abs difference on the real test bundle, its
variants and the shipped chest models), and against the bundle's own golden outputs everywhere,
so the JetPack 4.6 run (numpy 1.13.3, no ONNX Runtime) checks it with what it has. Python 3.6
compatible.
"""

import glob
import json
import os

import numpy as np
import pytest

from edge.preprocess import load_image, preprocess
from tests.onnx_numpy import OnnxGraph, UnsupportedOnnx, read_tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _models(test_artifacts):
    paths = sorted(glob.glob(os.path.join(test_artifacts.root, "bundle", "model.onnx")))
    paths += sorted(glob.glob(os.path.join(test_artifacts.root, "edge-variants", "*", "model.onnx")))
    return paths + sorted(glob.glob(os.path.join(ROOT, "models", "*", "model.onnx")))


def test_matches_onnxruntime_on_every_bundle_model(test_artifacts):
    ort = pytest.importorskip("onnxruntime", reason="the comparison needs ONNX Runtime (main run)")
    checked = 0
    for path in _models(test_artifacts):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 2 for d in spec.shape]
        batch = np.random.RandomState(0).uniform(0, 255, shape).astype(np.float32)
        names = [o.name for o in session.get_outputs()]
        expected = session.run(names, {spec.name: batch})
        got = OnnxGraph(_read(path)).run({spec.name: batch}, names)
        for name, want in zip(names, expected):
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, (path, name)
            # float32 sums in another order: 2e-5 of the output's own scale (heatmaps are logit-sized)
            scale = max(1.0, float(np.abs(want).max()))
            assert np.abs(got[name] - want).max() < 2e-5 * scale, (path, name, scale)
        checked += 1
    assert checked >= 3


def test_reproduces_the_bundle_golden_outputs(tiny_bundle):
    """What the JetPack 4.6 run can check: the exported bundle's golden probabilities."""
    from edge.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    graph = OnnxGraph(_read(os.path.join(tiny_bundle, "model.onnx")))
    with open(os.path.join(tiny_bundle, "golden", "expected.json")) as handle:
        golden = json.load(handle)
    for sample in golden["samples"]:
        image = load_image(os.path.join(tiny_bundle, "golden", sample["file"]))
        batch = preprocess(image, bundle.description.input)
        probabilities = graph.run({bundle.input_name: batch})["probabilities"][0]
        assert np.abs(probabilities - sample["probabilities"]).max() <= golden["tolerance"] / 10.0


def _conv_reference(x, w, bias, stride, pads, group):
    """A direct six-loop convolution: the definition, to check the evaluator's fast paths."""
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), mode="constant")
    n, channels, height, width = x.shape
    out_c, per_in, kh, kw = w.shape
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = np.zeros((n, out_c, out_h, out_w), np.float64)
    per_out = out_c // group
    for o in range(out_c):
        g = o // per_out
        for i in range(out_h):
            for j in range(out_w):
                top, left = i * stride, j * stride
                patch = x[:, g * per_in:(g + 1) * per_in, top:top + kh, left:left + kw]
                out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + bias[o]
    return out


class _Node(object):
    def __init__(self, **attrs):
        self.attrs = attrs


@pytest.mark.parametrize("channels, out_c, group, stride, pads", [
    (4, 6, 1, 1, (1, 1, 1, 1)),
    (4, 4, 4, 2, (0, 1, 1, 0)),  # depthwise, asymmetric padding (TF "same")
    (6, 4, 2, 1, (0, 0, 0, 0)),  # grouped
])
def test_conv_paths_match_the_definition(channels, out_c, group, stride, pads):
    from tests.onnx_numpy import OPS

    rng = np.random.RandomState(4)
    x = rng.normal(size=(2, channels, 7, 8)).astype(np.float32)
    w = rng.normal(size=(out_c, channels // group, 3, 3)).astype(np.float32)
    bias = rng.normal(size=out_c).astype(np.float32)
    node = _Node(group=group, strides=[stride, stride], pads=list(pads), kernel_shape=[3, 3])
    got = OPS["Conv"](node, [x, w, bias], 13)[0]
    np.testing.assert_allclose(got, _conv_reference(x, w, bias, stride, pads, group), atol=1e-4)


def test_softmax_before_opset_13_flattens_from_the_axis():
    from tests.onnx_numpy import OPS

    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    old = OPS["Softmax"](_Node(), [x], 11)[0]
    flat = np.exp(x.reshape(2, 6) - x.reshape(2, 6).max(axis=1, keepdims=True))
    np.testing.assert_allclose(old, (flat / flat.sum(axis=1, keepdims=True)).reshape(2, 2, 3), rtol=1e-6)
    new = OPS["Softmax"](_Node(), [x], 13)[0]
    np.testing.assert_allclose(new.sum(axis=-1), 1.0, rtol=1e-6)


def test_an_unknown_operator_is_named_not_guessed(tiny_bundle):
    data = _read(os.path.join(tiny_bundle, "model.onnx"))
    renamed = data.replace(b"GlobalAveragePool", b"GlobalLpPoolXXXXX")
    with pytest.raises(UnsupportedOnnx, match="GlobalLpPoolXXXXX"):
        OnnxGraph(renamed)


def test_tensors_of_each_encoding():
    # dims [2] (field 1, packed), data_type 1 (float), float_data packed (field 4), name "w" (field 8)
    values = np.array([1.5, -2.0], "<f4").tobytes()
    floats = b"\x0a\x01\x02" + b"\x10\x01" + b"\x22\x08" + values + b"\x42\x01w"
    name, array = read_tensor(floats)
    assert name == "w" and array.dtype == np.float32 and array.tolist() == [1.5, -2.0]
    # int64_data (field 7) as varints, a negative one in ten bytes
    ints = b"\x0a\x01\x02" + b"\x10\x07" + b"\x3a\x0b" + b"\x05" + b"\xff" * 9 + b"\x01"
    assert read_tensor(ints)[1].tolist() == [5, -1]
    raw = b"\x0a\x01\x03" + b"\x10\x06" + b"\x4a\x0c" + np.array([7, -8, 9], "<i4").tobytes()
    assert read_tensor(raw)[1].tolist() == [7, -8, 9]
