"""Hand-built small ONNX bundles for backend/postprocess tests that need graph variants the
trained ``tiny_bundle`` does not have (multilabel, an ood_score output, fixed batch, GRAY input).

The graph follows the bundle contract: input "image" float32 NCHW raw 0-255 pixels; it
normalises in-graph, averages each channel, applies a fixed linear layer and softmax/sigmoid.
Building needs the ``onnx`` package (main venv only); under Python 3.6 these tests skip.
"""

import os

import numpy as np

from edge.bundle import GOLDEN_DIR, GOLDEN_EXPECTED, MODEL_CARD, make_manifest, sha256_file, write_json_atomic
from edge.description import InputSpec, ModelDescription
from edge.signing import SIGNING_KEY_ENV, sign_bundle


def make_tiny_bundle(out_dir, classes=("a", "b", "c", "d"), task="multiclass", size=16, colour="RGB",
                     input_check=None, dynamic=True, abstain_threshold=0.5, seed=0):
    """Write a complete bundle folder at ``out_dir``; return its path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    channels = 3 if colour == "RGB" else 1
    rng = np.random.RandomState(seed)
    weights = rng.uniform(-4, 4, size=(channels, len(classes))).astype(np.float32)
    batch = "N" if dynamic else 1
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels, size, size])]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, len(classes)])]
    inits = [numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale"),
             numpy_helper.from_array(np.array(0.5, dtype=np.float32), "centre"),
             numpy_helper.from_array(weights, "weights")]
    nodes = [
        helper.make_node("Div", ["image", "scale"], ["x01"]),
        helper.make_node("Sub", ["x01", "centre"], ["xn"]),
        helper.make_node("GlobalAveragePool", ["xn"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weights"], ["logits"]),
        helper.make_node("Softmax" if task == "multiclass" else "Sigmoid", ["logits"], ["probabilities"],
                         **({"axis": 1} if task == "multiclass" else {})),
    ]
    if input_check:
        # ood_score = mean brightness in 0..1: bright images are "out of scope".
        outputs.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, [batch]))
        nodes.append(helper.make_node("ReduceMean", ["x01"], ["ood_4d"], axes=[1, 2, 3], keepdims=0))
        nodes.append(helper.make_node("Identity", ["ood_4d"], ["ood_score"]))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tiny_onnx")
    model.ir_version = 7  # readable by onnxruntime 1.10 (Jetson Nano)
    onnx.checker.check_model(model)
    os.makedirs(out_dir)
    model_path = os.path.join(out_dir, "model.onnx")
    onnx.save(model, model_path)
    description = ModelDescription(
        arch="tiny_linear", task=task, classes=list(classes),
        display_names=[c.upper() for c in classes],
        input_spec=InputSpec(size, size, colour=colour),
        mean=[0.5] * channels, std=[1.0] * channels, abstain_threshold=abstain_threshold,
        input_check=input_check)
    manifest = make_manifest(description, "tiny-" + task, "Tiny " + task, sha256_file(model_path), opset=13)
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    with open(os.path.join(out_dir, MODEL_CARD), "w") as handle:
        handle.write("# Tiny test model\nHand-built linear graph for tests. Not a medical model.\n")
    _write_golden(out_dir, description, model_path)
    key = os.environ.get(SIGNING_KEY_ENV)
    if key:
        sign_bundle(out_dir, key)  # the session's test key (tests/conftest.py), which the tests trust
    return out_dir


def _write_golden(out_dir, description, model_path):
    """One mid-grey golden image and the probabilities ONNX Runtime gives for it (a bundle needs golden/)."""
    import cv2
    import onnxruntime

    from edge.preprocess import preprocess

    golden = os.path.join(out_dir, GOLDEN_DIR)
    os.makedirs(golden)
    image = np.full((description.input.height, description.input.width, 3), 100, dtype=np.uint8)
    cv2.imwrite(os.path.join(golden, "grey.png"), image)
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"image": preprocess(image, description.input)})[0][0]
    write_json_atomic(os.path.join(golden, GOLDEN_EXPECTED), {"tolerance": 1e-3, "samples": [
        {"file": "grey.png", "probabilities": [float(p) for p in probs],
         "top1": description.classes[int(probs.argmax())]}]})
