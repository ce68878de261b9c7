"""Read an ONNX file's inputs, outputs, opset and metadata without the onnx package.

The device may have neither ``onnx`` nor ONNX Runtime (a TensorRT-only Jetson), yet a bundle
must be validated before anything runs. ONNX files are protocol buffers; this module decodes
just the fields it needs and skips everything else (weights included) by length.
"""

ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


class OnnxFormatError(ValueError):
    """The bytes are not a readable ONNX model."""


def _varint(buf, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint too long")


def _fields(buf):
    """Yield (field number, wire type, value) for one message; length-delimited values are views."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos:pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise OnnxFormatError("unsupported wire type {}".format(wire))
        if pos > end:
            raise OnnxFormatError("message truncated")
        yield number, wire, value


def _text(view):
    return bytes(view).decode("utf-8", "replace")


def _tensor_info(value_info):
    name = ""
    dtype = None
    shape = []
    for number, wire, value in _fields(value_info):
        if number == 1 and wire == 2:
            name = _text(value)
        elif number == 2 and wire == 2:
            for t_number, t_wire, t_value in _fields(value):
                if t_number != 1 or t_wire != 2:
                    continue
                for s_number, s_wire, s_value in _fields(t_value):
                    if s_number == 1 and s_wire == 0:
                        dtype = ELEM_TYPES.get(s_value, "type{}".format(s_value))
                    elif s_number == 2 and s_wire == 2:
                        for d_number, d_wire, d_value in _fields(s_value):
                            if d_number != 1 or d_wire != 2:
                                continue
                            dim = None
                            for x_number, x_wire, x_value in _fields(d_value):
                                if x_number == 1 and x_wire == 0:
                                    dim = x_value
                                elif x_number == 2 and x_wire == 2:
                                    dim = _text(x_value)
                            shape.append(dim)
    return {"name": name, "dtype": dtype, "shape": shape}


def _initializer_name(tensor):
    for number, wire, value in _fields(tensor):
        if number == 8 and wire == 2:
            return _text(value)
    return None


class OnnxInfo(object):
    """Inputs, outputs, opset and metadata_props of one ONNX model."""

    def __init__(self, inputs, outputs, opset, metadata, producer):
        self.inputs = inputs
        self.outputs = outputs
        self.opset = opset
        self.metadata = metadata
        self.producer = producer

    def __repr__(self):
        return "OnnxInfo(inputs={!r}, outputs={!r}, opset={!r})".format(self.inputs, self.outputs, self.opset)


def parse_onnx(data):
    """Parse ONNX model bytes into an OnnxInfo; raise OnnxFormatError if they are not one."""
    buf = memoryview(data)
    opset = None
    metadata = {}
    producer = ""
    graph = None
    for number, wire, value in _fields(buf):
        if number == 7 and wire == 2:
            graph = value
        elif number == 8 and wire == 2:
            domain, version = "", None
            for o_number, _o_wire, o_value in _fields(value):
                if o_number == 1:
                    domain = _text(o_value)
                elif o_number == 2:
                    version = o_value
            if domain in ("", "ai.onnx"):
                opset = version
        elif number == 14 and wire == 2:
            key, text = "", ""
            for m_number, _m_wire, m_value in _fields(value):
                if m_number == 1:
                    key = _text(m_value)
                elif m_number == 2:
                    text = _text(m_value)
            metadata[key] = text
        elif number == 2 and wire == 2:
            producer = _text(value)
    if graph is None:
        raise OnnxFormatError("no graph in the file")
    inputs, outputs, initializers = [], [], set()
    for number, wire, value in _fields(graph):
        if wire != 2:
            continue
        if number == 11:
            inputs.append(_tensor_info(value))
        elif number == 12:
            outputs.append(_tensor_info(value))
        elif number == 5:
            name = _initializer_name(value)
            if name:
                initializers.add(name)
    inputs = [i for i in inputs if i["name"] not in initializers]
    if not inputs or not outputs:
        raise OnnxFormatError("the graph has no inputs or no outputs")
    return OnnxInfo(inputs, outputs, opset, metadata, producer)


def read_onnx_info(path):
    """Parse the ONNX file at ``path``."""
    with open(str(path), "rb") as handle:
        return parse_onnx(handle.read())


def onnx_op_types(data):
    """The set of op types in an ONNX model's main graph (model bytes)."""
    ops = set()
    for number, wire, value in _fields(memoryview(data)):
        if number == 7 and wire == 2:  # ModelProto.graph
            for g_number, g_wire, g_value in _fields(value):
                if g_number == 1 and g_wire == 2:  # GraphProto.node
                    for n_number, n_wire, n_value in _fields(g_value):
                        if n_number == 4 and n_wire == 2:  # NodeProto.op_type
                            ops.add(_text(n_value))
    return ops
