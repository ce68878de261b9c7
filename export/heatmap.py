"""Class-activation maps (CAM, Zhou et al. 2016) as a graph output ``heatmap`` (workstation side).

For a network whose classifier is one linear layer on the global average of its last feature map
``A`` [N, F, h, w], the map of class k is ``M_k = sum_f W[k, f] * A_f + b_k``: a 1x1 convolution of
the feature map with the head's own weights, its bias in every cell. Its spatial mean is the class
logit exactly, so the heatmap and the probabilities cannot disagree (tests pin this on the graph).

The graph output is ``heatmap`` [N, K, h, w] float32 (all classes; 7x7 at 224x224 input) and adds
only ``Conv`` (1x1) to the graph (the pooling was already there as ``GlobalAveragePool``): both are in
TensorRT 8.2's ONNX parser. The manifest declares it (``edge.bundle.HEATMAP_FIELD``).

Which layers give the feature map depends on the architecture: ``FEATURE_MAPS`` is the table.
An architecture with a multi-layer head (MobileNetV3, vgg16_seed) has no CAM and is refused.
"""

from edge.lazy import require
from export.errors import ExportError

HEATMAP_OUTPUT = "heatmap"
METHOD = "cam"
# |ONNX - PyTorch| on the heatmap, relative to the largest |value| of the PyTorch map.
HEATMAP_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}


def _torch():
    return require("torch", "pip install 'medkiosk[train]'")


def _lite0_map(net, x):
    """EfficientNet-Lite0: the head convolution's activations (what its body averages)."""
    return net.backbone.body.model.extract_features(net.normalise(x))


def _pooled_sequential_map(net, x):
    """A body ``Sequential(..., AdaptiveAvgPool2d(1), Flatten)``: every layer before the pooling."""
    x = net.normalise(x)
    for layer in list(net.backbone.body)[:-2]:
        x = layer(x)
    return x


# architecture -> (net, raw pixels) -> last feature map [N, F, h, w] before global average pooling
FEATURE_MAPS = {
    "efficientnet_lite0": _lite0_map,
    "resnet18": _pooled_sequential_map,
    "densenet121": _pooled_sequential_map,
    "resattn56": _pooled_sequential_map,
}


def linear_head(head):
    """The head's one ``nn.Linear`` (a leading Dropout is allowed); None when the head is deeper."""
    nn = _torch().nn
    if isinstance(head, nn.Linear):
        return head
    layers = list(head.children()) if isinstance(head, nn.Sequential) else []
    if layers and isinstance(layers[-1], nn.Linear) and all(isinstance(m, nn.Dropout) for m in layers[:-1]):
        return layers[-1]
    return None


def _heatmap_model_class():
    nn = _torch().nn

    class HeatmapDeployModel(nn.Module):
        """A DeployModel with a third output: ``(probabilities, [ood_score,] heatmap)``.

        The feature map is computed once; pooling, head, temperature and softmax/sigmoid follow
        ``training.nets.DeployModel`` (the export parity-checks these probabilities against it).
        """

        def __init__(self, deploy, feature_map, linear):
            super().__init__()
            self.deploy = deploy
            self.feature_map = feature_map
            weight = linear.weight.detach().clone()
            self.register_buffer("cam_weight", weight.reshape(weight.shape[0], weight.shape[1], 1, 1))
            bias = linear.bias if linear.bias is not None else weight.new_zeros(weight.shape[0])
            bias = bias.detach().clone()
            # Every cell carries the whole bias, so the mean over the cells is exactly the logit.
            self.register_buffer("cam_bias", bias)

        def forward(self, x):
            torch = _torch()
            deploy = self.deploy
            fmap = self.feature_map(deploy.net, x)
            embedding = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
            logits = deploy.net.head(embedding)
            scaled = logits / deploy.temperature
            probabilities = torch.sigmoid(scaled) if deploy.task == "multilabel" else torch.softmax(scaled, 1)
            heatmap = torch.nn.functional.conv2d(fmap, self.cam_weight, self.cam_bias)
            if deploy.ood_head is None:
                return probabilities, heatmap
            if deploy.ood_wants_image:
                return probabilities, deploy.ood_head(embedding, logits, image=x).reshape(-1), heatmap
            return probabilities, deploy.ood_head(embedding, logits).reshape(-1), heatmap

    return HeatmapDeployModel


