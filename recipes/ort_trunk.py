"""A frozen trunk run by ONNX Runtime (one thread) instead of PyTorch eager mode, for filling the shared
caches (``recipes.warm_cache``, ``recipes.tail_data``): on this CPU the frozen EfficientNet-Lite0 pass
in eager mode is dominated by its depthwise convolutions; exported (TorchScript exporter, opset 13) it
was 6x faster, with outputs equal to 1e-5. Checked against PyTorch on three probes before use."""

import os

import numpy as np
import torch

from edge.errors import ConfigError


def onnx_trunk(trunk, spec, folder):
    """A callable float tensor [N, C, H, W] -> embeddings [N, F] running ``trunk`` in ONNX Runtime."""
    import onnxruntime

    path = os.path.join(folder, "trunk.onnx")
    # torch.onnx.export restores the module's own training flag afterwards, and a fresh wrapper such as
    # training.registry.FrozenNet is in training mode: BatchNorm would then use batch statistics (measured:
    # 5.4 off). Eval before and after; checked on two noise images and a grey one, as X-rays are.
    trunk.eval()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (3,) + tuple(spec.shape(1)[1:]), generator=generator).float()
    probes = torch.cat([noise[1:], torch.full(spec.shape(1), 127.0)])
    torch.onnx.export(trunk, (noise[:1],), path, input_names=["x"], output_names=["embedding"],
                      opset_version=13, dynamic_axes={"x": {0: "n"}, "embedding": {0: "n"}}, dynamo=False)
    trunk.eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        gap = float(np.abs(session.run(None, {"x": probes.numpy()})[0] - trunk(probes).numpy()).max())
    if gap > 1e-4:
        raise ConfigError("the ONNX trunk differs from PyTorch by {:.2e}. Fix: run the recipe without the "
                          "warm-up (it embeds with PyTorch)".format(gap))
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
