"""TEST SUPPORT, not device code: a small numpy evaluator of ONNX graphs, for where ONNX Runtime is not.

The JetPack 4.6 run (``make test-jetpack46``: Python 3.6, numpy 1.13.3, no ONNX Runtime, no
``onnx`` package) still runs the test bundles through the TensorRT stand-ins with this: the model's
protocol buffer is read with ``edge.onnx_info``'s wire-format reader and each node is computed with
numpy 1.13-compatible calls (no ``einsum(optimize=)``, no ``default_rng``, no ``moveaxis``). It
supports the operators of the test bundles and the shipped models (``OPS``); anything else is an
``UnsupportedOnnx`` error naming the operator, never a silent wrong answer. Checked against ONNX
Runtime in tests/test_onnx_numpy.py (max abs difference on the real bundles).

Usage: ``OnnxGraph(onnx_bytes).run({"image": batch}) -> {output name: array}``.
"""

import struct

import numpy as np

from edge.onnx_info import _fields, _varint

# TensorProto data types -> numpy
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
          10: np.float16, 11: np.float64}


class UnsupportedOnnx(Exception):
    """The graph uses an operator or attribute this evaluator does not implement."""


def _text(view):
    return bytes(view).decode("utf-8")


def _packed(value, wire, fmt, size):
    """A repeated numeric field: packed (wire 2) or one element (wire 0/1/5)."""
    if wire == 2:
        data = bytes(value)
        if fmt in "qi":
            out, pos = [], 0
            while pos < len(data):
                number, pos = _varint(data, pos)
                out.append(number - (1 << 64) if number >= 1 << 63 else number)
            return out
        return list(struct.unpack("<{}{}".format(len(data) // size, fmt), data))
    if wire == 0:
        return [value - (1 << 64) if value >= 1 << 63 else value]
    return list(struct.unpack("<" + fmt, bytes(value)))


def read_tensor(buf):
    """(name, numpy array) of a TensorProto."""
    dims, dtype, name, raw = [], 1, "", None
    floats, ints, int64s, doubles = [], [], [], []
    for number, wire, value in _fields(buf):
        if number == 1:
            dims += _packed(value, wire, "q", 8)
        elif number == 2:
            dtype = value
        elif number == 4:
            floats += _packed(value, wire, "f", 4)
        elif number == 5:
            ints += _packed(value, wire, "i", 4)
        elif number == 7:
            int64s += _packed(value, wire, "q", 8)
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = bytes(value)
        elif number == 10:
            doubles += _packed(value, wire, "d", 8)
    if dtype not in DTYPES:
        raise UnsupportedOnnx("tensor {!r}: data type {} is not supported".format(name, dtype))
    numpy_type = DTYPES[dtype]
    if raw is not None:
        array = np.frombuffer(raw, dtype=np.dtype(numpy_type).newbyteorder("<")).astype(numpy_type)
    else:
        array = np.array(floats or doubles or int64s or ints, dtype=numpy_type)
    return name, array.reshape([int(d) for d in dims])


def _attribute(buf):
    name, value, kind = "", None, None
    floats, ints = [], []
    for number, wire, field in _fields(buf):
        if number == 1:
            name = _text(field)
        elif number == 2:
            value = struct.unpack("<f", bytes(field))[0]
        elif number == 3:
            value = field - (1 << 64) if field >= 1 << 63 else field
        elif number == 4:
            value = _text(field)
        elif number == 5:
            value = read_tensor(field)[1]
        elif number == 7:
            floats += _packed(field, wire, "f", 4)
        elif number == 8:
            ints += _packed(field, wire, "q", 8)
        elif number == 20:
            kind = field
    if kind == 6 or (value is None and floats):  # AttributeType FLOATS
        value = floats
    elif kind == 7 or (value is None and ints):  # INTS
        value = ints
    return name, value


class Node(object):
    def __init__(self, buf):
        self.inputs, self.outputs, self.attrs, self.op, self.name = [], [], {}, "", ""
        for number, _wire, value in _fields(buf):
            if number == 1:
                self.inputs.append(_text(value))
            elif number == 2:
                self.outputs.append(_text(value))
            elif number == 3:
                self.name = _text(value)
            elif number == 4:
                self.op = _text(value)
            elif number == 5:
                key, attr = _attribute(value)
                self.attrs[key] = attr


def _value_name(buf):
    for number, _wire, value in _fields(buf):
        if number == 1:
            return _text(value)
    return ""


# ---- operators: f(node, inputs, opset) -> list of outputs ----

def _conv(node, args, _opset):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 and args[2] is not None else None
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedOnnx("Conv auto_pad {}".format(node.attrs["auto_pad"]))
    group = int(node.attrs.get("group", 1))
    kh, kw = w.shape[2], w.shape[3]
    sh, sw = node.attrs.get("strides", [1, 1])
    dh, dw = node.attrs.get("dilations", [1, 1])
    top, left, bottom, right = node.attrs.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="constant")
    n, channels, height, width = x.shape
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1

    def window(i, j):
        return x[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw]

    out_channels = w.shape[0]
    if group == 1 and kh == kw == 1 and sh == sw == 1:  # pointwise: one matrix product per image
        weights = w.reshape(out_channels, channels)
        out = np.stack([weights.dot(image.reshape(channels, -1)) for image in x])
        out = out.reshape(n, out_channels, out_h, out_w)
    elif group == channels and w.shape[1] == 1 and out_channels == channels:  # depthwise
        out = np.zeros((n, channels, out_h, out_w), np.float32)
        for i in range(kh):
            for j in range(kw):
                out += window(i, j) * w[:, 0, i, j][None, :, None, None]
    else:
        per_in, per_out = channels // group, out_channels // group
        cols = np.stack([window(i, j) for i in range(kh) for j in range(kw)], axis=2)  # N C K H W
        parts = []
        for g in range(group):
            patch = cols[:, g * per_in:(g + 1) * per_in]  # N Cg K H W
            weights = w[g * per_out:(g + 1) * per_out].reshape(per_out, per_in, kh * kw)
            parts.append(np.tensordot(patch, weights, axes=([1, 2], [1, 2])))  # N H W Og
        out = np.concatenate(parts, axis=3).transpose(0, 3, 1, 2)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return [np.ascontiguousarray(out, dtype=np.float32)]


def _clip(node, args, opset):
    low = args[1] if len(args) > 1 and args[1] is not None else node.attrs.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else node.attrs.get("max")
    x = args[0]
    if low is not None:
        x = np.maximum(x, np.asarray(low, x.dtype))
    if high is not None:
        x = np.minimum(x, np.asarray(high, x.dtype))
    return [x]


def _gemm(node, args, _opset):
    a, b = args[0], args[1]
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    out = node.attrs.get("alpha", 1.0) * a.dot(b)
    if len(args) > 2 and args[2] is not None:
        out = out + node.attrs.get("beta", 1.0) * args[2]
    return [out.astype(np.float32)]


def _softmax(node, args, opset):
    x = args[0]
    if opset >= 13:
        axis = node.attrs.get("axis", -1)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return [e / e.sum(axis=axis, keepdims=True)]
    axis = node.attrs.get("axis", 1) % x.ndim
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    return [(e / e.sum(axis=1, keepdims=True)).reshape(x.shape)]


def _reduce(function):
    def run(node, args, opset):
        axes = node.attrs.get("axes")
        if axes is None and len(args) > 1 and args[1] is not None:  # ReduceSum 13+, others 18+
            axes = [int(a) for a in args[1]]
        keep = bool(node.attrs.get("keepdims", 1))
        axis = tuple(int(a) for a in axes) if axes else None
        return [np.asarray(function(args[0], axis=axis, keepdims=keep), dtype=args[0].dtype)]
    return run


def _flatten(node, args, _opset):
    x = args[0]
    axis = node.attrs.get("axis", 1) % (x.ndim or 1)
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


def _reshape(node, args, _opset):
    x, shape = args[0], [int(s) for s in args[1]]
    shape = [x.shape[i] if s == 0 and not node.attrs.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _concat(node, args, _opset):
    return [np.concatenate(args, axis=node.attrs["axis"])]


def _transpose(node, args, _opset):
    perm = node.attrs.get("perm")
    return [np.transpose(args[0], perm) if perm is not None else args[0].T]


def _unsqueeze(node, args, opset):
    axes = node.attrs.get("axes") if opset < 13 else [int(a) for a in args[1]]
    x = args[0]
    for axis in sorted(a % (x.ndim + len(axes)) for a in axes):
        x = np.expand_dims(x, axis)
    return [x]


def _squeeze(node, args, opset):
    axes = node.attrs.get("axes") if opset < 13 else ([int(a) for a in args[1]] if len(args) > 1 else None)
    x = args[0]
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]


def _elementwise(function):
    def run(_node, args, _opset):
        return [np.asarray(function(*args))]
    return run


def _nary(function):
    def run(_node, args, _opset):
        out = args[0]
        for arg in args[1:]:
            out = function(out, arg)
        return [out]
    return run


def _cast(node, args, _opset):
    to = node.attrs["to"]
    if to not in DTYPES:
        raise UnsupportedOnnx("Cast to data type {}".format(to))
    return [args[0].astype(DTYPES[to])]


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return (a // b).astype(a.dtype)
    return a / b


OPS = {
    "Conv": _conv,
    "Clip": _clip,
    "Relu": _elementwise(lambda x: np.maximum(x, 0).astype(x.dtype)),
    "Sigmoid": _elementwise(lambda x: (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)),
    "Sqrt": _elementwise(np.sqrt),
    "Exp": _elementwise(np.exp),
    "Neg": _elementwise(np.negative),
    "Abs": _elementwise(np.abs),
    "Identity": _elementwise(lambda x: x),
    "Add": _elementwise(lambda a, b: a + b),
    "Sub": _elementwise(lambda a, b: a - b),
    "Mul": _elementwise(lambda a, b: a * b),
    "Div": _elementwise(_div),
    "Pow": _elementwise(lambda a, b: np.power(a, b).astype(a.dtype)),
    "Max": _nary(np.maximum),
    "Min": _nary(np.minimum),
    "Sum": _nary(np.add),
    "MatMul": _elementwise(lambda a, b: np.matmul(a, b)),
    "Gemm": _gemm,
    "GlobalAveragePool": _elementwise(lambda x: x.mean(axis=(2, 3), keepdims=True).astype(x.dtype)),
    "Flatten": _flatten,
    "Softmax": _softmax,
    "ReduceMean": _reduce(np.mean),
    "ReduceSum": _reduce(np.sum),
    "ReduceMin": _reduce(np.min),
    "ReduceMax": _reduce(np.max),
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Constant": lambda node, _args, _opset: [np.asarray(node.attrs["value"])],
}


_PARSED = {}


def graph_of(data):
    """The parsed OnnxGraph of this bytes object, parsed once (the stand-in runs one engine's bytes
    often); keyed by identity, the object kept alive with its graph so the key is never reused."""
    entry = _PARSED.get(id(data))
    if entry is None or entry[0] is not data:
        entry = _PARSED[id(data)] = (data, OnnxGraph(data))
    return entry[1]


class OnnxGraph(object):
    """A parsed ONNX model that ``run`` evaluates with numpy (see the module docstring)."""

    def __init__(self, data):
        graph, self.opset = None, 1
        for number, _wire, value in _fields(memoryview(bytes(data))):
            if number == 7:
                graph = value
            elif number == 8:
                domain, version = "", 1
                for o_number, _o_wire, o_value in _fields(value):
                    if o_number == 1:
                        domain = _text(o_value)
                    elif o_number == 2:
                        version = o_value
                if domain in ("", "ai.onnx"):
                    self.opset = version
        if graph is None:
            raise UnsupportedOnnx("no graph in the model")
        self.nodes, self.initializers, self.inputs, self.outputs = [], {}, [], []
        for number, _wire, value in _fields(graph):
            if number == 1:
                self.nodes.append(Node(value))
            elif number == 5:
                name, array = read_tensor(value)
                self.initializers[name] = array
            elif number == 11:
                self.inputs.append(_value_name(value))
            elif number == 12:
                self.outputs.append(_value_name(value))
        unknown = sorted(set(n.op for n in self.nodes) - set(OPS))
        if unknown:
            raise UnsupportedOnnx("operators not supported by the numpy evaluator: {}".format(
                ", ".join(unknown)))

    def run(self, feeds, names=None):
        """{input name: array} -> {output name: array} (``names``: the outputs wanted, default all)."""
        values = dict(self.initializers)
        values.update(feeds)
        for node in self.nodes:
            args = [values[name] if name else None for name in node.inputs]
            for name, result in zip(node.outputs, OPS[node.op](node, args, self.opset)):
                values[name] = result
        return {name: values[name] for name in (names or self.outputs)}