def with_heatmap(deploy, description):
    """Wrap a ``training.nets.DeployModel`` so its graph also outputs ``heatmap``; ExportError if it can't.

    Returns (model, manifest section). On a probe image the maps' spatial means must equal the
    network's own logits, so a wrong entry in ``FEATURE_MAPS`` cannot ship a misleading map.
    """
    torch = _torch()
    arch = description.arch
    feature_map = FEATURE_MAPS.get(arch)
    net = getattr(deploy, "net", None)
    linear = linear_head(net.backbone.head) if feature_map and hasattr(net, "backbone") else None
    if feature_map is None or linear is None:
        raise ExportError("a class-activation heatmap needs a global-average-pooled feature map and a "
                          "one-layer linear head; {} is not one of {}. Fix: export without "
                          "--heatmap".format(arch, ", ".join(sorted(FEATURE_MAPS))))
    model = _heatmap_model_class()(deploy, feature_map, linear).eval()
    probe = torch.full(description.input.shape(1), 127.0)
    probe[..., ::3, :] = 30.0
    with torch.no_grad():
        fmap = feature_map(net, probe)
        logits = net(probe)
        heatmap = model(probe)[-1]
    if fmap.dim() != 4 or heatmap.shape[:2] != logits.shape or not torch.allclose(
            heatmap.mean(dim=(2, 3)), logits, atol=1e-4, rtol=1e-4):
        raise ExportError("the {} heatmap does not average to the network's logits; it would not explain "
                          "the prediction. Fix: report this bug (export/heatmap.py "
                          "FEATURE_MAPS)".format(arch))
    section = {"output": HEATMAP_OUTPUT, "method": METHOD, "classes": "all",
               "shape": [description.num_classes, int(fmap.shape[2]), int(fmap.shape[3])],
               "meaning": "per-cell contribution to each class logit; its spatial mean is the logit"}
    return model, section


def run_heatmaps(model, inputs, output_index):
    """Heatmaps [N, K, h, w] from a PyTorch model's output ``output_index``, one image at a time."""
    torch = _torch()
    np = require("numpy")
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(batch))[output_index].numpy()[0] for batch in inputs])


def compare_heatmaps(reference, candidate, precision):
    """{"ok", "max_abs_diff", "relative_diff", "tolerance"}: ONNX vs PyTorch heatmaps."""
    np = require("numpy")
    diff = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    scale = max(float(np.max(np.abs(reference))), 1e-6)
    tolerance = HEATMAP_TOLERANCE[precision]
    return {"ok": reference.shape == candidate.shape and diff / scale <= tolerance,
            "max_abs_diff": diff, "relative_diff": diff / scale, "tolerance": tolerance}


def _attribute(node, name, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return require("onnx").helper.get_attribute_value(attribute)
    return default


def _pooled_gemm(graph):
    """(feature map name, Gemm node) for ``GlobalAveragePool -> Flatten -> Gemm``; ExportError if absent."""
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        flatten = producers.get(node.input[0]) if node.op_type == "Gemm" else None
        is_flatten = flatten is not None and flatten.op_type == "Flatten"
        pool = producers.get(flatten.input[0]) if is_flatten else None
        if pool is not None and pool.op_type == "GlobalAveragePool":
            if _attribute(node, "transB", 0) != 1 or _attribute(node, "alpha", 1.0) != 1.0 or \
                    _attribute(node, "transA", 0) != 0 or len(node.input) < 3:
                continue
            return pool.input[0], node
    raise ExportError("the graph has no GlobalAveragePool -> Flatten -> Gemm classifier to take a "
                      "class-activation map from. Fix: export from the checkpoint with --heatmap")


def graft_heatmap(model):
    """An exported ONNX model (``onnx.ModelProto``) -> a copy with a ``heatmap`` output added.

    For bundles whose checkpoint is gone: the CAM is grafted from the graph's own classifier weights
    (the same 1x1 Conv ``with_heatmap`` exports). The lab uses it to evaluate shipped models
    (``training.pointing``); a bundle for units is still re-exported from its checkpoint.
    """
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    grafted = onnx.ModelProto()
    grafted.CopyFrom(model)
    graph = grafted.graph
    fmap, gemm = _pooled_gemm(graph)
    initializers = {i.name: i for i in graph.initializer}
    if gemm.input[1] not in initializers or gemm.input[2] not in initializers:
        raise ExportError("the classifier's weights are not constants of the graph. Fix: export from the "
                          "checkpoint with --heatmap")
    weight = numpy_helper.to_array(initializers[gemm.input[1]])
    bias = numpy_helper.to_array(initializers[gemm.input[2]]) * float(_attribute(gemm, "beta", 1.0))
    kernel = weight.reshape(weight.shape + (1, 1)).astype("float32")
    graph.initializer.extend([
        numpy_helper.from_array(kernel, "heatmap.cam_weight"),
        numpy_helper.from_array(bias.reshape(-1).astype("float32"), "heatmap.cam_bias")])
    graph.node.append(onnx.helper.make_node("Conv", [fmap, "heatmap.cam_weight", "heatmap.cam_bias"],
                                            [HEATMAP_OUTPUT], name="heatmap/cam", kernel_shape=[1, 1]))
    inferred = onnx.shape_inference.infer_shapes(grafted)
    value = [v for v in inferred.graph.value_info if v.name == HEATMAP_OUTPUT]
    if not value:
        raise ExportError("shape inference could not size the grafted heatmap. Fix: export from the "
                          "checkpoint with --heatmap")
    graph.output.append(value[0])
    onnx.checker.check_model(grafted)
    return grafted
